"""YUV4MPEG2 (y4m): the uncompressed pipe format of ``ffmpeg -f yuv4mpegpipe``.

A stream is one header line, ``YUV4MPEG2 W640 H360 F30:1 Ip A1:1 C420jpeg X...``, then for
each frame a line starting with ``FRAME`` followed by the raw planes. Parsed here by hand so
that a malformed header gets a message naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..errors import InputError

MAGIC = b"YUV4MPEG2"
MAX_HEADER_BYTES = 1024

# y4m colourspace tag -> pixel format of the planes that follow
CHROMA_FORMATS = {
    "420jpeg": "yuv420p",
    "420mpeg2": "yuv420p",
    "420paldv": "yuv420p",
    "420": "yuv420p",
    "422": "yuv422p",
    "444": "yuv444p",
    "mono": "gray",
}


@dataclass(frozen=True)
class Y4mHeader:
    width: int
    height: int
    frame_rate: Fraction
    pix_fmt: str
    color_range: str | None  # "full", "limited" or None when not stated
    sample_aspect_ratio: Fraction | None

    @property
    def frame_bytes(self) -> int:
        luma = self.width * self.height
        chroma_width = (self.width + 1) // 2
        chroma_height = (self.height + 1) // 2
        return {
            "yuv420p": luma + 2 * chroma_width * chroma_height,
            "yuv422p": luma + 2 * chroma_width * self.height,
            "yuv444p": 3 * luma,
            "gray": luma,
        }[self.pix_fmt]


def parse_header(line: bytes) -> Y4mHeader:
    """Parse the header line (without its newline)."""
    shown = line[:120].decode("ascii", "replace")
    if not line.startswith(MAGIC):
        raise InputError(f"not a y4m stream: the header does not start with YUV4MPEG2: {shown!r}")
    width = height = None
    frame_rate = None
    chroma = "420jpeg"
    color_range = None
    aspect = None
    for token in line[len(MAGIC):].decode("ascii", "replace").split():
        tag, value = token[0], token[1:]
        try:
            if tag == "W":
                width = int(value)
            elif tag == "H":
                height = int(value)
            elif tag == "F":
                numerator, denominator = value.split(":")
                frame_rate = Fraction(int(numerator), int(denominator))
            elif tag == "A":
                numerator, denominator = value.split(":")
                if int(numerator) > 0 and int(denominator) > 0:
                    aspect = Fraction(int(numerator), int(denominator))
            elif tag == "C":
                chroma = value
            elif tag == "X" and value.upper().startswith("COLORRANGE="):
                color_range = "full" if value.split("=", 1)[1].upper() == "FULL" else "limited"
        except (ValueError, ZeroDivisionError):
            raise InputError(f"malformed y4m header: bad field {token!r} in {shown!r}") from None
    if width is None or height is None:
        raise InputError(f"malformed y4m header: no W (width) or H (height) field in {shown!r}")
    if width <= 0 or height <= 0 or width > 16384 or height > 16384:
        raise InputError(f"malformed y4m header: impossible size {width}x{height} in {shown!r}")
    if frame_rate is None:
        raise InputError(f"malformed y4m header: no F (frame rate) field in {shown!r}")
    if frame_rate <= 0:
        raise InputError(f"malformed y4m header: frame rate {frame_rate} is not positive")
    if chroma not in CHROMA_FORMATS:
        raise InputError(
            f"y4m colourspace C{chroma} is not supported (supported: "
            f"{', '.join('C' + name for name in CHROMA_FORMATS)}); "
            "convert it first, e.g. ffmpeg ... -pix_fmt yuv420p -f yuv4mpegpipe -"
        )
    return Y4mHeader(width, height, frame_rate, CHROMA_FORMATS[chroma], color_range, aspect)


def format_header(width: int, height: int, frame_rate: Fraction, pix_fmt: str,
                  color_range: str = "limited",
                  sample_aspect_ratio: Fraction | None = None) -> bytes:
    chroma = {"yuv420p": "C420jpeg XYSCSS=420JPEG", "yuv422p": "C422 XYSCSS=422",
              "yuv444p": "C444 XYSCSS=444", "gray": "Cmono"}[pix_fmt]
    aspect = sample_aspect_ratio or Fraction(1, 1)
    rate = frame_rate.limit_denominator(1_000_000)
    colour = "FULL" if color_range == "full" else "LIMITED"
    return (
        f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip "
        f"A{aspect.numerator}:{aspect.denominator} {chroma} XCOLORRANGE={colour}\n"
    ).encode("ascii")
