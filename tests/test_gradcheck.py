"""Numerical gradient checks (torch.autograd.gradcheck, float64) of the converted models.

A full Jacobian of a whole network is far too large, so each check varies a small patch
of real-looking input (a few pixels of the face area) and reduces the outputs to one
number with fixed random weights: every operator on the path from those pixels to every
output takes part, and the analytical gradient must match finite differences.
"""

from __future__ import annotations

import pytest
import torch

from vdf_stream.models import zoo

PATCH = 3  # side of the varied square of pixels


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_gradients_match_finite_differences(name):
    generator = torch.Generator().manual_seed(0)
    model = zoo.build(name).double().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    size = model.input_size
    base = torch.rand(1, 3, size, size, generator=generator, dtype=torch.float64)
    top = left = size // 2 - PATCH // 2
    outputs = model(base)
    weights = [torch.randn(o.shape, generator=generator, dtype=torch.float64) for o in outputs]

    def reduced(patch: torch.Tensor) -> torch.Tensor:
        image = base.clone()
        image[:, :, top:top + PATCH, left:left + PATCH] = patch
        return sum((o * w).sum() for o, w in zip(model(image), weights))

    patch = base[:, :, top:top + PATCH, left:left + PATCH].clone().requires_grad_(True)
    # piecewise-linear activations (ReLU, max-pool) are not differentiable at their kinks;
    # a step of 1e-6 on random inputs stays clear of them. One thread: float64 convolutions
    # with two OpenMP threads slow down badly when the cores are shared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.autograd.gradcheck(reduced, (patch,), eps=1e-6, atol=1e-5, rtol=1e-3)
    finally:
        torch.set_num_threads(threads)
