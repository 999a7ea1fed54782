"""BlazeFace decoding, letterbox and suppression, and detection on real clips."""

import av
import pytest
import torch

from vdf_stream.models import detection


def decode_clip(path, limit=None, step=1):
    """RGB frames ``(N, 3, H, W)`` float in [0, 1] of a clip (every ``step``-th frame)."""
    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % step:
                continue
            frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
            if limit and len(frames) >= limit:
                break
    return torch.stack(frames).float() / 255


def test_anchors_follow_the_ssd_layout():
    centres = detection.anchors(dtype=torch.float64)
    assert centres.shape == (896, 2)
    # Stride 8: 16 x 16 cells, 2 anchors each, row by row.
    torch.testing.assert_close(centres[0], torch.tensor([0.5 / 16, 0.5 / 16], dtype=torch.float64))
    torch.testing.assert_close(centres[1], centres[0])
    torch.testing.assert_close(centres[2], torch.tensor([1.5 / 16, 0.5 / 16], dtype=torch.float64))
    torch.testing.assert_close(centres[32], torch.tensor([0.5 / 16, 1.5 / 16], dtype=torch.float64))
    # Stride 16: 8 x 8 cells, 6 anchors each, from index 512.
    torch.testing.assert_close(centres[512:518], torch.tensor([[0.5 / 8, 0.5 / 8]] * 6, dtype=torch.float64))
    torch.testing.assert_close(centres[518], torch.tensor([1.5 / 8, 0.5 / 8], dtype=torch.float64))
    torch.testing.assert_close(centres[-1], torch.tensor([7.5 / 8, 7.5 / 8], dtype=torch.float64))


def test_anchors_agree_with_the_model_zoo():
    zoo = pytest.importorskip("vdf_stream.models.zoo")
    torch.testing.assert_close(detection.anchors(dtype=torch.float64), zoo.face_detection_anchors(dtype=torch.float64))


def test_decode():
    regressors = torch.zeros(1, 896, 16)
    regressors[0, 0, :4] = torch.tensor([2.0, -1.0, 10.0, 6.0])
    regressors[0, 0, 4:6] = torch.tensor([-3.0, 4.0])
    boxes, keypoints = detection.decode(regressors)
    assert boxes.shape == (1, 896, 4) and keypoints.shape == (1, 896, 6, 2)
    centre = torch.tensor([4.0 + 2.0, 4.0 - 1.0])  # anchor 0 sits at (4, 4) input pixels
    torch.testing.assert_close(boxes[0, 0], torch.cat([centre - torch.tensor([5.0, 3.0]), centre + torch.tensor([5.0, 3.0])]))
    torch.testing.assert_close(keypoints[0, 0, 0], torch.tensor([1.0, 8.0]))
    torch.testing.assert_close(keypoints[0, 0, 1], torch.tensor([4.0, 4.0]))
    with pytest.raises(ValueError, match="regressors"):
        detection.decode(torch.zeros(1, 895, 16))


def test_scores_are_clipped_sigmoids():
    logits = torch.tensor([-1e4, -2.0, 0.0, 3.0, 1e4])
    scores = detection.scores_from_logits(logits)
    torch.testing.assert_close(scores, torch.sigmoid(logits.clamp(-100, 100)))


def test_letterbox_geometry_and_round_trip():
    box = detection.Letterbox.for_frame(360, 640)
    assert box.content == (128, 72) and box.pad == (0, 28)
    frames = torch.rand(2, 3, 360, 640)
    inputs, same = detection.letterbox(frames)
    assert same == box and inputs.shape == (2, 3, 128, 128)
    assert inputs[:, :, :28].abs().max() == 0 and inputs[:, :, 100:].abs().max() == 0
    points = torch.tensor([[0.0, 0.0], [640.0, 360.0], [123.4, 56.7]])
    torch.testing.assert_close(box.to_frame(box.to_input(points)), points)
    torch.testing.assert_close(box.to_input(points)[1], torch.tensor([128.0, 100.0]))
    portrait = detection.Letterbox.for_frame(640, 360)
    assert portrait.content == (72, 128) and portrait.pad == (28, 0)


def test_weighted_and_plain_suppression():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [50.0, 50.0, 60.0, 60.0],
                          [0.5, 0.5, 10.5, 10.5]])
    keypoints = boxes[:, :2, None].expand(4, 2, 6).transpose(1, 2).clone()
    scores = torch.tensor([0.9, 0.6, 0.7, 0.3])
    kept_boxes, kept_keypoints, kept_scores, indices = detection.non_max_suppression(
        boxes, keypoints, scores, weighted=True)
    assert indices.tolist() == [0, 2]
    torch.testing.assert_close(kept_scores, torch.tensor([0.9, 0.7]))
    weights = torch.tensor([0.9, 0.6, 0.3]) / 1.8
    expected = (boxes[[0, 1, 3]] * weights[:, None]).sum(0)
    torch.testing.assert_close(kept_boxes[0], expected)
    torch.testing.assert_close(kept_keypoints[0, 0], expected[:2])
    torch.testing.assert_close(kept_boxes[1], boxes[2])
    plain = detection.non_max_suppression(boxes, keypoints, scores, weighted=False)
    torch.testing.assert_close(plain[0], boxes[[0, 2]])
    empty = detection.non_max_suppression(boxes[:0], keypoints[:0], scores[:0])
    assert [tuple(t.shape) for t in empty] == [(0, 4), (0, 6, 2), (0,), (0,)]
    assert detection.non_max_suppression(boxes, keypoints, scores, max_faces=1)[3].tolist() == [0]


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("vdf_stream.models.zoo")
    return detection.FaceDetector()


@pytest.fixture(scope="module")
def single_face(clip):
    return decode_clip(clip("single_face.mp4"))


def test_detects_the_face_in_every_frame(detector, single_face):
    results = detector.detect(single_face)
    assert len(results) == len(single_face) == 72
    found = [len(result) for result in results]
    assert found == [1] * 72, found
    scores = torch.cat([result.scores for result in results])
    assert scores.min() > 0.9
    keypoints = torch.stack([result.keypoints[0] for result in results])
    boxes = torch.stack([result.boxes[0] for result in results])
    # The person's right eye is on the image left; eyes above the nose, nose above the mouth.
    assert (keypoints[:, detection.RIGHT_EYE, 0] < keypoints[:, detection.LEFT_EYE, 0]).all()
    assert (keypoints[:, detection.RIGHT_EAR_TRAGION, 0] < keypoints[:, detection.RIGHT_EYE, 0]).all()
    assert (keypoints[:, detection.LEFT_EYE, 1] < keypoints[:, detection.NOSE_TIP, 1]).all()
    assert (keypoints[:, detection.NOSE_TIP, 1] < keypoints[:, detection.MOUTH_CENTER, 1]).all()
    # Keypoints inside their box, boxes inside the frame, and steady from frame to frame.
    inside = ((keypoints[:, :4] >= boxes[:, None, :2]) & (keypoints[:, :4] <= boxes[:, None, 2:])).all()
    assert inside
    assert boxes[:, :2].min() >= 0 and (boxes[:, 2] <= 640).all() and (boxes[:, 3] <= 360).all()
    assert (boxes[1:] - boxes[:-1]).abs().max() < 20


def test_no_face(detector, clip):
    blank = torch.full((2, 3, 240, 320), 0.5)
    blank[1] = torch.rand(3, 240, 320, generator=torch.Generator().manual_seed(0))
    assert [len(result) for result in detector.detect(blank)] == [0, 0]
    empty = detector.detect(blank)[0]
    assert empty.largest() is None and empty.boxes.shape == (0, 4)
    scenes = decode_clip(clip("no_face.mp4"), limit=3, step=8)
    assert [len(result) for result in detector.detect(scenes)] == [0, 0, 0]


def test_several_faces_sorted_and_largest(detector, single_face):
    face = single_face[0:1, :, 60:360, 150:450]  # 300 x 300 around the face
    small = torch.nn.functional.interpolate(face, size=(210, 210), mode="bilinear", antialias=True)
    canvas = torch.zeros(1, 3, 300, 600)
    canvas[..., :, :300] = face
    canvas[..., 45:255, 345:555] = small
    (result,) = detector.detect(canvas)
    assert len(result) == 2
    assert (result.scores[:-1] >= result.scores[1:]).all()
    centres = (result.boxes[:, :2] + result.boxes[:, 2:]) / 2
    large = result.largest()
    assert centres[large, 0] < 300 < centres[1 - large, 0]
    assert detector.detect(canvas, max_faces=1)[0].boxes.shape == (1, 4)


def test_face_score_is_differentiable(detector, single_face):
    frames = single_face[:2].clone().requires_grad_()
    score = detector.face_score(frames)
    assert score.shape == (2,) and (score > 0.9).all()
    score.sum().backward()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
    raw = detector(single_face[:1])
    boxes, keypoints = raw.decode()
    best = raw.scores()[0].argmax()
    (selected,) = detector.select(raw)
    assert best == selected.anchor_indices[0]
    # The merged box is close to the best anchor's own box.
    assert (boxes[0, best] - selected.boxes[0]).abs().max() < 10


def test_results_map_back_to_frame_pixels(detector, single_face):
    frame = single_face[0:1]
    (reference,) = detector.detect(frame)
    # Twice the size: the same face at twice the coordinates.
    (doubled,) = detector.detect(torch.nn.functional.interpolate(frame, scale_factor=2.0, mode="bilinear"))
    assert (doubled.boxes[0] / 2 - reference.boxes[0]).abs().max() < 3
    assert (doubled.keypoints[0] / 2 - reference.keypoints[0]).abs().max() < 3
    # Portrait: the middle 360 x 360 of the frame placed 140 rows down a 640 x 360 canvas
    # (letterboxed with bars left and right).
    portrait = torch.zeros(1, 3, 640, 360)
    portrait[..., 140:500, :] = frame[..., :, 140:500]
    (upright,) = detector.detect(portrait)
    shift = torch.tensor([-140.0, 140.0])
    assert len(upright) == 1
    assert (upright.keypoints[0] - shift - reference.keypoints[0]).abs().max() < 6
