"""``noise``: random noise at a given L-inf budget, the baseline every defense is set beside.

Each frame gets ``delta`` with ``|delta| <= eps`` on every pixel and channel:

``sign``
    ``+eps`` or ``-eps`` with equal probability (the largest energy the budget allows:
    an RMS of ``eps``, about 30.1 dB PSNR at 8/255 before clamping and encoding);
``uniform``
    uniform in ``[-eps, eps]`` (RMS ``eps / sqrt(3)``, about 4.8 dB higher PSNR).

The output is ``clamp(frame + delta, 0, 1)``, so ``|output - frame| <= eps`` still holds.
The noise of frame ``i`` comes from a generator seeded with ``seed + i`` on the CPU (then
moved to the frames' device), so a rerun, a different batch size or another device gives
the same noise. The filter does not protect: it is here to answer "does random noise of
the same strength do as much?".

:func:`bounded_noise` is the pure function; :class:`NoiseFilter` only holds the options and
calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch

from vdf_stream.pipeline.filter import Filter
from vdf_stream.media.frames import Frames

NoiseKind = Literal["sign", "uniform"]


def bounded_noise(frames: torch.Tensor, indices: list[int], eps: float,
                  kind: str = "sign", seed: int = 0) -> torch.Tensor:
    """Add random noise bounded by ``eps`` to every frame and clamp to [0, 1].

    Args:
        frames: float RGB frames in [0, 1].
        indices: the stream index of each frame; frame ``i`` draws its noise from a
            generator seeded with ``seed + i``.
        eps: L-inf budget in [0, 1] (8/255 is 8 levels).
        kind: ``"sign"`` or ``"uniform"``.
        seed: base seed.

    Returns:
        A new tensor, same dtype and device; the input is not modified.

    Shape:
        - frames: :math:`(B, C, H, W)`; output the same.
    """
    if frames.dim() != 4 or not frames.is_floating_point():
        raise ValueError(f"frames must be float (B, C, H, W), got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    if len(indices) != frames.shape[0]:
        raise ValueError(f"{len(indices)} indices for {frames.shape[0]} frames")
    if kind not in get_args(NoiseKind):
        raise ValueError(f"kind must be one of {', '.join(get_args(NoiseKind))}, got {kind!r}")
    shape = tuple(frames.shape[1:])
    noises = []
    for index in indices:
        generator = torch.Generator().manual_seed(seed + int(index))
        if kind == "sign":
            bits = torch.randint(0, 2, shape, generator=generator, dtype=torch.uint8)
            noise = bits.to(torch.float32).mul_(2.0).sub_(1.0).mul_(eps)
        else:
            noise = torch.rand(shape, generator=generator).mul_(2.0).sub_(1.0).mul_(eps)
        noises.append(noise)
    if not noises:
        return frames.clone()
    delta = torch.stack(noises).to(device=frames.device, dtype=frames.dtype)
    return (frames + delta).clamp_(0.0, 1.0)


@dataclass
class NoiseOptions:
    eps: float = field(default=8 / 255, metadata={
        "help": "the most any pixel may change, as a fraction of the full range, e.g. 8/255",
        "shown": "8/255"})
    kind: NoiseKind = field(default="sign", metadata={
        "help": "sign (+-eps, the most energy the budget allows) or uniform in [-eps, eps]"})
    seed: int = field(default=0, metadata={
        "help": "frame i uses the seed + i, so reruns give the same noise"})

    def validate(self) -> None:
        if not (math.isfinite(self.eps) and 0 <= self.eps <= 1):
            raise ValueError(f"eps is a fraction of the full range in [0, 1] (e.g. 8/255), "
                             f"got {self.eps}")
        if self.kind not in get_args(NoiseKind):
            raise ValueError(f"kind must be one of {', '.join(get_args(NoiseKind))}, "
                             f"got {self.kind!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


class NoiseFilter(Filter):
    name = "noise"
    description = "add random sign or uniform noise of L-inf budget eps (a baseline, not a protection)"
    Options = NoiseOptions
    formats = ("rgbf32",)
    protects = False

    def process(self, frames: Frames) -> Frames:
        if frames.format not in self.formats:
            raise ValueError(f"{self.name} accepts rgbf32 frames, got {frames.format}")
        options = self.options
        noisy = bounded_noise(frames.data, frames.indices, options.eps, options.kind, options.seed)
        return frames.with_data(noisy, frames.format)
