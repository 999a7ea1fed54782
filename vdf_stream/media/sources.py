"""Where frames come from: container files (any format PyAV reads), y4m, NUT or raw frames
on stdin.

A source describes its video stream once (:attr:`Source.info`) and then yields decoded
frames, in decode order = presentation order, as NumPy arrays in the layout the engine asks
for (``rgb24`` ``(H, W, 3)`` uint8, ``rgb48`` ``(H, W, 3)`` uint16 for samples deeper than 8
bits, or ``yuv420p`` ``(H*3/2, W)``). Conversion to RGB is done here by FFmpeg's swscale with
the stream's own colour matrix and range, so it runs in the decoding thread. Packets of
other streams (audio, subtitles) are handed to a callback so they can be copied into the
output without re-encoding.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from . import y4m
from ..errors import InputError, UsageError
from .frames import VideoInfo, layout_for_depth

NUT_MAGIC = b"nut/multimedia container\x00"
RAW_PIX_FMTS = ("rgb24", "bgr24", "yuv420p")

# AVColorSpace values -> the matrix used for YUV <-> RGB
_MATRIX_OF_TAG = {1: "bt709", 5: "bt601", 6: "bt601", 9: "bt2020", 10: "bt2020"}
# our matrix name -> swscale's colorspace name
SWSCALE_COLORSPACE = {"bt601": "itu601", "bt709": "itu709", "bt2020": "bt2020"}


def resolve_colour(tag_colorspace: int, tag_color_range: int, height: int,
                   pix_fmt: str = "") -> tuple[str, str]:
    """The matrix and range to convert with, resolving "unspecified" as players do."""
    matrix = _MATRIX_OF_TAG.get(tag_colorspace) or ("bt709" if height >= 720 else "bt601")
    full = tag_color_range == 2 or pix_fmt.startswith("yuvj")
    return matrix, "full" if full else "limited"


@dataclass(frozen=True)
class RawFormat:
    """What a user says about headerless raw frames on stdin."""

    width: int
    height: int
    frame_rate: Fraction
    pix_fmt: str

    def __post_init__(self):
        if self.pix_fmt not in RAW_PIX_FMTS:
            raise UsageError(
                f"--pix-fmt {self.pix_fmt} is not supported for raw input; use one of "
                f"{', '.join(RAW_PIX_FMTS)}"
            )
        if self.width <= 0 or self.height <= 0:
            raise UsageError(f"--size {self.width}x{self.height} is not a valid frame size")
        if self.pix_fmt == "yuv420p" and (self.width % 2 or self.height % 2):
            raise UsageError(f"raw yuv420p needs an even size, got {self.width}x{self.height}")

    @property
    def frame_bytes(self) -> int:
        if self.pix_fmt == "yuv420p":
            return self.width * self.height * 3 // 2
        return self.width * self.height * 3


@dataclass
class DecodedFrame:
    """One decoded frame: its pixels in the requested layout and its timing."""

    index: int
    pts: int
    pixels: np.ndarray


class Source:
    """Base class. Use as a context manager; iterate with :meth:`frames`."""

    info: VideoInfo
    name: str = "input"

    def __init__(self) -> None:
        self.decode_errors = 0
        self.timestamps_repaired = 0
        self.frames_decoded = 0
        self.damage: str | None = None  # set when the stream broke part-way

    def native_format(self) -> str:
        """The layout this source produces without any colour conversion (or, for other
        pixel formats, the RGB layout that keeps its bit depth)."""
        if self.info.pix_fmt in ("yuv420p", "yuvj420p") and not (
            self.info.width % 2 or self.info.height % 2
        ):
            return "yuv420p"
        return layout_for_depth(self.info.bit_depth)

    def frames(self, format: str,
               on_packet: Callable[[object], None] | None = None) -> Iterator[DecodedFrame]:
        raise NotImplementedError

    def copy_streams(self) -> list:
        """Streams (audio, subtitles) that can be copied to the output unchanged."""
        return []

    def _decode(self, packet) -> list:
        """The frames of a packet of a PyAV stream; a corrupt packet gives none and is
        counted in :attr:`decode_errors`."""
        import av

        try:
            return packet.decode()
        except (av.error.InvalidDataError, av.error.UndefinedError, ValueError):
            self.decode_errors += 1
            return []

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -------------------------------------------------------------------------------------
# Container files (and NUT on stdin): PyAV


def _av_errors():
    import av

    return (av.error.FFmpegError, OSError)


class ContainerSource(Source):
    """Any container and codec FFmpeg can read, through PyAV."""

    def __init__(self, target, name: str, format: str | None = None, threads: int = 0):
        super().__init__()
        import av

        self.name = name
        try:
            self.container = av.open(target, "r", format=format)
        except av.error.FileNotFoundError:
            raise InputError(f"{name}: no such file") from None
        except av.error.IsADirectoryError:
            raise InputError(f"{name}: is a folder, not a video file") from None
        except av.error.PermissionError:
            raise InputError(f"{name}: permission denied") from None
        except (av.error.InvalidDataError, av.error.EOFError):
            raise InputError(f"{name}: not a readable video (FFmpeg found invalid data: not a "
                             "video file, or damaged or truncated)") from None
        except _av_errors() as error:
            raise InputError(f"{name}: cannot open: {error}") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{name}: has no video stream")
        self.stream = self.container.streams.video[0]
        context = self.stream.codec_context
        if context.width <= 0 or context.height <= 0:
            self.container.close()
            raise InputError(f"{name}: the video stream has no frame size (damaged header?)")
        self.stream.thread_type = "AUTO"
        if threads:
            context.thread_count = threads
        self._demuxer = None
        self._pending_packets: list = []
        self._pending_frames: list = []
        self.discarded = 0  # packets an edit list hides
        self._preroll()
        self.info = self._describe()

    def _describe(self) -> VideoInfo:
        stream = self.stream
        context = stream.codec_context
        pix_fmt = context.pix_fmt or "yuv420p"
        matrix, colour_range = resolve_colour(
            context.colorspace, context.color_range, context.height, pix_fmt
        )
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        base = stream.base_rate or stream.guessed_rate
        variable = bool(rate and base and abs(float(rate) - float(base)) > 0.01 * float(base))
        rotation = 0.0
        if self._pending_frames:  # the display matrix is only exposed on decoded frames
            rotation = float(getattr(self._pending_frames[0], "rotation", 0) or 0)
        frame_count = stream.frames or None
        return VideoInfo(
            width=context.width,
            height=context.height,
            time_base=stream.time_base or Fraction(1, 90000),
            frame_rate=Fraction(rate) if rate else None,
            pix_fmt=pix_fmt,
            colorspace=matrix,
            color_range=colour_range,
            tag_colorspace=int(context.colorspace),
            tag_color_range=int(context.color_range),
            tag_color_primaries=int(context.color_primaries),
            tag_color_trc=int(context.color_trc),
            rotation=rotation,
            sample_aspect_ratio=stream.sample_aspect_ratio,
            frame_count=frame_count,
            variable_frame_rate=variable,
        )

    def copy_streams(self) -> list:
        return [s for s in self.container.streams if s.type in ("audio", "subtitle")]

    def _packets(self):
        """Demux the video stream and every stream worth copying, in file order."""
        import av

        copy = {s.index for s in self.copy_streams()}
        wanted = [self.stream] + [s for s in self.container.streams if s.index in copy]
        demuxer = self.container.demux(wanted)
        while True:
            try:
                yield next(demuxer)
            except StopIteration:
                return
            except (av.error.InvalidDataError, av.error.EOFError, OSError) as error:
                self.damage = f"reading the file stopped part-way: {error}"
                return

    def _preroll(self, limit: int = 2000) -> None:
        """Decode up to the first frame (to learn what only frames tell, e.g. rotation)."""
        self._demuxer = self._packets()
        for count, packet in enumerate(self._demuxer):
            if packet.stream.index != self.stream.index:
                self._pending_packets.append(packet)
                continue
            if packet.size and packet.is_discard:
                self.discarded += 1
            self._pending_frames.extend(self._decode(packet))
            if self._pending_frames or count > limit:
                break

    def frames(self, format: str, on_packet=None) -> Iterator[DecodedFrame]:
        import av

        index = 0
        last_pts = None

        def emit(frame):
            nonlocal index, last_pts
            pts = frame.pts
            if pts is None or (last_pts is not None and pts <= last_pts):
                # absent, or going backwards (only in damaged streams): the next tick keeps
                # the output's timestamps strictly increasing, as every encoder needs
                if pts is not None:
                    self.timestamps_repaired += 1
                pts = last_pts + 1 if last_pts is not None else 0
            last_pts = pts
            decoded = DecodedFrame(index, pts, frame_to_array(frame, format, self.info))
            index += 1
            return decoded

        for packet in self._pending_packets:
            if on_packet is not None and packet.dts is not None:
                on_packet(packet)
        self._pending_packets = []
        for frame in self._pending_frames:
            yield emit(frame)
        self._pending_frames = []
        for packet in self._demuxer:
            if packet.stream.index != self.stream.index:
                if on_packet is not None and packet.dts is not None:
                    on_packet(packet)
                continue
            if packet.size and packet.is_discard:
                self.discarded += 1  # hidden by an edit list: decoded, never presented
            for frame in self._decode(packet):
                yield emit(frame)
        try:  # the decoder's delayed frames (when demuxing ended without a flush packet)
            for frame in self.stream.codec_context.decode(None):
                yield emit(frame)
        except av.error.EOFError:
            pass  # already flushed
        except (av.error.InvalidDataError, OSError):
            self.decode_errors += 1
        self.frames_decoded = index
        declared = self.info.frame_count
        if self.damage is None and self.decode_errors:
            self.damage = (f"{self.decode_errors} packets could not be decoded (corrupt data), "
                           "they were skipped")
        if self.damage is None and declared and index < declared - self.discarded:
            self.damage = (
                f"the container declares {declared} frames but only {index} could be decoded "
                "(truncated or corrupt file)"
            )
        if self.timestamps_repaired:
            repaired = f"{self.timestamps_repaired} out-of-order timestamps were repaired"
            self.damage = f"{self.damage}; {repaired}" if self.damage else repaired

    def close(self) -> None:
        self.container.close()


def frame_to_array(frame, format: str, info: VideoInfo) -> np.ndarray:
    """An ``av.VideoFrame`` as ``rgb24`` ``(H, W, 3)`` uint8, ``rgb48`` ``(H, W, 3)`` uint16
    or ``yuv420p`` ``(H*3/2, W)`` uint8."""
    if format == "yuv420p":
        if frame.format.name in ("yuv420p", "yuvj420p"):
            return frame.to_ndarray()
        return frame.reformat(format="yuv420p").to_ndarray()
    return frame.to_ndarray(
        format="rgb48le" if format == "rgb48" else "rgb24",
        src_colorspace=SWSCALE_COLORSPACE[info.colorspace],
        src_color_range="JPEG" if info.color_range == "full" else "MPEG",
        dst_color_range="JPEG",
    )


# -------------------------------------------------------------------------------------
# y4m and raw frames: read by hand from a byte stream


def _read_exactly(stream: BinaryIO, count: int) -> bytearray:
    """Read ``count`` bytes (fewer only at the end of the stream) into a writable buffer."""
    buffer = bytearray(count)
    view = memoryview(buffer)
    filled = 0
    while filled < count:
        got = stream.readinto(view[filled:])
        if not got:
            break
        filled += got
    del view
    if filled < count:
        del buffer[filled:]
    return buffer


class _PlanarSource(Source):
    """Shared by y4m and raw: fixed-size frames read from a byte stream."""

    stream: BinaryIO
    planar_fmt: str

    def _to_array(self, data: bytes, format: str) -> np.ndarray:
        width, height = self.info.width, self.info.height
        pix_fmt = self.planar_fmt
        buffer = np.frombuffer(data, dtype=np.uint8)
        if pix_fmt == "yuv420p" and format == "yuv420p" and not (width % 2 or height % 2):
            return buffer.reshape(height * 3 // 2, width)
        if pix_fmt == "rgb24" and format == "rgb24":
            return buffer.reshape(height, width, 3)
        if pix_fmt == "bgr24" and format == "rgb24":
            return np.ascontiguousarray(buffer.reshape(height, width, 3)[:, :, ::-1])
        import av

        frame = av.VideoFrame(width, height, pix_fmt)
        offset = 0
        for plane in frame.planes:
            rows = plane.height
            row_bytes = plane.width * (3 if pix_fmt in ("rgb24", "bgr24") else 1)
            block = buffer[offset: offset + rows * row_bytes].reshape(rows, row_bytes)
            target = np.frombuffer(plane, dtype=np.uint8).reshape(rows, plane.line_size)
            target[:, :row_bytes] = block
            offset += rows * row_bytes
        return frame_to_array(frame, format, self.info)


class Y4mSource(_PlanarSource):
    def __init__(self, stream: BinaryIO, name: str = "stdin"):
        super().__init__()
        self.stream = stream
        self.name = name
        line = stream.readline(y4m.MAX_HEADER_BYTES)
        if not line:
            raise InputError(f"{name}: empty input (no y4m header)")
        if not line.endswith(b"\n"):
            raise InputError(f"malformed y4m header: no end of line within "
                             f"{y4m.MAX_HEADER_BYTES} bytes")
        self.header = y4m.parse_header(line.rstrip(b"\n"))
        header = self.header
        self.planar_fmt = header.pix_fmt
        matrix, colour_range = resolve_colour(
            2, 2 if header.color_range == "full" else 1, header.height
        )
        self.info = VideoInfo(
            width=header.width,
            height=header.height,
            time_base=1 / header.frame_rate,
            frame_rate=header.frame_rate,
            pix_fmt=header.pix_fmt,
            colorspace=matrix,
            color_range=colour_range,
            tag_color_range=2 if header.color_range == "full" else (1 if header.color_range else 0),
            sample_aspect_ratio=header.sample_aspect_ratio,
        )

    def frames(self, format: str, on_packet=None) -> Iterator[DecodedFrame]:
        size = self.header.frame_bytes
        index = 0
        while True:
            marker = self.stream.readline(256)
            if not marker:
                break
            if not marker.startswith(b"FRAME"):
                self.damage = f"y4m frame {index} does not start with FRAME (stream corrupt)"
                break
            data = _read_exactly(self.stream, size)
            if len(data) < size:
                self.damage = (
                    f"y4m stream truncated in frame {index}: {len(data)} of {size} bytes"
                )
                break
            yield DecodedFrame(index, index, self._to_array(data, format))
            index += 1
        self.frames_decoded = index


class RawSource(_PlanarSource):
    def __init__(self, stream: BinaryIO, raw: RawFormat, name: str = "stdin"):
        super().__init__()
        self.stream = stream
        self.name = name
        self.raw = raw
        self.planar_fmt = raw.pix_fmt
        matrix, colour_range = resolve_colour(2, 0, raw.height)
        self.info = VideoInfo(
            width=raw.width,
            height=raw.height,
            time_base=1 / raw.frame_rate,
            frame_rate=raw.frame_rate,
            pix_fmt=raw.pix_fmt,
            colorspace=matrix,
            color_range=colour_range,
        )

    def frames(self, format: str, on_packet=None) -> Iterator[DecodedFrame]:
        size = self.raw.frame_bytes
        index = 0
        while True:
            data = _read_exactly(self.stream, size)
            if not data:
                break
            if len(data) < size:
                self.damage = (
                    f"raw input ended with {len(data)} bytes, not a whole frame "
                    f"({size} bytes for {self.raw.width}x{self.raw.height} {self.raw.pix_fmt})"
                )
                break
            yield DecodedFrame(index, index, self._to_array(data, format))
            index += 1
        self.frames_decoded = index


# -------------------------------------------------------------------------------------
# Opening


class _RawReader(io.RawIOBase):
    """Any object with ``read`` seen as a raw stream, so that a BufferedReader (which can
    peek) can wrap it."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        read = getattr(self.stream, "read1", self.stream.read)
        data = read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_source(spec: str, raw: RawFormat | None = None, stdin: BinaryIO | None = None,
                threads: int = 0) -> Source:
    """Open ``spec``: a path, or ``-`` for stdin (y4m or NUT detected, or raw with ``raw``).

    Raises:
        InputError: the input is missing, unreadable or not a video.
    """
    if spec == "-":
        # a reader of its own over descriptor 0, not sys.stdin's: a decoder left blocked on
        # a pipe that stays open (after Ctrl-C) then holds no lock the interpreter's exit
        # needs (that aborts the process with "could not acquire lock for <stdin>")
        stream = stdin if stdin is not None else io.BufferedReader(
            io.FileIO(sys.stdin.fileno(), "rb", closefd=False))
        if raw is not None:
            return RawSource(stream, raw)
        if not hasattr(stream, "peek"):
            stream = io.BufferedReader(_RawReader(stream))
        head = _peek(stream, len(NUT_MAGIC))
        if head.startswith(y4m.MAGIC):
            return Y4mSource(stream)
        if head and NUT_MAGIC.startswith(head):
            return ContainerSource(stream, "stdin", format="nut", threads=threads)
        if not head:
            raise InputError("stdin is empty: nothing to read")
        raise InputError(
            "stdin is neither y4m nor NUT; send `ffmpeg ... -f yuv4mpegpipe -` or `-f nut -`, "
            "or give --size WxH --fps N/D --pix-fmt for raw frames"
        )
    if raw is not None:
        raise UsageError("--size/--fps/--pix-fmt describe raw frames on stdin; use them with INPUT -")
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: no such file")
    if path.is_dir():
        raise InputError(f"{spec}: is a folder, not a video file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{spec}: permission denied")
    return ContainerSource(str(path), spec, threads=threads)


def _peek(stream, count: int) -> bytes:
    """Up to ``count`` bytes from the start of a buffered stream, without consuming them."""
    data = stream.peek(count)
    while len(data) < count:
        more = stream.peek(count)
        if len(more) <= len(data):
            break
        data = more
    return data[:count]
