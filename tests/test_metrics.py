"""Every metric of vdf_stream.evaluation.metrics against answers known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vdf_stream.evaluation import metrics
from vdf_stream.media.pixels import LUMA_BT601
from vdf_stream.models.pose import euler_degrees_to_rotation


def random_frames(batch=2, height=40, width=56, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=generator)


# -- fidelity ---------------------------------------------------------------------------


def test_identical_frames():
    frames = random_frames()
    assert torch.isinf(metrics.psnr(frames, frames)).all()
    assert torch.allclose(metrics.ssim(frames, frames), torch.ones(2), atol=1e-6)
    assert torch.allclose(metrics.ssim(frames, frames, channels="rgb"), torch.ones(2), atol=1e-6)
    assert torch.equal(metrics.max_abs_difference(frames, frames), torch.zeros(2))
    flicker = metrics.temporal_flicker(frames, frames, frames.flip(0), frames.flip(0))
    assert torch.equal(flicker, torch.zeros(2))


@pytest.mark.parametrize("offset", [1, 4, 8, 25])
def test_constant_offset(offset):
    """k levels everywhere: PSNR 20 log10(255/k); max |d| = k; SSIM of flat images is the
    luminance term (2ab + C1) / (a^2 + b^2 + C1)."""
    original = torch.full((1, 3, 32, 32), 100, dtype=torch.uint8)
    shifted = original + offset
    assert metrics.psnr(original, shifted).item() == pytest.approx(20 * math.log10(255 / offset),
                                                                   abs=1e-4)
    assert metrics.max_abs_difference(original, shifted).item() == offset
    c1 = (0.01 * 255) ** 2
    a, b = 100.0, 100.0 + offset  # luma of grey is the grey level
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert metrics.ssim(original, shifted).item() == pytest.approx(expected, abs=1e-5)
    # the same frames as floats in [0, 1] give the same figures
    assert metrics.psnr(original.float() / 255, shifted.float() / 255).item() == pytest.approx(
        20 * math.log10(255 / offset), abs=1e-3)


def test_psnr_mean_of_channels_and_batch():
    original = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    protected = original.clone()
    protected[0, 0] = 10  # one channel of frame 0 off by 10: MSE = 100 / 3
    assert metrics.psnr(original, protected)[0].item() == pytest.approx(
        10 * math.log10(255**2 * 3 / 100), abs=1e-4)
    assert math.isinf(metrics.psnr(original, protected)[1].item())


def test_ssim_matches_a_float64_reference():
    """A direct NumPy computation of the same definition (valid Gaussian window, luma)."""
    first, second = random_frames(1, 24, 30, seed=1), random_frames(1, 24, 30, seed=2)
    second = (0.7 * first + 0.3 * second)
    weights = np.array(LUMA_BT601)
    a = np.tensordot(weights, first[0].double().numpy() * 255, axes=1)
    b = np.tensordot(weights, second[0].double().numpy() * 255, axes=1)
    line = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    window = np.outer(line, line) / np.outer(line, line).sum()

    def local(image):
        out = np.empty((image.shape[0] - 10, image.shape[1] - 10))
        for row in range(out.shape[0]):
            for column in range(out.shape[1]):
                out[row, column] = (window * image[row:row + 11, column:column + 11]).sum()
        return out

    mean_a, mean_b = local(a), local(b)
    var_a = local(a * a) - mean_a**2
    var_b = local(b * b) - mean_b**2
    cov = local(a * b) - mean_a * mean_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = np.mean((2 * mean_a * mean_b + c1) * (2 * cov + c2)
                       / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)))
    assert metrics.ssim(first, second).item() == pytest.approx(expected, abs=1e-4)
    assert metrics.ssim(first, second).item() < 0.99


def test_ssim_rejects_tiny_frames_and_bad_shapes():
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(torch.zeros(1, 3, 8, 30), torch.zeros(1, 3, 8, 30))
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match="RGB"):
        metrics.psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


def test_temporal_flicker_known_values():
    """Content moving by 2 levels per frame; static perturbation -> 0; perturbation
    switching between +4 and -4 (changes by 8) -> 8 / 2 = 4."""
    previous = torch.full((1, 3, 16, 16), 100, dtype=torch.uint8)
    current = previous + 2
    assert metrics.temporal_flicker(current, current + 4, previous, previous + 4).item() == 0
    value = metrics.temporal_flicker(current, current - 4, previous, previous + 4).item()
    assert value == pytest.approx(4.0)
    # a frozen picture: the denominator stops at half a level
    frozen = metrics.temporal_flicker(previous, previous - 4, previous, previous + 4).item()
    assert frozen == pytest.approx(8 / metrics.FLICKER_FLOOR_LEVELS)


# -- efficacy ---------------------------------------------------------------------------


def mesh_points(batch=2, seed=0, eye_distance=100.0):
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(batch, 468, 3, generator=generator) * 200 + 100
    points[:, 33, :2] = torch.tensor([150.0, 200.0])
    points[:, 263, :2] = torch.tensor([150.0 + eye_distance, 200.0])
    return points


def test_landmark_nme_known_shift():
    reference = mesh_points()
    shifted = reference.clone()
    shifted[..., 0] += 3.0
    shifted[..., 1] += 4.0  # every point 5 px away; eye corners 100 px apart
    shifted[..., 2] += 50.0  # depth is ignored
    assert torch.allclose(metrics.landmark_nme(shifted, reference), torch.full((2,), 0.05))
    assert torch.equal(metrics.landmark_nme(reference, reference), torch.zeros(2))
    # normalised by the reference's eye distance, not the prediction's
    wide = mesh_points(eye_distance=50.0)
    moved = wide.clone()
    moved[..., 0] += 5.0
    assert torch.allclose(metrics.landmark_nme(moved, wide), torch.full((2,), 0.1))
    # half the points off by 10 px, the rest exact: mean 5 px
    half = reference.clone()
    half[:, ::2, 0] += 10.0
    assert torch.allclose(metrics.landmark_nme(half, reference), torch.full((2,), 0.05))


def test_landmark_nme_degenerate_and_bad_shapes():
    reference = mesh_points()
    reference[1, 263, :2] = reference[1, 33, :2]
    values = metrics.landmark_nme(reference + 1, reference)
    assert not math.isnan(values[0].item()) and math.isnan(values[1].item())
    with pytest.raises(ValueError, match="same shape"):
        metrics.landmark_nme(torch.zeros(1, 468, 2), torch.zeros(1, 468, 3))
    with pytest.raises(ValueError, match="eye corners"):
        metrics.landmark_nme(torch.zeros(1, 68, 2), torch.zeros(1, 68, 2))


@pytest.mark.parametrize("angles,expected", [
    ((10.0, 0.0, 0.0), 10.0), ((0.0, -7.0, 0.0), 7.0), ((0.0, 0.0, 30.0), 30.0),
    ((0.0, 0.0, 0.0), 0.0)])
def test_pose_error_known_rotation(angles, expected):
    base = euler_degrees_to_rotation(torch.tensor([[5.0, -3.0, 2.0], [-20.0, 10.0, 0.0]],
                                                  dtype=torch.float64))
    turn = euler_degrees_to_rotation(torch.tensor(angles, dtype=torch.float64)).expand(2, 3, 3)
    rotated = base @ turn
    error = metrics.pose_error_degrees(rotated, base)
    assert torch.allclose(error.double(), torch.full((2,), expected, dtype=torch.float64),
                          atol=1e-3)
    # symmetric
    assert torch.allclose(metrics.pose_error_degrees(base, rotated), error, atol=1e-4)


def test_parse_flip():
    original = torch.zeros(3, 10, 10, dtype=torch.bool)
    original[:, 2:6, 2:7] = True  # 20 pixels
    protected = original.clone()
    protected[0, 2:4, 2:7] = False  # 10 of 20 lost
    protected[0, 8:10, :] = True  # added pixels do not count
    protected[1] = True  # everything labelled face: nothing lost
    original[2] = False  # no face in the original: undefined
    flips = metrics.parse_flip(original, protected)
    assert flips[0].item() == pytest.approx(0.5)
    assert flips[1].item() == 0
    assert math.isnan(flips[2].item())
    assert torch.equal(metrics.parse_flip(original[:2], original[:2]), torch.zeros(2))


def test_detection_loss_and_presence():
    found_original = torch.tensor([True, True, False, False])
    found_protected = torch.tensor([True, False, True, False])
    loss = metrics.detection_loss(found_original, found_protected)
    assert loss[:2].tolist() == [0.0, 1.0] and torch.isnan(loss[2:]).all()
    assert metrics.summarize(loss)["mean"] == 0.5
    assert torch.allclose(metrics.presence(torch.tensor([0.0, 100.0, -100.0])),
                          torch.tensor([0.5, 1.0, 0.0]))


# -- summaries --------------------------------------------------------------------------


def test_summarize():
    values = torch.tensor([0.0, 0.02, 0.06, 0.2, math.nan])
    summary = metrics.summarize(values, (0.05, 0.1))
    assert summary["count"] == 4 and summary["missing"] == 1
    assert summary["median"] == pytest.approx(0.04)
    assert summary["mean"] == pytest.approx(0.07)
    assert summary["min"] == 0.0 and summary["max"] == pytest.approx(0.2)
    assert summary["share_above_0.05"] == 0.5 and summary["share_above_0.1"] == 0.25
    below = metrics.summarize([30.0, 40.0, None, math.inf], (35.0,), below=True)
    assert below["share_below_35"] == pytest.approx(1 / 3)
    assert below["max"] == math.inf and below["missing"] == 1
    empty = metrics.summarize([math.nan, None], (0.05,))
    assert empty == {"count": 0, "missing": 2, "median": None, "mean": None, "min": None,
                     "max": None, "share_above_0.05": None}
    named = metrics.summarize_metric("pose_error", [1.0, 6.0, 12.0])
    assert named["share_above_5"] == pytest.approx(2 / 3)
    assert named["share_above_10"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("name", ["psnr", "ssim", "max_abs_difference"])
def test_batched_equals_per_frame_and_inputs_kept(name):
    function = getattr(metrics, name)
    first, second = random_frames(3, 24, 20, seed=3), random_frames(3, 24, 20, seed=4)
    kept = (first.clone(), second.clone())
    together = function(first, second)
    alone = torch.cat([function(first[i:i + 1], second[i:i + 1]) for i in range(3)])
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.equal(first, kept[0]) and torch.equal(second, kept[1])
    assert together.shape == (3,)
    empty = function(first[:0], second[:0])
    assert empty.shape == (0,)
