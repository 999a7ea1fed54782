"""The ``noise`` baseline filter: bounded, deterministic per frame index, registered."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from vdf_stream.errors import UsageError
from vdf_stream.pipeline.filter import available_filters, build_filters, load_filter_class
from vdf_stream.filters.noise import NoiseFilter, NoiseOptions, bounded_noise
from vdf_stream.media.frames import Frames, VideoInfo

INFO = VideoInfo(width=48, height=32, time_base=Fraction(1, 25))


def frames_at(indices, seed=0):
    generator = torch.Generator().manual_seed(seed)
    data = torch.rand(len(indices), 3, 32, 48, generator=generator)
    return Frames(data, "rgbf32", [10 * i for i in indices], list(indices), Fraction(1, 25))


def run(filter_, frames):
    filter_.setup(INFO, torch.device("cpu"))
    return filter_.process(frames)


def test_registered_and_parses_fractions():
    assert available_filters()["noise"] == "vdf_stream.filters.noise:NoiseFilter"
    assert load_filter_class("noise") is NoiseFilter
    (noise,) = build_filters("noise=eps=4/255:kind=uniform:seed=7")
    assert noise.options == NoiseOptions(eps=4 / 255, kind="uniform", seed=7)
    assert NoiseFilter.protects is False


@pytest.mark.parametrize("text", ["noise=eps=8", "noise=eps=-1/255", "noise=kind=gauss",
                                  "noise=seed=-3", "noise=eps=nan"])
def test_bad_options(text):
    with pytest.raises(UsageError):
        build_filters(text)


@pytest.mark.parametrize("kind", ["sign", "uniform"])
def test_bounded_clamped_and_input_kept(kind):
    eps = 8 / 255
    frames = frames_at(range(3))
    before = frames.data.clone()
    out = run(NoiseFilter(NoiseOptions(eps=eps, kind=kind)), frames)
    assert torch.equal(frames.data, before)  # input not modified
    assert out.data.dtype == torch.float32 and out.data.shape == frames.data.shape
    assert out.indices == frames.indices and out.pts == frames.pts
    assert out.data.min() >= 0 and out.data.max() <= 1
    delta = out.data - frames.data
    assert delta.abs().max() <= eps + 1e-6
    if kind == "sign":
        # away from the clamped ends every value moved by exactly eps, half up, half down
        inside = (frames.data > eps) & (frames.data < 1 - eps)
        assert torch.allclose(delta[inside].abs(), torch.tensor(eps), atol=1e-6)
        assert abs((delta[inside] > 0).float().mean().item() - 0.5) < 0.02
    else:
        assert abs(delta.abs().mean().item() - eps / 2) < 0.02 * eps


def test_deterministic_per_index_whatever_the_batching():
    options = NoiseOptions(eps=4 / 255, seed=3)
    source = frames_at([5, 6, 7]).data
    together = run(NoiseFilter(options), frames_at([5, 6, 7]))
    alone = [run(NoiseFilter(options),
                 Frames(source[i:i + 1], "rgbf32", [0], [index], Fraction(1, 25)))
             for i, index in enumerate([5, 6, 7])]
    for i in range(3):
        assert torch.equal(together.data[i], alone[i].data[0])
    again = run(NoiseFilter(options), frames_at([5, 6, 7]))
    assert torch.equal(together.data, again.data)
    other_seed = run(NoiseFilter(NoiseOptions(eps=4 / 255, seed=4)), frames_at([5, 6, 7]))
    assert not torch.equal(together.data, other_seed.data)
    # seed + index: frame 6 with seed 3 is frame 5 with seed 4
    frames = frames_at([5, 6, 7])
    delta_a = together.data[1] - frames.data[1]
    shifted = bounded_noise(frames.data[1:2], [5], 4 / 255, "sign", seed=4)
    assert torch.allclose(shifted[0] - frames.data[1], delta_a, atol=1e-7)


def test_sign_noise_psnr_before_encoding():
    """Sign noise of 8/255 on mid-grey: MSE 64 levels^2, 10 log10(255^2/64) = 30.07 dB."""
    from vdf_stream.evaluation.metrics import psnr

    grey = torch.full((2, 3, 64, 64), 0.5)
    noisy = bounded_noise(grey, [0, 1], 8 / 255, "sign")
    expected = 10 * math.log10(255**2 / 64)
    assert torch.allclose(psnr(grey, noisy), torch.tensor(expected), atol=1e-3)


def test_empty_batch_and_zero_eps():
    empty = torch.zeros(0, 3, 4, 4)
    assert bounded_noise(empty, [], 0.1).shape == (0, 3, 4, 4)
    frames = frames_at([0, 1])
    out = bounded_noise(frames.data, [0, 1], 0.0)
    assert torch.equal(out, frames.data)
