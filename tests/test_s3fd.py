"""S3FD, face-alignment's face detector rebuilt in torch: its weights (strict load, the
package's cache, a user's copy, the message when absent), its network against the
package's module, and its detections against the package's ``SFDDetector`` on real frames,
all with seeded weights (the real ones are on their authors' site, out of reach here)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from face_clips import decode
from seeded_weights import CONF_CALIBRATION
from vdf_stream import assets
from vdf_stream.errors import AssetError
from vdf_stream.models import s3fd, weights

FRAMES = (("single_face.mp4", 0), ("WolfgangLanger_Pexels.mp4", 0), ("WolfgangLanger_Pexels.mp4", 40))


@pytest.fixture(scope="module")
def package():
    return pytest.importorskip("face_alignment", reason="pip install -e '.[test]' installs it")


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    """Three real 640x360 frames, ``(3, 3, 360, 640)`` RGB in [0, 1] (values k / 255)."""
    return torch.cat([decode(clip, (index,)) for clip, index in FRAMES])


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty vdf-stream and torch caches, and no network loaded yet; returns the folder
    where face-alignment keeps its downloads."""
    monkeypatch.setenv("VDF_STREAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def seeded_state(package) -> dict[str, torch.Tensor]:
    """The package's network with seed-0 weights, conf heads calibrated (see above)."""
    from face_alignment.detection.sfd.net_s3fd import s3fd as package_s3fd

    torch.manual_seed(0)
    state = package_s3fd().state_dict()
    for name, (gain, shift) in CONF_CALIBRATION.items():
        state[f"{name}.weight"] *= gain
        state[f"{name}.bias"] *= gain
        state[f"{name}.bias"][-1] += shift
    return state


def save(state: dict[str, torch.Tensor], path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


def test_parameters_are_the_packages(package):
    from face_alignment.detection.sfd.net_s3fd import s3fd as package_s3fd

    assert list(weights.expected_shapes(s3fd.S3FD()).items()) == \
        list(weights.expected_shapes(package_s3fd()).items())


def test_add_then_load_strict(package, caches, tmp_path):
    state = seeded_state(package)
    download = tmp_path / "downloads" / s3fd.PACKAGE_FILE
    save(state, download)
    kept = s3fd.add_s3fd(download)
    assert kept == assets.user_weights_path("s3fd") and kept.is_file()
    assert s3fd.weights_path() == kept
    network = s3fd.load_s3fd()
    assert not network.training
    assert not any(parameter.requires_grad for parameter in network.parameters())
    loaded = network.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[key], state[key]) for key in state)
    assert s3fd.load_s3fd("cpu", torch.float32) is network
    assert s3fd.load_s3fd(dtype=torch.float64).conv1_1.weight.dtype == torch.float64


def test_weights_absent_then_in_the_package_cache(package, caches, tmp_path):
    assert s3fd.weights_path() is None
    with pytest.raises(s3fd.S3fdWeightsMissing) as caught:
        s3fd.load_s3fd()
    assert isinstance(caught.value, AssetError)
    assert str(caught.value) == s3fd.MISSING_MESSAGE and "\n" not in s3fd.MISSING_MESSAGE
    with pytest.raises(s3fd.S3fdWeightsMissing):
        s3fd.S3FDDetector.load()

    state = seeded_state(package)
    downloaded = caches / s3fd.PACKAGE_FILE
    save(state, downloaded)
    assert s3fd.package_cache_files() == [downloaded]
    assert s3fd.weights_path() == downloaded
    assert torch.equal(s3fd.load_s3fd().fc7.weight, state["fc7.weight"])
    # a copy the user adds comes first
    save(state, tmp_path / "mine.pth")
    added = s3fd.add_s3fd(tmp_path / "mine.pth")
    assert s3fd.weights_path() == added


def test_wrong_files_are_refused_in_one_line(package, caches, tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    wrong = seeded_state(package)
    del wrong["conv7_2_mbox_loc.bias"]
    wrong["fc6.weight"] = torch.zeros(1024, 512, 1, 1)
    wrong["extra.weight"] = torch.zeros(1)
    save(wrong, tmp_path / "wrong.pth")
    for path, words in ((garbage, "not a PyTorch checkpoint"), (tmp_path / "wrong.pth", "fc6.weight"),
                        (tmp_path / "absent.pth", "no such file")):
        with pytest.raises(AssetError) as caught:
            s3fd.add_s3fd(path)
        assert words in str(caught.value) and "\n" not in str(caught.value)
    assert s3fd.weights_path() is None
    save(wrong, caches / s3fd.PACKAGE_FILE)  # a bad download is refused when loaded
    with pytest.raises(AssetError, match="conv7_2_mbox_loc.bias"):
        s3fd.load_s3fd()


def test_network_outputs_are_the_packages(package, frames):
    """The same weights on a real picture (the face of a real frame, 300x200: sizes off
    the 32-pixel grid): our RGB [0, 1] input against the package's own preprocessing of
    the uint8 pixels (channels reversed, mean subtracted)."""
    from face_alignment.detection.sfd.net_s3fd import s3fd as package_s3fd

    state = seeded_state(package)
    reference = package_s3fd().eval()
    reference.load_state_dict(state)
    network = s3fd.S3FD().eval()
    network.load_state_dict(state, strict=True)
    frame = frames[:1, :, 40:240, 170:470]
    pixels = (frame * 255).round().flip(1) - torch.tensor(s3fd.BGR_MEAN).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = reference(pixels)
        heads = network(frame)
    got = [output for head in heads for output in head]
    assert len(got) == len(expected) == 12
    for ours, theirs in zip(got, expected):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_other_dtypes_run(package):
    """float64 and bfloat16 networks give float32's outputs, to their precision."""
    network = s3fd.S3FD().eval()
    network.load_state_dict(seeded_state(package))
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = network(image)
        for dtype, tolerance in ((torch.float64, 1e-4), (torch.bfloat16, 0.1)):
            heads = network.to(dtype)(image.to(dtype))
            for (conf, loc), (conf32, loc32) in zip(heads, reference):
                assert conf.dtype == dtype
                torch.testing.assert_close(conf.float(), conf32, rtol=tolerance, atol=tolerance)
                torch.testing.assert_close(loc.float(), loc32, rtol=tolerance, atol=tolerance)


def test_detections_are_the_packages(package, frames, caches, monkeypatch):
    """face-alignment's SFDDetector and ours, the same seeded weights from the package's
    cache, on three real frames: the candidates before suppression (the package's
    ``detect``, recorded inside ``detect_from_image``) and the faces after it, in order."""
    from face_alignment.detection.sfd import sfd_detector

    save(seeded_state(package), caches / s3fd.PACKAGE_FILE)
    reference = sfd_detector.SFDDetector(device="cpu")
    assert reference.reference_scale == s3fd.REFERENCE_SCALE
    recorded = []

    def record(*arguments, **keywords):
        recorded.append(package_detect(*arguments, **keywords))
        return recorded[-1]

    package_detect = sfd_detector.detect
    monkeypatch.setattr(sfd_detector, "detect", record)
    images = (frames * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    expected = [reference.detect_from_image(image.copy()) for image in images]

    detector = s3fd.S3FDDetector.load()
    candidates = detector.candidates(frames)
    found = detector.suppress(candidates)
    assert len(candidates) == len(found) == len(FRAMES)
    for ours, theirs in zip(candidates, recorded):
        theirs = torch.from_numpy(theirs[0])
        assert len(ours) == len(theirs) > 100
        torch.testing.assert_close(ours.boxes.double(), theirs[:, :4], rtol=0, atol=1e-3)
        torch.testing.assert_close(ours.scores.double(), theirs[:, 4], rtol=0, atol=1e-5)
    for ours, theirs in zip(found, expected):
        assert len(ours) == len(theirs) > 0
        theirs = torch.from_numpy(np.stack(theirs))
        torch.testing.assert_close(ours.boxes.double(), theirs[:, :4], rtol=0, atol=1e-3)
        torch.testing.assert_close(ours.scores.double(), theirs[:, 4], rtol=0, atol=1e-5)
        assert bool((ours.scores[1:] <= ours.scores[:-1]).all())
    sizes = torch.cat([faces.boxes[:, 2] - faces.boxes[:, 0] for faces in found])
    assert sizes.min() < 32 and sizes.max() > 128  # faces from small and large priors
    (first,) = detector.detect(frames[:1])
    torch.testing.assert_close(first.boxes, found[0].boxes, rtol=0, atol=1e-3)
    torch.testing.assert_close(first.scores, found[0].scores, rtol=0, atol=1e-5)


def test_bad_frames_are_refused():
    detector = s3fd.S3FDDetector(s3fd.S3FD().eval())
    for frames, words in ((torch.zeros(3, 64, 64), "(B, 3, H, W)"),
                          (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "floating-point"),
                          (torch.zeros(1, 3, 31, 64), "at least 32x32")):
        with pytest.raises(ValueError, match=re.escape(words)):
            detector.detect(frames)
