"""What flows through the engine: a stream description and batches of frames.

A batch (:class:`Frames`) is a tensor of shape ``(B, C, H, W)`` on the engine's device plus
the presentation timestamps and indices of its frames. Four layouts exist:

``rgbf32``
    ``(B, 3, H, W)`` float32, RGB in ``[0, 1]``. What the protection filters work in.
``rgb24``
    ``(B, 3, H, W)`` uint8, RGB in ``[0, 255]``.
``rgb48``
    ``(B, 3, H, W)`` uint16, RGB in ``[0, 65535]``: how samples deeper than 8 bits (10-bit
    HEVC, ProRes, HDR phone clips) travel, so that they are never rounded to 8 bits.
``yuv420p``
    ``(B, 1, H * 3 // 2, W)`` uint8: the I420 layout of FFmpeg's rawvideo, the Y plane
    followed by the U and V planes (each ``H/2 x W/2``, packed row after row). Lets a
    format-agnostic graph (``null``) pass frames without any colour conversion.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache

import torch

FORMATS = ("rgbf32", "rgb24", "rgb48", "yuv420p")
# AVColorTransferCharacteristic of high dynamic range: SMPTE ST 2084 (PQ), ARIB STD-B67 (HLG)
HDR_TRANSFERS = {16: "PQ", 18: "HLG"}


@dataclass(frozen=True)
class VideoInfo:
    """Everything a filter or a sink needs to know about a video stream, fixed for a run.

    ``colorspace`` and ``color_range`` are the ones used to convert between YUV and RGB
    (unspecified values are resolved the way players resolve them: BT.601 below 720 lines,
    BT.709 from 720 up, limited range). The ``tag_*`` fields are the stream's own tags, which
    are written back unchanged so that players interpret the output as they did the input.
    """

    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None = None
    pix_fmt: str = "yuv420p"
    colorspace: str = "bt601"  # the matrix: "bt601", "bt709" or "bt2020"
    color_range: str = "limited"  # "limited" (16-235) or "full" (0-255)
    tag_colorspace: int = 2  # AVColorSpace as read (2 = unspecified)
    tag_color_range: int = 0  # AVColorRange as read (0 = unspecified)
    tag_color_primaries: int = 2
    tag_color_trc: int = 2
    rotation: float = 0.0  # display rotation in degrees, counter-clockwise
    sample_aspect_ratio: Fraction | None = None
    frame_count: int | None = None  # what the container declares; may be absent or wrong
    variable_frame_rate: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def bit_depth(self) -> int:
        """Bits per sample of ``pix_fmt`` (8 for yuv420p, 10 for yuv422p10le...)."""
        return pix_fmt_bits(self.pix_fmt)

    @property
    def hdr(self) -> str | None:
        """"PQ" or "HLG" when the stream is tagged with a high-dynamic-range transfer."""
        return HDR_TRANSFERS.get(self.tag_color_trc)

    def with_size(self, width: int, height: int) -> VideoInfo:
        return replace(self, width=width, height=height)


@lru_cache(maxsize=None)
def pix_fmt_bits(pix_fmt: str) -> int:
    """Bits per sample of an FFmpeg pixel format (its deepest component); 8 when unknown."""
    import av

    try:
        return max(component.bits for component in av.VideoFormat(pix_fmt).components)
    except (ValueError, TypeError):
        return 8


def layout_for_depth(bits: int) -> str:
    """The RGB layout that carries samples of ``bits`` without rounding them."""
    return "rgb48" if bits > 8 else "rgb24"


def to_tensor(pixels, layout: str) -> torch.Tensor:
    """One decoded frame (a NumPy array from a source: ``(H, W, 3)`` RGB or ``(H*3/2, W)``
    I420) as a batch of one, ``(1, C, H, W)``, sharing its memory."""
    tensor = torch.from_numpy(pixels)
    if layout == "yuv420p":
        return tensor.unsqueeze(0).unsqueeze(0)
    return tensor.permute(2, 0, 1).unsqueeze(0)


def planar_float(pixels: torch.Tensor) -> torch.Tensor:
    """``pixels`` ``(B, C, H, W)`` as float32 in planar (contiguous) memory: decoded frames
    arrive interleaved (a view of ``(H, W, C)``), and every per-pixel op after this one runs
    several times faster on planes (the luma of a 640x360 frame: 0.1 ms against 3 ms)."""
    return pixels.to(torch.float32, memory_format=torch.contiguous_format)


def image_to_batch(pixels, device: torch.device | str = "cpu") -> torch.Tensor:
    """An 8-bit RGB image ``(H, W, 3)`` as a float batch ``(1, 3, H, W)`` in [0, 1] on
    ``device`` (copied there first: the conversion runs on the device)."""
    import numpy as np

    pixels = np.ascontiguousarray(pixels)
    if not pixels.flags.writeable:  # torch shares memory only with writable arrays
        pixels = pixels.copy()
    tensor = to_tensor(pixels, "rgb24").to(device, non_blocking=True)
    return planar_float(tensor).div_(255)


def to_pixels(data: torch.Tensor, layout: str) -> list:
    """Inverse of :func:`to_tensor` for a batch: each frame as a contiguous CPU NumPy array,
    as sinks take them."""
    import numpy as np

    data = data.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    if layout == "yuv420p":
        return [np.ascontiguousarray(data[i, 0].numpy()) for i in range(data.shape[0])]
    return [np.ascontiguousarray(data[i].permute(1, 2, 0).numpy())
            for i in range(data.shape[0])]


@dataclass
class Frames:
    """A batch of consecutive frames on one device.

    Attributes:
        data: ``(B, C, H, W)`` tensor in the layout named by ``format``.
        format: one of :data:`FORMATS`.
        pts: presentation timestamps in ``time_base`` units, one per frame.
        indices: position of each frame in the decoded stream, counting from 0.
        time_base: unit of ``pts``.
    """

    data: torch.Tensor
    format: str
    pts: list[int]
    indices: list[int]
    time_base: Fraction
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown frame format {self.format!r}; expected one of {FORMATS}")
        if self.data.dim() != 4:
            raise ValueError(f"frames must be (B, C, H, W), got shape {tuple(self.data.shape)}")
        batch = self.data.shape[0]
        if len(self.pts) != batch or len(self.indices) != batch:
            raise ValueError(
                f"batch of {batch} frames has {len(self.pts)} timestamps and "
                f"{len(self.indices)} indices"
            )

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def height(self) -> int:
        rows = self.data.shape[2]
        return rows * 2 // 3 if self.format == "yuv420p" else rows

    @property
    def width(self) -> int:
        return self.data.shape[3]

    def with_data(self, data: torch.Tensor, format: str | None = None) -> Frames:
        """A new batch with the same timing and new pixels (the input is not modified)."""
        return Frames(data, format or self.format, list(self.pts), list(self.indices),
                      self.time_base, dict(self.meta))

    @staticmethod
    def concat(batches: list[Frames]) -> Frames:
        first = batches[0]
        if len(batches) == 1:
            return first
        return Frames(
            torch.cat([b.data for b in batches]),
            first.format,
            [p for b in batches for p in b.pts],
            [i for b in batches for i in b.indices],
            first.time_base,
            dict(first.meta),
        )

    def split(self) -> list[Frames]:
        return [
            Frames(self.data[i : i + 1], self.format, [self.pts[i]], [self.indices[i]],
                   self.time_base, dict(self.meta))
            for i in range(len(self))
        ]
