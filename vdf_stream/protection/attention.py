"""Where the perturbation may spend its budget, from the frames alone: the taper that fades
the face term out at the face region's border, the texture map (local luma deviation: flat
skin and sky get less, hair, edges and fabric more) and the attention that combines them
(:mod:`vdf_stream.protection.perturb`'s step 3)."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from ..media.pixels import luma as _luma

TAPER = 0.15  # share of the crop side over which the face term fades out
TEXTURE_WINDOW = 5
TEXTURE_REFERENCE = 0.03  # local luma standard deviation that counts as full texture


def taper_window(size: int, share: float = TAPER, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(size, size)`` raised-cosine window: 1 inside, falling to 0 over ``share`` of the side
    (made once per size and kept: do not modify it)."""
    return _taper_window(size, share, torch.device(device) if device is not None
                         else torch.device("cpu"), dtype)


@functools.lru_cache(maxsize=8)
def _taper_window(size: int, share: float, device: torch.device, dtype) -> torch.Tensor:
    position = (torch.arange(size, device=device, dtype=dtype) + 0.5) / size
    edge = torch.minimum(position, 1 - position) / share
    ramp = 0.5 - 0.5 * torch.cos(math.pi * edge.clamp(0, 1))
    return ramp[:, None] * ramp[None, :]


def _box_mean(images: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of ``images (B, 1, H, W)`` over a ``window x window`` square around each pixel,
    of the pixels inside the image only (``avg_pool2d(count_include_pad=False)``): the sums
    of shifted slices, separably, several times faster than pooling on one channel."""
    pad = window // 2
    height, width = images.shape[-2:]
    padded = F.pad(images, (pad, pad, pad, pad))
    # accumulated in place, in the order a plain sum adds them (the same values, fewer
    # frame-sized allocations: on a CPU they cost more than the additions)
    rows = padded[..., :, 0:width].clone()
    for k in range(1, window):
        rows.add_(padded[..., :, k:k + width])
    total = rows[..., 0:height, :].clone()
    for k in range(1, window):
        total.add_(rows[..., k:k + height, :])

    return total.div_(_box_counts(height, width, window, images.device, images.dtype))


@functools.lru_cache(maxsize=8)
def _box_counts(height: int, width: int, window: int, device, dtype) -> torch.Tensor:
    """``(H, W)``: how many pixels of the image each ``window x window`` square around a
    pixel holds (the same for every frame of a size: made once)."""
    pad = window // 2

    def inside(length: int) -> torch.Tensor:
        position = torch.arange(length, device=device, dtype=dtype)
        return (torch.minimum(position + pad, position.new_tensor(length - 1))
                - torch.maximum(position - pad, position.new_tensor(0)) + 1)

    return inside(height)[:, None] * inside(width)[None, :]


def texture_map(frames: torch.Tensor, reference: float, window: int = TEXTURE_WINDOW) -> torch.Tensor:
    """``(B, 1, H, W)`` in [0, 1]: local standard deviation of luma over reference."""
    brightness = _luma(frames)
    # both means in one pass over two channels (each channel is averaged on its own)
    means = _box_mean(torch.cat([brightness, brightness * brightness], dim=1), window)
    channels = brightness.shape[1]
    mean, square = means[:, :channels], means[:, channels:]
    # (square - mean^2).clamp_min(0).sqrt() / reference, clamped to [0, 1], in place
    return square.sub_(mean.mul_(mean)).clamp_min_(0).sqrt_().div_(reference).clamp_(0, 1)


def attention(frames: torch.Tensor, face_region: torch.Tensor, region_floor: float,
              texture_floor: float, texture_reference: float,
              texture: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, 1, H, W)`` in [0, 1]: where the perturbation may spend its budget
    (``texture``: :func:`texture_map` of ``frames`` when already computed)."""
    where = region_floor + (1 - region_floor) * face_region
    if texture is None:  # a map of our own: reshaped in place
        texture = texture_map(frames, texture_reference)
        return texture.mul_(1 - texture_floor).add_(texture_floor).mul_(where).clamp_(0, 1)
    return (where * (texture_floor + (1 - texture_floor) * texture)).clamp(0, 1)
