"""Optional FAN (face-alignment) adapter: clean failure when absent, plumbing with a stand-in."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from vdf_stream.models import fan


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # import fails
    with pytest.raises(fan.FanUnavailable, match="pip install face-alignment"):
        fan.FanLandmarker()


def stand_in(calls):
    module = types.ModuleType("face_alignment")

    class LandmarksType:
        TWO_D = 1

    class FaceAlignment:
        def __init__(self, kind, device, face_detector, flip_input):
            calls.append(("init", kind, device, face_detector, flip_input))

        def get_landmarks_from_image(self, image, detected_faces=None):
            calls.append(("image", image.shape, image.dtype, detected_faces))
            if image.mean() < 1:
                return None
            count = 1 if detected_faces is None else len(detected_faces)
            return [np.full((68, 2), 7.0 + face) for face in range(count)]

    module.LandmarksType = LandmarksType
    module.FaceAlignment = FaceAlignment
    return module


def test_adapter_plumbing(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "face_alignment", stand_in(calls))
    landmarker = fan.FanLandmarker(device="cpu")
    assert calls[0] == ("init", 1, "cpu", "sfd", False)
    frames = torch.zeros(2, 3, 20, 30)
    frames[0] = 0.5
    results = landmarker(frames)
    assert calls[1][1:3] == ((20, 30, 3), np.uint8)
    assert results[0].shape == (1, 68, 2) and results[0].dtype == torch.float32
    assert results[1].shape == (0, 68, 2)
    boxes = [torch.tensor([[1.0, 2.0, 10.0, 12.0], [3.0, 4.0, 5.0, 6.0]]), torch.zeros(0, 4)]
    results = landmarker(frames, boxes=boxes)
    assert results[0].shape == (2, 68, 2) and results[1].shape == (0, 68, 2)
    passed = calls[-1][3]
    np.testing.assert_allclose(passed[0], [1.0, 2.0, 10.0, 12.0, 1.0])
    with pytest.raises(ValueError, match="box lists"):
        landmarker(frames, boxes=boxes[:1])


def _seed_weights(torch_home):
    """What face-alignment downloads on first use, made locally with seeded weights, where it
    looks for it: its S3FD detector (the package's own architecture) and, for the FAN
    network, a TorchScript stand-in of FAN's interface (256x256 crop in, 68 heatmaps of
    64x64 out). The real weights are on their authors' site, which this machine and CI do
    not reach."""
    from face_alignment.detection.sfd.net_s3fd import s3fd

    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(s3fd().state_dict(), folder / "s3fd-619a316812.pth")
    heatmaps = torch.nn.Conv2d(3, fan.POINT_COUNT, kernel_size=4, stride=4)
    torch.jit.script(heatmaps).save(str(folder / "2DFAN4-cd938726ad.zip"))


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # face-alignment loads TorchScript
def test_the_real_package_through_the_adapter(tmp_path, monkeypatch, clip):
    """face-alignment itself (installed by the test extra), its crop and heatmap decoding
    and its S3FD, with seeded weights: the adapter hands it a frame and a box and gets 68
    points per face back, in the frame's pixels and around that box."""
    pytest.importorskip("face_alignment", reason="pip install -e '.[test]' installs it")
    import av

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _seed_weights(tmp_path)
    landmarker = fan.FanLandmarker(device="cpu")
    with av.open(str(clip("single_face.mp4"))) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    frames = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    box = torch.tensor([[220.0, 60.0, 420.0, 300.0]])
    (points,) = landmarker(frames, boxes=[box])
    assert points.shape == (1, 68, 2) and points.dtype == torch.float32
    # the package maps heatmap peaks back through its crop of the box: centred on the box
    # (moved up by 12% of its height), 200 x (width + height) / 195 pixels a side, here
    # x 94..546 and y -74..377 (past the frame's top: the package does not clip); the points
    # lie in it, not all at one place
    x, y = points[0, :, 0], points[0, :, 1]
    assert bool(((x >= 94) & (x <= 546) & (y >= -74) & (y <= 377)).all()), points
    assert len({(float(a), float(b)) for a, b in points[0]}) > 1
    (none,) = landmarker(frames, boxes=[torch.zeros(0, 4)])
    assert none.shape == (0, 68, 2)


def test_real_weights_on_a_real_face(clip):
    """With the real weights (face-alignment fetches them from its authors' site on first
    use, with internet access): FAN finds the eyes where they are."""
    pytest.importorskip("face_alignment", reason="pip install -e '.[test]' installs it")
    import av

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    if not (checkpoints / "2DFAN4-cd938726ad.zip").exists():
        pytest.skip("FAN's real weights are not in torch's hub cache; face-alignment "
                    "downloads them on first use where the internet is reachable")
    landmarker = fan.FanLandmarker()
    with av.open(str(clip("single_face.mp4"))) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    frames = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    (points,) = landmarker(frames)
    assert points.shape == (1, 68, 2)
    eyes = points[0, [fan.RIGHT_EYE_OUTER, fan.LEFT_EYE_OUTER]]
    assert eyes[0, 0] < eyes[1, 0]  # the person's right eye on the image left
