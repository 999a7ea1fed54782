"""The fused CUDA apply kernel of the perturbation (CuPy), used on every frame on a GPU.

:func:`bounded_apply` does in one elementwise kernel what the torch path of
:func:`vdf_stream.protection.perturb.perturb` does in six: ``eps * M * tanh(change / eps)``, the
addition, the clamp to [0, 1], the rounding to the 8-bit grid and the clamp of the rounded
value into ``[x - eps, x + eps]``. The FFTs before it stay in torch (cuFFT either way).

Ownership: the torch tensors are shared with CuPy through DLPack (zero copy); the output is
allocated by torch and written by the kernel; the kernel runs on torch's *current* CUDA
stream (wrapped as a CuPy ``ExternalStream``), so no synchronisation is needed before or
after and the tensors must simply stay alive until torch's stream has run it, which torch's
caching allocator guarantees for tensors used on that stream.

CuPy is imported lazily; without it, :func:`bounded_apply` raises ``ImportError`` saying
what to install (``pip install 'vdf-stream[gpu]'``).
"""

from __future__ import annotations

import functools

import torch

_SOURCE = r"""
float bounded = x + eps * w * tanhf(c / eps);
bounded = fminf(fmaxf(bounded, 0.0f), 1.0f);
float level = rintf(bounded * levels);
float low = fmaxf(ceilf((x - eps) * levels - 1e-3f), 0.0f);
float high = fminf(floorf((x + eps) * levels + 1e-3f), levels);
y = fmaxf(fminf(level, high), low) / levels;
"""


def cupy_available() -> bool:
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True


def _import_cupy():
    try:
        import cupy
    except ImportError as error:
        raise ImportError(
            "the CUDA apply path needs CuPy: pip install 'vdf-stream[gpu]' "
            "(cupy-cuda12x); without it the torch path is used"
        ) from error
    return cupy


@functools.lru_cache(maxsize=1)
def _kernel():
    cupy = _import_cupy()
    return cupy.ElementwiseKernel(
        "float32 x, float32 c, float32 w, float32 eps, float32 levels", "float32 y", _SOURCE,
        "vdf_bounded_apply")


def bounded_apply(frames: torch.Tensor, change: torch.Tensor, weight: torch.Tensor,
                  eps: float, levels: float = 255.0) -> torch.Tensor:
    """``round_grid(clamp(frames + eps * weight * tanh(change / eps), 0, 1))`` on the GPU.

    Args:
        frames: ``(B, 3, H, W)`` float32 CUDA tensor in [0, 1].
        change: ``(B, 3, H, W)`` float32 unbounded change, same device.
        weight: ``(B, 1, H, W)`` or ``(B, 3, H, W)`` attention in [0, 1].
        eps: budget; the result is on the grid of ``levels`` steps (255: 8 bits) within
            ``eps`` of ``frames``.

    Returns:
        A new ``(B, 3, H, W)`` float32 tensor on the same device (no gradient).
    """
    for name, tensor in (("frames", frames), ("change", change), ("weight", weight)):
        if not tensor.is_cuda or tensor.dtype != torch.float32:
            raise ValueError(f"{name} must be a float32 CUDA tensor, got {tensor.dtype} on "
                             f"{tensor.device}")
    if change.shape != frames.shape:
        raise ValueError(f"change {tuple(change.shape)} and frames {tuple(frames.shape)} differ")
    cupy = _import_cupy()
    frames = frames.detach().contiguous()
    change = change.detach().contiguous()
    weight = weight.detach().expand_as(frames).contiguous()
    output = torch.empty_like(frames)
    stream = torch.cuda.current_stream(frames.device)
    with cupy.cuda.Device(frames.device.index or 0), \
            cupy.cuda.ExternalStream(stream.cuda_stream):
        _kernel()(cupy.from_dlpack(frames), cupy.from_dlpack(change), cupy.from_dlpack(weight),
                  cupy.float32(eps), cupy.float32(levels), cupy.from_dlpack(output))
    return output
