"""Optional FAN (face-alignment) adapter: clean failure when absent, plumbing with a stand-in."""

import sys
import types

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


def test_real_package_on_a_real_face(clip):
    pytest.importorskip("face_alignment")
    import av

    try:
        landmarker = fan.FanLandmarker()
    except Exception as error:  # weights are fetched from the authors' site on first use
        pytest.skip(f"face-alignment could not load its weights: {error}")
    with av.open(str(clip("single_face.mp4"))) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    frames = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    (points,) = landmarker(frames)
    assert points.shape == (1, 68, 2)
    eyes = points[0, [fan.RIGHT_EYE_OUTER, fan.LEFT_EYE_OUTER]]
    assert eyes[0, 0] < eyes[1, 0]  # the person's right eye on the image left
