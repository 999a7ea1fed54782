"""``scale``: resize frames, with FFmpeg's ``scale`` conventions for the output size.

The size follows FFmpeg's ``scale=w=...:h=...``: a positive value is used as is, 0 keeps
the input's value, ``-1`` computes the dimension from the other one so as to keep the
aspect ratio, and ``-n`` (``-2`` being the usual one) does the same and rounds the result to
a multiple of ``n`` (even sizes, as 4:2:0 encoders need). ``factor`` scales both sides by
one number instead, truncating like ``scale=iw*factor:ih*factor``. As in FFmpeg, the sample
aspect ratio of a stream that declares one is adjusted so the display aspect stays the same.

Interpolation kernels and the tools whose results they reproduce:

``bicubic`` (default)
    Keys cubic with a = -0.5, widened when shrinking so that it also low-pass filters
    (torch ``interpolate(antialias=True)``; Pillow's ``BICUBIC``).
``bilinear``
    The triangle kernel, widened when shrinking (Pillow's ``BILINEAR``).
``area``
    Each output pixel is the mean of the input area it covers, fractional pixels weighted
    by their coverage (OpenCV's ``INTER_AREA`` when shrinking).
``nearest``
    The input pixel whose centre is nearest (Pillow's ``NEAREST``, torch ``nearest-exact``).
``lanczos``
    Lanczos with 3 lobes, widened when shrinking (Pillow's ``LANCZOS``).

:func:`scaled_size` and :func:`resize` are pure functions; :class:`ScaleFilter` only holds
the options and calls them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from vdf_stream.media.colour import to_float, to_uint8
from vdf_stream.errors import UsageError
from vdf_stream.pipeline.filter import Filter
from vdf_stream.media.frames import Frames, VideoInfo

Interpolation = Literal["bicubic", "bilinear", "area", "nearest", "lanczos"]
INTERPOLATIONS: tuple[str, ...] = get_args(Interpolation)

LANCZOS_LOBES = 3


def _rescale(value: int, numerator: int, denominator: int) -> int:
    """``value * numerator / denominator`` rounded to the nearest integer (FFmpeg's av_rescale)."""
    return (value * numerator + denominator // 2) // denominator


def scaled_size(width: int, height: int, w: int = -1, h: int = -1,
                factor: float = 0.0) -> tuple[int, int]:
    """The output size of ``scale`` for an input of ``width x height``.

    Args:
        width: input width in pixels.
        height: input height in pixels.
        w: output width: > 0 as is, 0 the input width, ``-n`` from ``h`` keeping the aspect
            ratio and rounded to a multiple of ``n``.
        h: output height, the same way.
        factor: when > 0, both sides multiplied by it and truncated; ``w`` and ``h`` must
            then be left at -1.

    Returns:
        ``(width, height)`` of the output.

    Raises:
        UsageError: no size given, ``factor`` given together with ``w`` or ``h``, or an
            output side that would be 0 or less.
    """
    if not math.isfinite(factor) or factor < 0:
        raise UsageError(f"scale: factor must be a finite number >= 0, got {factor}")
    if factor > 0:
        if w != -1 or h != -1:
            raise UsageError("scale: give either factor or w/h, not both")
        # The tiny epsilon keeps 0.29 * 100 (28.999999999999996 in binary) at 29.
        out_width = math.floor(width * factor + 1e-9)
        out_height = math.floor(height * factor + 1e-9)
    else:
        if w < 0 and h < 0:
            raise UsageError(
                "scale: give w, h (or both) or factor; -1 only derives one side from the other"
            )
        out_width = width if w == 0 else w
        out_height = height if h == 0 else h
        if out_width < 0:
            multiple = -out_width
            out_width = _rescale(out_height, width, height * multiple) * multiple
        if out_height < 0:
            multiple = -out_height
            out_height = _rescale(out_width, height, width * multiple) * multiple
    if out_width <= 0 or out_height <= 0:
        raise UsageError(
            f"scale: the output size {out_width}x{out_height} computed for a {width}x{height} "
            f"input (w={w}, h={h}, factor={factor}) is empty"
        )
    return out_width, out_height


def _area_weights(in_size: int, out_size: int) -> torch.Tensor:
    """``(out_size, in_size)`` float64 matrix averaging the input span each output covers."""
    step = in_size / out_size
    starts = torch.arange(out_size, dtype=torch.float64) * step
    ends = starts + step
    pixels = torch.arange(in_size, dtype=torch.float64)
    overlap = torch.minimum(ends[:, None], pixels[None, :] + 1) - torch.maximum(
        starts[:, None], pixels[None, :]
    )
    weights = overlap.clamp(min=0.0)
    return weights / weights.sum(dim=1, keepdim=True)


def _lanczos_weights(in_size: int, out_size: int) -> torch.Tensor:
    """``(out_size, in_size)`` float64 Lanczos-3 matrix, widened when shrinking (as Pillow)."""
    step = in_size / out_size
    stretch = max(step, 1.0)
    centres = (torch.arange(out_size, dtype=torch.float64) + 0.5) * step
    pixels = torch.arange(in_size, dtype=torch.float64) + 0.5
    distance = (pixels[None, :] - centres[:, None]) / stretch
    weights = torch.sinc(distance) * torch.sinc(distance / LANCZOS_LOBES)
    weights = torch.where(distance.abs() < LANCZOS_LOBES, weights, torch.zeros_like(weights))
    return weights / weights.sum(dim=1, keepdim=True)


def resize(images: torch.Tensor, size: tuple[int, int],
           interpolation: str = "bicubic") -> torch.Tensor:
    """Resize a batch of images, low-pass filtering when shrinking.

    Args:
        images: floating-point images, any value range (frames use ``[0, 1]``).
        size: ``(height, width)`` of the output, both > 0.
        interpolation: one of :data:`INTERPOLATIONS` (see the module's documentation).

    Returns:
        A new tensor of the same dtype and device. ``bicubic`` and ``lanczos`` may overshoot
        the input's range slightly near edges (ringing); callers clamp when they need to.

    Shape:
        - images: :math:`(B, C, H, W)`
        - output: :math:`(B, C, height, width)`
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point, got {images.dtype}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}"
        )
    out_height, out_width = size
    if out_height <= 0 or out_width <= 0:
        raise ValueError(f"output size must be positive, got {out_width}x{out_height}")
    batch, channels, height, width = images.shape
    if (out_height, out_width) == (height, width):
        return images.clone()
    if batch == 0 or channels == 0:
        return images.new_empty((batch, channels, out_height, out_width))
    if interpolation in ("bicubic", "bilinear"):
        return F.interpolate(images, size=(out_height, out_width), mode=interpolation,
                             align_corners=False, antialias=True)
    if interpolation == "nearest":
        return F.interpolate(images, size=(out_height, out_width), mode="nearest-exact")
    make_weights = _area_weights if interpolation == "area" else _lanczos_weights
    # Dense (out x in) matrices: a BLAS product beats gathering the few non-zero taps.
    rows = make_weights(height, out_height).to(dtype=images.dtype, device=images.device)
    columns = make_weights(width, out_width).to(dtype=images.dtype, device=images.device)
    return torch.matmul(torch.matmul(rows, images), columns.T)


@dataclass
class ScaleOptions:
    w: int = field(
        default=-1,
        metadata={"help": "output width; -1 keeps the aspect ratio from h, -2 the same but even, "
                          "0 the input width"},
    )
    h: int = field(
        default=-1,
        metadata={"help": "output height; -1 keeps the aspect ratio from w, -2 the same but even, "
                          "0 the input height"},
    )
    factor: float = field(
        default=0.0, metadata={"help": "when > 0, multiply both sides by it (instead of w and h)"}
    )
    interpolation: Interpolation = field(
        default="bicubic",
        metadata={"help": "resampling kernel: " + ", ".join(INTERPOLATIONS)},
    )

    def validate(self) -> None:
        if not math.isfinite(self.factor) or self.factor < 0:
            raise ValueError(f"factor must be a finite number >= 0, got {self.factor}")
        if self.factor > 0 and (self.w != -1 or self.h != -1):
            raise ValueError("give either factor or w/h, not both")
        if self.factor == 0 and self.w < 0 and self.h < 0:
            raise ValueError("give w, h (or both) or factor")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )


class ScaleFilter(Filter):
    name = "scale"
    description = "resize frames to a new width and height (FFmpeg's scale: -1/-2 keep the aspect)"
    Options = ScaleOptions
    formats = ("rgbf32", "rgb24")

    def setup(self, info: VideoInfo, device: torch.device) -> VideoInfo:
        super().setup(info, device)
        options = self.options
        width, height = scaled_size(info.width, info.height, options.w, options.h, options.factor)
        output = info.with_size(width, height)
        aspect = info.sample_aspect_ratio
        if aspect is not None and aspect != 0:  # keep the display aspect ratio, as FFmpeg does
            output = replace(output, sample_aspect_ratio=aspect
                             * Fraction(height * info.width, width * info.height))
        self.output_info = output
        return output

    def process(self, frames: Frames) -> Frames:
        if frames.format not in self.formats:
            raise ValueError(
                f"{self.name} accepts {', '.join(self.formats)} frames, got {frames.format}"
            )
        options = self.options
        width, height = scaled_size(frames.width, frames.height, options.w, options.h,
                                    options.factor)
        images = to_float(frames.data) if frames.format == "rgb24" else frames.data
        resized = resize(images, (height, width), options.interpolation)
        if frames.format == "rgb24":
            resized = to_uint8(resized)  # rounds and clamps to [0, 255]
        else:
            resized = resized.clamp_(0.0, 1.0)
        return frames.with_data(resized, frames.format)
