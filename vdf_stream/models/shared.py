"""One frozen copy of each network per process, device and dtype.

The face models are read-only at run time: every reader and surrogate of a process shares
one copy on each device, in eval mode and with ``requires_grad`` off on its parameters
(gradients still flow to the input images).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn


def canonical_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`, CUDA with its index ("cuda" and "cuda:0" are
    one device, so they share one copy)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def frozen(build: Callable[..., nn.Module], device: str | torch.device, dtype: torch.dtype,
           *arguments) -> nn.Module:
    """The shared, frozen ``build(*arguments)`` on ``device`` in ``dtype``, built on first
    use. ``build`` makes a new float32 CPU network; ``arguments`` must be hashable."""
    return _frozen(build, canonical_device(device), dtype, arguments)


@functools.lru_cache(maxsize=None)
def _frozen(build: Callable[..., nn.Module], device: torch.device, dtype: torch.dtype,
            arguments: tuple) -> nn.Module:
    network = build(*arguments).to(device=device, dtype=dtype).eval()
    network.requires_grad_(False)
    return network
