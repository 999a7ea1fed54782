"""``median``: a square median filter, the classic remedy for salt-and-pepper noise.

Each output pixel is the median of the ``size x size`` window centred on it, per channel.
Borders are mirrored about the edge pixel (``d c b | a b c d | c b a``: SciPy's
``median_filter(mode="mirror")``, OpenCV's ``BORDER_REFLECT_101``). The median of an odd
number of samples is one of the samples, so on ``rgb24`` frames the result is exact.

:func:`median_blur2d` is the pure function; :class:`MedianFilter` only holds the options
and calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vdf_stream.pipeline.filter import Filter
from vdf_stream.media.pixels import reflect_pad2d
from vdf_stream.media.frames import Frames

# Upper bound on the number of window samples gathered at once (the windows of a whole
# 1080p batch would take gigabytes); larger inputs are processed in strips of rows.
WINDOW_ELEMENTS_PER_STEP = 1 << 25


def median_blur2d(images: torch.Tensor, size: int) -> torch.Tensor:
    """Replace every pixel by the median of the ``size x size`` window around it.

    Args:
        images: images of any real dtype (uint8 frames give exact results).
        size: window side in pixels, odd and >= 3.

    Returns:
        A new tensor of the same dtype and device; the input is not modified.

    Shape:
        - images: :math:`(B, C, H, W)`
        - output: :math:`(B, C, H, W)`
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if size < 3 or size % 2 == 0:
        raise ValueError(f"size must be odd and >= 3, got {size}")
    if images.is_complex() or images.dtype == torch.bool:
        raise ValueError(f"images must be real numbers, got {images.dtype}")
    if images.numel() == 0:
        return images.clone()
    batch, channels, height, width = images.shape
    padded = reflect_pad2d(images, size // 2)
    samples_per_row = batch * channels * width * size * size
    rows_per_step = max(1, WINDOW_ELEMENTS_PER_STEP // samples_per_row)
    strips = []
    for top in range(0, height, rows_per_step):
        bottom = min(height, top + rows_per_step)
        strip = padded[:, :, top : bottom + size - 1, :]
        windows = strip.unfold(2, size, 1).unfold(3, size, 1)  # (B, C, rows, W, size, size)
        windows = windows.reshape(batch, channels, bottom - top, width, size * size)
        strips.append(windows.median(dim=-1).values)
    return torch.cat(strips, dim=2) if len(strips) > 1 else strips[0]


@dataclass
class MedianOptions:
    size: int = field(default=3, metadata={"help": "window side in pixels (odd, >= 3)"})

    def validate(self) -> None:
        if self.size < 3 or self.size % 2 == 0:
            raise ValueError(f"size must be odd and >= 3, got {self.size}")


class MedianFilter(Filter):
    name = "median"
    description = "replace each pixel by the median of the window around it (removes speckles)"
    Options = MedianOptions
    formats = ("rgbf32", "rgb24")

    def process(self, frames: Frames) -> Frames:
        if frames.format not in self.formats:
            raise ValueError(
                f"{self.name} accepts {', '.join(self.formats)} frames, got {frames.format}"
            )
        filtered = median_blur2d(frames.data, self.options.size)
        return frames.with_data(filtered, frames.format)
