"""The visibility metric (ColorVideoVDP through vdf_stream.visibility) on real frames of a
real clip, and the optimiser's visibility budget."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
import torch

from vdf_stream import visibility
from vdf_stream.evaluation import visibility as published
from vdf_stream.visibility import VideoJod, VisibilityBudget, image_jod

from helpers import run_cli


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def single_face(clip):
    return str(clip("single_face.mp4"))


@pytest.fixture(scope="module")
def frames(single_face):
    """The first 12 frames of single_face.mp4, (H, W, 3) uint8."""
    with av.open(single_face) as container:
        return [frame.to_ndarray(format="rgb24")
                for _, frame in zip(range(12), container.decode(video=0))]


def with_change(frame: np.ndarray, change: np.ndarray) -> np.ndarray:
    return np.clip(np.round(frame.astype(np.float64) + change[..., None]), 0, 255).astype(np.uint8)


def mean_square(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def patterns(frame: np.ndarray, levels: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth blotch pattern (period 24 pixels, where people see best) and a fine
    checkerboard (period 2 pixels), luma only, scaled to the same mean square change."""
    height, width = frame.shape[:2]
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.sin(2 * np.pi * x / 24) * np.sin(2 * np.pi * y / 24)
    fine = np.where((x + y) % 2 == 0, 1.0, -1.0)
    smooth *= levels / np.sqrt(np.mean(smooth ** 2))
    fine *= levels / np.sqrt(np.mean(fine ** 2))
    return with_change(frame, smooth), with_change(frame, fine)


def test_identical_frames_score_ten(frames):
    assert image_jod(frames[0], frames[0]) == pytest.approx(10.0)
    meter = VideoJod(640, 360, 30.0, torch.device("cpu"))
    for frame in frames[:6]:
        meter.add(frame, frame)
    assert meter.jod() == pytest.approx(10.0)
    assert meter.per_frame() == pytest.approx([10.0] * 6)


def test_a_visible_change_scores_lower_than_an_invisible_one_of_the_same_psnr(frames):
    frame = frames[0]
    smooth, fine = patterns(frame, 3.0)
    # the same PSNR to within 0.4 dB (rounding to 8 bits and clipping)
    assert mean_square(smooth, frame) == pytest.approx(mean_square(fine, frame), rel=0.1)
    jod_smooth, jod_fine = image_jod(frame, smooth), image_jod(frame, fine)
    assert jod_smooth < jod_fine - 0.3, (jod_smooth, jod_fine)
    assert jod_fine > 9.5


def test_flicker_is_seen_by_the_video_metric(frames):
    """A coarse change the same on every frame, against the same change flipping sign
    every 3 frames (5 Hz at 30 fps, where the eye's transient channel is most sensitive):
    each frame alike, the flickering video scores lower."""
    steady, flicker = VideoJod(640, 360, 30.0, "cpu"), VideoJod(640, 360, 30.0, "cpu")
    height, width = frames[0].shape[:2]
    y, x = np.mgrid[0:height, 0:width]
    change = 2.0 * np.sin(2 * np.pi * x / 64) * np.sin(2 * np.pi * y / 64)
    for number, frame in enumerate(frames[:12]):
        steady.add(frame, with_change(frame, change))
        flicker.add(frame, with_change(frame, change if (number // 3) % 2 else -change))
    assert flicker.jod() < steady.jod() - 0.15, (flicker.jod(), steady.jod())


def test_streaming_equals_the_metric_on_the_whole_video(frames):
    """VideoJod feeds ColorVideoVDP one frame at a time: the same JOD as its own predict
    on the video held in memory."""
    import pycvvdp

    _, fine = patterns(frames[0], 2.0)
    change = fine.astype(np.int16) - frames[0].astype(np.int16)
    tests = [np.clip(frame.astype(np.int16) + change * (1 + (n % 3)), 0, 255).astype(np.uint8)
             for n, frame in enumerate(frames[:8])]
    meter = VideoJod(640, 360, 30.0, "cpu")
    for frame, test in zip(frames[:8], tests):
        meter.add(frame, test)
    metric = pycvvdp.cvvdp(display_name=visibility.DISPLAY, device=torch.device("cpu"),
                           quiet=True)
    whole, _ = metric.predict(torch.from_numpy(np.stack(tests)),
                              torch.from_numpy(np.stack(frames[:8])), dim_order="FHWC",
                              frames_per_second=30.0)
    assert meter.jod() == pytest.approx(float(whole), abs=1e-4)


def test_full_screen_is_stricter_than_native(frames):
    """Upscaled to 1080 lines, a fine change becomes a coarser one: more visible."""
    _, fine = patterns(frames[0], 2.0)
    native = VideoJod(640, 360, 30.0, "cpu")
    full = VideoJod(640, 360, 30.0, "cpu", size=visibility.full_screen_size(640, 360))
    for meter in (native, full):
        meter.add(frames[0], fine)
    assert visibility.full_screen_size(640, 360) == (1920, 1080)
    assert full.jod() < native.jod()


def test_floor_settings_read_from_the_encoder(single_face, tmp_path):
    target = tmp_path / "crf27.mp4"
    done = run_cli("protect", single_face, "-o", target, "--vf", "null", "--crf", "27", "-q",
                   "--preset", "veryfast")
    assert done.returncode == 0, done.stderr.decode()
    settings = published.floor_settings(str(target))
    assert (settings.codec, settings.crf, settings.preset) == ("libx264", 27.0, "veryfast")
    assert "read from" in settings.source
    assert published.floor_settings(str(target), crf=20).crf == 20.0
    lossless = tmp_path / "lossless.nut"
    done = run_cli("protect", single_face, "-o", lossless, "--vf", "null", "-f", "nut", "-q",
                   "--codec", "ffv1")
    if done.returncode == 0:
        assert published.floor_settings(str(lossless)).codec is None


def test_measure_a_protected_clip_beside_its_floor(single_face, tmp_path):
    """Noise of 4/255 published at CRF 23: visible, under the floor; the floor itself is
    the clip re-encoded with the same settings."""
    target = tmp_path / "noise.mp4"
    done = run_cli("protect", single_face, "-o", target, "--vf", "noise=eps=6/255", "--crf",
                   "23", "-q")
    assert done.returncode == 0, done.stderr.decode()
    result = published.measure(single_face, str(target), published.VisibilityOptions(
        frames=10, full_screen_frames=2))
    native, full = result["native"], result["full_screen"]
    assert native["frames"] == list(range(10)) and len(native["per_frame"]) == 10
    assert native["jod"] < native["floor_jod"] <= 10.0
    assert len(full["frames"]) == 2 and full["size"] == [1920, 1080]
    assert full["jod"] < native["jod"]
    assert result["floor"]["crf"] == 23.0 and result["floor"]["codec"] == "libx264"
    assert result["verdict"]["looks_the_same"] is False
    assert set(result["seconds_per_frame"]) == {"native", "full_screen"}


def test_verdict_rule():
    base = {"rule": dict(published.RULE)}
    same = {**base, "native": {"jod": 9.6, "floor_jod": 9.8},
            "full_screen": {"jod": 9.35, "floor_jod": 9.5}}
    assert published.verdict(same)["level"] == "good"
    far = {**base, "native": {"jod": 9.6, "floor_jod": 9.95}, "full_screen": None}
    assert published.verdict(far)["looks_the_same"] is False
    assert published.verdict(far)["level"] == "fair"
    assert published.verdict({**base, "native": {"jod": 8.7, "floor_jod": 9.7}})["level"] == "poor"
    assert published.verdict({})["level"] == "unknown"


def test_budget_fit_finds_the_largest_gain(frames):
    frame = torch.from_numpy(frames[0]).permute(2, 0, 1).unsqueeze(0).float() / 255
    smooth, _ = patterns(frames[0], 4.0)
    change = torch.from_numpy(smooth).permute(2, 0, 1).unsqueeze(0).float() / 255 - frame

    def render(gain: float) -> torch.Tensor:
        return torch.round((frame + gain * change).clamp(0, 1) * 255) / 255

    budget = VisibilityBudget(9.6)
    gain, jod = budget.fit(frame, render)
    assert 0 < gain < 1 and jod >= 9.6
    assert budget.jod(frame, render(min(1.0, gain + 2 / 64))) < 9.6 + 0.05
    loose = VisibilityBudget(1.0)
    assert loose.fit(frame, render)[0] == 1.0
    with pytest.raises(ValueError):
        VisibilityBudget(10.5)


def test_the_filter_keeps_its_visibility_budget_on_a_real_clip(single_face):
    """vdf with a budget of JOD 9.6: every frame it protects scores at least that as a still
    image (before encoding), and the change is not nothing."""
    from vdf_stream.api import iterate

    target = 9.6
    originals, protected = [], []
    for batch in iterate(single_face, format="rgbf32"):
        originals.append(batch.data)
        if len(originals) >= 4:
            break
    clean = torch.cat(originals)[:4]
    from vdf_stream.pipeline.filter import build_filters
    from vdf_stream.media.frames import Frames

    (vdf,) = build_filters(f"vdf=jod={target}:steps=8:refine_steps=3:quiet=1")
    from vdf_stream.media.sources import open_source

    with open_source(single_face) as source:
        info = source.info
    vdf.setup(info, torch.device("cpu"))
    for index in range(4):
        out = vdf.process(Frames(clean[index:index + 1], "rgbf32", [index], [index],
                                 info.time_base))
        protected.append(out.data)
    flushed = vdf.flush()
    if flushed is not None:
        protected.append(flushed.data)
    vdf.close()
    result = torch.cat(protected)
    assert result.shape == clean.shape
    for index in range(4):
        jod = image_jod(clean[index:index + 1], result[index:index + 1])
        assert jod >= target - 0.02, (index, jod)
    assert float((result - clean).abs().max()) * 255 >= 1
    assert not math.isnan(float(result.sum()))
