"""``vdf-stream eval`` and vdf_stream.evaluation.evaluate: a real clip against itself (zero efficacy),
against its ``noise`` version (the expected fidelity band), robustness on a few frames, the
pieces (H.264 round trip, denoiser, face-oval mask, lost faces), and every bad input."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from helpers import make_clip, run_cli
from vdf_stream.evaluation import metrics
from vdf_stream.errors import InputError, UsageError
from vdf_stream.evaluation.degradations import bilateral_denoise, degradations, h264_roundtrip
from vdf_stream.evaluation.evaluate import EvalOptions, evaluate
from vdf_stream.evaluation.readers import FaceReader, compare
from vdf_stream.evaluation.views import FrameView, choose_view_indices
from vdf_stream.media.frames import VideoInfo
from vdf_stream.models.mesh import polygon_mask

# frames 0, 9, ..., 63 of single_face.mp4; visibility has tests of its own (test_visibility)
FEW = EvalOptions(frames=8, stride=9, visibility=False)
# On a shared 2-core machine, two OpenMP threads competing with other processes run the
# face pipeline several times slower than one (measured: 59 s against 8 s for two of these
# tests at a load of 8). These tests check answers, not speed: they use one thread.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(*args):
    return run_cli(*args, env=ONE_THREAD)


@pytest.fixture(scope="module")
def single_face(clip):
    return str(clip("single_face.mp4"))


@pytest.fixture(scope="module")
def noise_version(single_face, tmp_path_factory):
    """single_face.mp4 with sign noise of 8/255, encoded at CRF 23, as a user makes it."""
    path = tmp_path_factory.mktemp("eval") / "noise8.mp4"
    done = cli("protect", single_face, "-o", path, "--vf", "noise=eps=8/255", "--crf", "23",
                   "-q")
    assert done.returncode == 0, done.stderr.decode()
    return str(path)


@pytest.fixture(scope="module")
def reader():
    return FaceReader(torch.device("cpu"), "selfie+mesh")


def decode(path, count):
    import av

    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for _, frame in
                  zip(range(count), container.decode(video=0))]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()


# -- real clips -------------------------------------------------------------------------


def test_clip_against_itself_gives_zero_efficacy(single_face, tmp_path):
    """Through the command line: the table on stdout, the JSON where asked."""
    target = tmp_path / "self.json"
    report = tmp_path / "report"
    done = cli("eval", single_face, single_face, "--frames", 8, "--stride", 9,
               "--json", target, "--report", report, "-q", "--visibility-stride", 4,
               "--full-screen-frames", 2)
    assert done.returncode == 0, done.stderr.decode()
    assert (report / "index.html").is_file() and (report / "eval.json").is_file()
    table = done.stdout.decode()
    assert "landmark_nme" in table and "psnr (dB)" in table and "inf" in table
    result = json.loads(target.read_text())
    assert result["frames"] == [0, 9, 18, 27, 36, 45, 54, 63]
    assert result["parser"] in ("bisenet", "selfie+mesh") and result["parser_note"]
    fidelity, efficacy = result["fidelity"], result["efficacy"]
    assert fidelity["psnr"]["min"] == math.inf  # json reads Infinity back
    assert fidelity["ssim"]["min"] == pytest.approx(1.0, abs=1e-6)
    assert fidelity["max_abs_difference"]["max"] == 0
    assert fidelity["temporal_flicker"]["max"] == 0 and fidelity["temporal_flicker"]["count"] == 7
    for name in ("landmark_nme", "pose_error", "parse_flip", "detection_loss"):
        assert efficacy[name]["count"] == 8, name
        assert efficacy[name]["max"] == 0, (name, efficacy[name])
    assert efficacy["presence"]["min"] > 0.9
    assert all(value == 0 for value in result["per_frame"]["landmark_nme"])
    inputs = result["inputs"]
    assert inputs["original"]["frames_counted"] == 72 and inputs["timestamps"]["mismatched"] == 0
    for key in ("vdf_stream", "torch", "av", "ffmpeg_libraries", "numpy"):
        assert key in result["versions"]
    assert result["machine"]["cpu_cores"] >= 1
    assert result["config"]["stride"] == 9 and result["config"]["device"] == "cpu"
    assert result["timing"]["seconds_per_frame"] > 0
    assert result["notes"] == []
    visible = result["visibility"]
    assert visible["native"]["jod"] == pytest.approx(10.0)
    assert visible["full_screen"]["jod"] == pytest.approx(10.0)
    assert visible["native"]["floor_jod"] < 10.0  # the clip re-encoded loses something
    assert visible["verdict"]["looks_the_same"] is True
    assert visible["native"]["frames"] == list(range(9)) + list(range(36, 45))
    assert "visibility:" in table and "looks the same" in table


def test_noise_version_fidelity_band(single_face, noise_version):
    """Sign noise of 8/255 is 20 log10(255/8) = 30.1 dB before encoding (test_noise). At
    CRF 23 libx264 cannot afford to code white noise: it quantises most of it away (and 4:2:0
    averages the chroma noise), so the published file measures about 37.7 dB (36.9-38.2 over
    the 72 frames), below the 43.3 dB the same re-encode gives without noise. Random noise
    does not mislead the face pipeline."""
    result, views = evaluate(single_face, noise_version, FEW, with_views=True)
    fidelity, efficacy = result["fidelity"], result["efficacy"]
    assert 36.0 < fidelity["psnr"]["min"] and fidelity["psnr"]["max"] < 39.5, fidelity["psnr"]
    assert 0.90 < fidelity["ssim"]["median"] < 0.97
    assert fidelity["max_abs_difference"]["median"] > 8  # the codec's own errors add up
    assert fidelity["temporal_flicker"]["median"] > 1  # independent noise shimmers
    assert efficacy["landmark_nme"]["median"] < 0.02
    assert efficacy["pose_error"]["median"] < 3
    assert efficacy["parse_flip"]["median"] < 0.05
    assert efficacy["detection_loss"]["mean"] == 0
    # representative frames for the report
    assert 1 <= len(views) <= 3
    nme = [value for value in result["per_frame"]["landmark_nme"]]
    for view in views:
        assert isinstance(view, FrameView) and view.index in result["frames"]
        assert view.original.shape == (360, 640, 3) and view.original.dtype == np.uint8
        assert view.protected.shape == (360, 640, 3)
        for reading in (view.original_reading, view.protected_reading):
            assert set(reading) == {"landmarks", "box", "mask"}
            assert reading["landmarks"].shape == (468, 2)
            assert reading["landmarks"].dtype == np.float32
            assert reading["box"].shape == (4,)
            assert reading["mask"].shape == (360, 640) and reading["mask"].dtype == np.float32
            assert reading["mask"].sum() > 1000
        position = result["frames"].index(view.index)
        assert view.metrics["landmark_nme"] == pytest.approx(nme[position])
    assert views[0].metrics["landmark_nme"] == min(nme)
    assert views[-1].metrics["landmark_nme"] == max(nme)


def test_robustness_on_two_frames(single_face, noise_version):
    options = EvalOptions(frames=2, stride=36, robustness=True, visibility=False)
    result, _ = evaluate(single_face, noise_version, options)
    entries = result["robustness"]
    assert [(e["degradation"], e["params"].get("crf")) for e in entries[:4]] == [
        ("h264", 18), ("h264", 23), ("h264", 28), ("h264", 35)]
    assert {e["degradation"] for e in entries} == {"h264", "rescale", "jpeg", "gaussian_blur",
                                                   "median", "bilateral"}
    assert len(entries) == 13
    for entry in entries:
        for comparison in ("efficacy", "floor", "versus_clean"):
            summary = entry[comparison]
            assert set(summary) == set(metrics.EFFICACY_METRICS)
            assert summary["landmark_nme"]["count"] == 2
            assert summary["landmark_nme"]["median"] < 0.1
    # a degradation moves the readings of the original: every floor is above zero
    assert all(entry["floor"]["landmark_nme"]["median"] > 0 for entry in entries)
    # CRF 35 disturbs the original more than CRF 18
    assert entries[3]["floor"]["landmark_nme"]["mean"] > entries[0]["floor"]["landmark_nme"]["mean"]
    assert set(result["config"]["references"]) >= {"robustness.efficacy", "robustness.floor"}


def test_no_face_anywhere(clip, tmp_path):
    """Efficacy is undefined: None in the JSON, a note, exit 0."""
    no_face = clip("no_face.mp4")
    target = tmp_path / "no_face.json"
    done = cli("eval", no_face, no_face, "--frames", 3, "--stride", 20, "--json", target,
               "--no-visibility")
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(target.read_text())
    assert result["efficacy"]["landmark_nme"] == {
        "count": 0, "missing": 3, "median": None, "mean": None, "min": None, "max": None,
        "share_above_0.05": None, "share_above_0.1": None}
    assert result["per_frame"]["pose_error"] == [None, None, None]
    assert any("no face" in note for note in result["notes"])
    assert "no face" in done.stdout.decode()
    assert result["fidelity"]["psnr"]["count"] == 3


# -- the pieces -------------------------------------------------------------------------


def test_lost_face_counts_and_is_still_measured(single_face, reader):
    """A protected frame where the detector finds nothing: detection loss 1, and its
    landmarks are read in the original's region, so NME and pose stay defined."""
    frames = decode(single_face, 2)
    clean = reader.read(frames)
    assert bool(clean.found.all())
    blank = torch.full_like(frames, 128)
    lost = reader.read(blank, reference=clean)
    assert not bool(lost.found.any()) and bool(lost.fallback.all()) and bool(lost.defined.all())
    values = compare(lost, clean)
    assert values["detection_loss"].tolist() == [1.0, 1.0]
    assert torch.isfinite(values["landmark_nme"]).all()
    assert torch.isfinite(values["pose_error"]).all()
    assert (values["parse_flip"] > 0.9).all()  # no person on a grey frame
    itself = compare(reader.read(frames, reference=clean), clean)
    assert itself["landmark_nme"].tolist() == [0.0, 0.0]
    # without a face in the "original" nothing is defined
    nothing = compare(lost, reader.read(blank))
    assert torch.isnan(nothing["landmark_nme"]).all() and torch.isnan(
        nothing["detection_loss"]).all()


def test_bisenet_parser_branch(single_face, monkeypatch):
    """With parser "bisenet" the face mask is BiSeNet's head region (random weights here:
    the checkpoint is not on any registry), and a frame against itself flips nothing."""
    from vdf_stream.models import bisenet

    def random_bisenet(device="cpu", dtype=torch.float32, path=None):
        torch.manual_seed(0)
        return bisenet.BiSeNet().to(device=device, dtype=dtype).eval().requires_grad_(False)

    monkeypatch.setattr(bisenet, "load_bisenet", random_bisenet)
    reader = FaceReader(torch.device("cpu"), "bisenet")
    frames = decode(single_face, 1)
    clean = reader.read(frames)
    assert clean.face_mask.shape == (1, 360, 640) and clean.face_mask.dtype == torch.bool
    flip = compare(reader.read(frames, reference=clean), clean)["parse_flip"]
    assert flip.item() == 0 or math.isnan(flip.item())


def test_face_oval_mask(single_face, reader):
    reading = reader.read(decode(single_face, 1))
    mask = reading.face_mask[0]
    box = reading.boxes[0]
    assert 10_000 < int(mask.sum()) < 40_000
    rows, columns = torch.nonzero(mask, as_tuple=True)
    centre_x, centre_y = columns.float().mean(), rows.float().mean()
    assert box[0] < centre_x < box[2] and box[1] < centre_y < box[3]


def test_polygon_mask_known_shapes():
    polygons = torch.tensor([[[10.0, 10.0], [30.0, 10.0], [30.0, 20.0], [10.0, 20.0]],
                             [[0.0, 0.0], [40.0, 0.0], [0.0, 40.0], [0.0, 20.0]]])
    masks = polygon_mask(polygons, 50, 60)
    assert int(masks[0].sum()) == 200 and bool(masks[0, 10:20, 10:30].all())
    assert int(masks[1].sum()) == 780  # pixel centres with x + y < 40
    outside = polygon_mask(torch.tensor([[[100.0, 100.0], [120.0, 100.0], [110.0, 120.0]]]), 50, 60)
    assert int(outside.sum()) == 0


def test_h264_roundtrip_really_encodes(single_face):
    frames = decode(single_face, 6)
    info = VideoInfo(width=640, height=360, time_base=Fraction(1, 30), frame_rate=Fraction(30))
    fine = h264_roundtrip(frames, 18, info)
    coarse = h264_roundtrip(frames, 35, info)
    assert fine.shape == frames.shape and fine.dtype == torch.uint8
    fine_psnr, coarse_psnr = metrics.psnr(frames, fine), metrics.psnr(frames, coarse)
    assert (fine_psnr > coarse_psnr + 3).all(), (fine_psnr, coarse_psnr)
    assert (coarse_psnr < 40).all() and (fine_psnr < 60).all()
    odd = h264_roundtrip(frames[:2, :, :35, :47], 23, info)  # 4:4:4 for odd sizes
    assert odd.shape == (2, 3, 35, 47)


def test_bilateral_removes_noise_and_keeps_edges():
    generator = torch.Generator().manual_seed(0)
    clean = torch.full((1, 3, 40, 40), 60, dtype=torch.uint8)
    clean[..., 20:] = 200  # a vertical edge
    noise = torch.randint(-8, 9, clean.shape, generator=generator)
    noisy = (clean.int() + noise).clamp(0, 255).to(torch.uint8)
    denoised = bilateral_denoise(noisy)
    assert metrics.psnr(clean, denoised) > metrics.psnr(clean, noisy) + 6
    assert (denoised[..., :18].int() - 60).abs().max() < 8
    assert (denoised[..., 22:].int() - 200).abs().max() < 8


def test_choose_view_indices():
    picks = choose_view_indices([0, 5, 10, 15], torch.tensor([0.3, math.nan, 0.1, 0.2]))
    assert picks == [("lowest NME", 2), ("median NME", 3), ("highest NME", 0)]
    assert choose_view_indices([4], torch.tensor([math.nan])) == [("first", 0)]


def test_degradation_list():
    names = [(d.name, d.params) for d in degradations(640, 360)]
    assert ("jpeg", {"quality": 50}) in names and ("median", {"size": 3}) in names
    assert ("gaussian_blur", {"sigma": 0.5}) in names
    assert [d.graph for d in degradations(640, 360) if d.name == "rescale"] == [
        "scale=factor=0.5,scale=w=640:h=360", "scale=factor=0.75,scale=w=640:h=360"]


# -- bad input --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synthetic")
    return {
        "ten": make_clip(folder / "ten.mp4", frames=10),
        "twelve": make_clip(folder / "twelve.mp4", frames=12),
        "small": make_clip(folder / "small.mp4", frames=10, size=(160, 120)),
        "late": make_clip(folder / "late.mp4", frames=10, rate=Fraction(25),
                          pts=[40 * i + (200 if i >= 5 else 0) for i in range(10)]),
    }


def one_line_exit_3(done, *fragments):
    assert done.returncode == 3, (done.returncode, done.stderr.decode())
    message = done.stderr.decode().strip()
    assert message.startswith("vdf-stream: ") and len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_different_lengths(synthetic):
    done = cli("eval", synthetic["ten"], synthetic["twelve"], "-q")
    one_line_exit_3(done, "different lengths", "10 frames", "12", "--allow-length-mismatch")
    with pytest.raises(InputError, match="12 frames"):
        evaluate(str(synthetic["twelve"]), str(synthetic["ten"]))


def test_different_lengths_allowed(synthetic):
    options = EvalOptions(frames=2, stride=4, allow_length_mismatch=True, visibility=False)
    result, _ = evaluate(str(synthetic["ten"]), str(synthetic["twelve"]), options)
    assert result["frames"] == [0, 4]
    allowed = EvalOptions(allow_length_mismatch=True, stride=5, visibility=False)
    result, _ = evaluate(str(synthetic["twelve"]), str(synthetic["ten"]), allowed)
    assert result["frames"] == [0, 5]
    assert any("different lengths (12 and 10 frames)" in note for note in result["notes"])
    assert result["inputs"]["original"]["frames_decoded"] == 12


def test_different_sizes(synthetic):
    done = cli("eval", synthetic["ten"], synthetic["small"], "-q")
    one_line_exit_3(done, "different frame sizes", "320x240", "160x120")


def test_unreadable_files(synthetic, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video file\n" * 100)
    one_line_exit_3(cli("eval", garbage, synthetic["ten"], "-q"), "garbage.mp4")
    one_line_exit_3(cli("eval", synthetic["ten"], tmp_path / "missing.mp4", "-q"),
                    "missing.mp4", "no such file")
    with pytest.raises(UsageError, match="stdin"):
        evaluate("-", str(synthetic["ten"]))


def test_bad_options(synthetic):
    done = cli("eval", synthetic["ten"], synthetic["ten"], "--stride", 0)
    assert done.returncode == 2 and "--stride" in done.stderr.decode()
    with pytest.raises(UsageError, match="--frames"):
        evaluate(str(synthetic["ten"]), str(synthetic["ten"]), EvalOptions(frames=0))


def test_timestamp_mismatch_is_reported(synthetic):
    """Frames 5-9 of ``late`` come 0.2 s late: paired by index, reported, not refused."""
    options = EvalOptions(frames=2, stride=6, visibility=False)  # decoding stops after frame 6
    result, _ = evaluate(str(synthetic["ten"]), str(synthetic["late"]), options)
    timestamps = result["inputs"]["timestamps"]
    assert timestamps["compared"] == 7 and timestamps["mismatched"] == 2
    assert timestamps["first_mismatch"]["index"] == 5
    assert timestamps["max_difference_seconds"] == pytest.approx(0.2, abs=1e-3)
    assert any("timestamps differ" in note for note in result["notes"])
