"""``gaussian_blur``: a separable Gaussian blur, as OpenCV's ``GaussianBlur`` with a given sigma.

The blur is :func:`vdf_stream.media.pixels.gaussian_blur2d` (kernel, borders: see there);
:class:`GaussianBlurFilter` only holds the options and calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vdf_stream.pipeline.filter import Filter
from vdf_stream.media.frames import Frames
from vdf_stream.media.pixels import gaussian_blur2d


@dataclass
class GaussianBlurOptions:
    sigma: float = field(default=1.0, metadata={"help": "standard deviation in pixels (> 0)"})
    radius: int = field(
        default=0, metadata={"help": "kernel half-width in pixels; 0 takes ceil(3 * sigma)"}
    )

    def validate(self) -> None:
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ValueError(f"sigma must be a finite number > 0, got {self.sigma}")
        if self.radius < 0:
            raise ValueError(f"radius must be >= 0 (0 = automatic), got {self.radius}")


class GaussianBlurFilter(Filter):
    name = "gaussian_blur"
    description = "blur each frame with a Gaussian of the given sigma (like OpenCV GaussianBlur)"
    Options = GaussianBlurOptions
    formats = ("rgbf32",)

    def process(self, frames: Frames) -> Frames:
        if frames.format not in self.formats:
            raise ValueError(f"{self.name} accepts rgbf32 frames, got {frames.format}")
        blurred = gaussian_blur2d(frames.data, self.options.sigma, self.options.radius)
        return frames.with_data(blurred, frames.format)
