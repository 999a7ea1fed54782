"""Pixel operations shared by the filters, the protection and the evaluation, one home each:
BT.601 luma and a separable Gaussian blur with mirrored borders.

The blur's kernel is ``exp(-x^2 / (2 sigma^2))`` sampled at the integers
``-radius..radius`` and normalised to sum to 1; it is applied along the rows and then along
the columns of each channel. Borders are mirrored about the edge pixel (``d c b | a b c d |
c b a``), which is OpenCV's default ``BORDER_REFLECT_101``, torch's ``"reflect"`` padding
and SciPy's ``mode="mirror"``; unlike torch's padding it also works when the image is
smaller than the kernel (the reflection repeats). It is differentiable (the protection's
expectation over transformations and its high-pass run it on the change).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# BT.601 luma weights of R, G and B (MATLAB's rgb2gray; what SSIM is usually computed on).
LUMA_BT601 = (0.299, 0.587, 0.114)


def luma(frames: torch.Tensor) -> torch.Tensor:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B``, in the frames' own range and dtype.

    Shape:
        - frames: :math:`(B, 3, H, W)`
        - output: :math:`(B, 1, H, W)`
    """
    if frames.shape[1] != 3:
        raise ValueError(f"luma needs three channels (B, 3, H, W), got {tuple(frames.shape)}")
    red, green, blue = LUMA_BT601
    # channel by channel: the sum over channels of a weighted copy of the frames, in the
    # same order (the same values), without the frame-sized copy or a strided reduction
    return (frames[:, 0:1] * red + frames[:, 1:2] * green) + frames[:, 2:3] * blue


def reflect_indices(length: int, padding: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Source positions of a line of ``length`` samples padded by mirroring about its ends.

    The mirror does not repeat the edge sample (``d c b | a b c d | c b a``) and repeats
    itself as often as needed, so ``padding`` may exceed ``length``.

    Args:
        length: number of samples in the line (at least 1).
        padding: number of samples added on each side.
        device: where the indices are built.

    Returns:
        int64 indices into the line, of length ``length + 2 * padding``.
    """
    if length < 1:
        raise ValueError(f"cannot pad an empty line (length {length})")
    positions = torch.arange(-padding, length + padding, device=device)
    if length == 1:
        return torch.zeros_like(positions)
    period = 2 * (length - 1)
    positions = positions.abs().remainder(period)
    return torch.where(positions >= length, period - positions, positions)


def reflect_pad2d(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Pad the last two dimensions by mirroring about the edge pixels (BORDER_REFLECT_101).

    Args:
        images: tensor of any dtype.
        padding: pixels added on each of the four sides.

    Returns:
        A new tensor; the input is not modified.

    Shape:
        - images: :math:`(B, C, H, W)`
        - output: :math:`(B, C, H + 2 padding, W + 2 padding)`
    """
    if padding == 0:
        return images.clone()
    height, width = images.shape[-2], images.shape[-1]
    if padding < height and padding < width and images.numel() > 0:
        return F.pad(images, (padding, padding, padding, padding), mode="reflect")
    # torch's padding reflects once only; indices handle any size.
    rows = reflect_indices(height, padding, images.device)
    columns = reflect_indices(width, padding, images.device)
    return images.index_select(-2, rows).index_select(-1, columns)


def gaussian_kernel1d(sigma: float, radius: int, *, dtype: torch.dtype = torch.float32,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """The normalised 1-D Gaussian kernel of standard deviation ``sigma``.

    Args:
        sigma: standard deviation in pixels, > 0.
        radius: half-width; the kernel has ``2 * radius + 1`` taps.
        dtype: floating-point type of the result.
        device: where the kernel is built.

    Returns:
        The kernel, summing to 1, computed in float64 then cast to ``dtype``.

    Shape:
        - output: :math:`(2 radius + 1,)`
    """
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    positions = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(positions**2) / (2.0 * sigma * sigma))
    kernel = kernel / kernel.sum()
    return kernel.to(dtype=dtype, device=device)


def default_radius(sigma: float) -> int:
    """Half-width covering three standard deviations: ``ceil(3 * sigma)``."""
    return math.ceil(3.0 * sigma)


def gaussian_blur2d(images: torch.Tensor, sigma: float, radius: int = 0) -> torch.Tensor:
    """Blur every channel of a batch of images with a separable Gaussian.

    Args:
        images: floating-point images, any value range (frames use ``[0, 1]``).
        sigma: standard deviation in pixels, > 0, the same along both axes.
        radius: kernel half-width in pixels; 0 takes ``ceil(3 * sigma)``.

    Returns:
        The blurred images, a new tensor of the same dtype and device; values stay within
        the input's range (the kernel is positive and sums to 1).

    Shape:
        - images: :math:`(B, C, H, W)`
        - output: :math:`(B, C, H, W)`
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point, got {images.dtype}")
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    radius = radius or default_radius(sigma)
    taps = gaussian_kernel1d(sigma, radius, dtype=torch.float64).tolist()
    if images.numel() == 0:
        return images.clone()
    height, width = images.shape[-2], images.shape[-1]
    padded = reflect_pad2d(images, radius)
    rows_done = _correlate1d(padded, taps, dim=-1, length=width)
    return _correlate1d(rows_done, taps, dim=-2, length=height)


def _correlate1d(images: torch.Tensor, taps: list[float], dim: int, length: int) -> torch.Tensor:
    """Weighted sum of ``len(taps)`` shifted views along ``dim``, each ``length`` long.

    A sum of shifted views is faster than ``conv2d`` with a one-channel kernel on the CPU,
    runs the same arithmetic on every device and treats every frame of a batch alike.
    """
    result = images.narrow(dim, 0, length) * taps[0]
    for offset in range(1, len(taps)):
        result.add_(images.narrow(dim, offset, length), alpha=taps[offset])
    return result
