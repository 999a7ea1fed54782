"""MTCNN with the real facenet-pytorch weights: the reference's outputs, agreement with the
MediaPipe models on real clips, no face where there is none, gradients."""

import json
from pathlib import Path

import pytest
import torch
from face_clips import decode, one_torch_thread  # noqa: F401  (autouse fixture)

from vdf_stream.models import detection, mesh, mtcnn

GOLDEN = Path(__file__).parent / "data" / "mtcnn_golden.json"
# Mesh points matching MTCNN's five: the eye centres (between the corners), the nose tip,
# the mouth corners (image left first, as MTCNN orders them).
MESH_EQUIVALENTS = ((33, 133), (362, 263), (1,), (61,), (291,))


@pytest.fixture(scope="module")
def detector():
    return mtcnn.MTCNN()


def test_networks_load_the_real_state_dicts_and_have_their_shapes():
    networks = mtcnn.load()
    assert not any(p.requires_grad for p in networks.parameters())
    images = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    logits, offsets = networks.pnet(images)
    assert logits.shape == (2, 2, 19, 19) and offsets.shape == (2, 4, 19, 19)
    logits, offsets = networks.rnet(images[..., :24, :24])
    assert logits.shape == (2, 2) and offsets.shape == (2, 4)
    logits, offsets, points = networks.onet(images)
    assert logits.shape == (2, 2) and offsets.shape == (2, 4) and points.shape == (2, 5, 2)


def test_reproduces_the_reference_implementation(detector):
    """facenet-pytorch's own MTCNN, recorded in the golden file (tools/mtcnn_agreement.py)."""
    golden = json.loads(GOLDEN.read_text())
    by_clip: dict[str, list[int]] = {}
    for entry in golden["frames"]:
        by_clip.setdefault(entry["clip"], []).append(entry["frame"])
    for clip, indices in by_clip.items():
        entries = [e for e in golden["frames"] if e["clip"] == clip]
        results = detector.detect(decode(clip, tuple(sorted(indices))))
        for entry, faces in zip(sorted(entries, key=lambda e: e["frame"]), results):
            where = f"{clip} frame {entry['frame']}"
            assert len(faces) == len(entry["boxes"]), where
            if not len(faces):
                continue
            torch.testing.assert_close(faces.boxes, torch.tensor(entry["boxes"]), atol=0.02,
                                       rtol=0, msg=where)
            torch.testing.assert_close(faces.points, torch.tensor(entry["points"]), atol=0.02,
                                       rtol=0, msg=where)
            torch.testing.assert_close(faces.scores, torch.tensor(entry["scores"]), atol=1e-5,
                                       rtol=0, msg=where)


@pytest.mark.parametrize("clip, indices", [
    ("single_face.mp4", tuple(range(0, 72, 12))),
    ("WolfgangLanger_Pexels.mp4", tuple(range(0, 472, 80))),
])
def test_agrees_with_blazeface_and_the_mesh(detector, clip, indices):
    frames = decode(clip, indices)
    found = detector.detect(frames)
    assert [len(faces) for faces in found] == [1] * len(indices)
    pipeline = mesh.FacePipeline(segmentation=False)
    with torch.no_grad():
        reading = pipeline(frames)
    boxes = torch.cat([faces.boxes for faces in found])
    blazeface = torch.cat([faces.boxes[:1] for faces in reading.detections])
    iou = detection.box_iou(boxes, blazeface).diagonal()
    assert iou.min() > 0.55, iou  # measured 0.61-0.72: the two detectors frame a face alike
    landmarks = reading.landmarks[..., :2]
    expected = torch.stack([landmarks[:, list(group)].mean(1) for group in MESH_EQUIVALENTS], 1)
    points = torch.cat([faces.points for faces in found])
    eye_distance = (expected[:, 0] - expected[:, 1]).norm(dim=-1, keepdim=True)
    error = (points - expected).norm(dim=-1) / eye_distance
    # measured: medians 0.02-0.09 of the eye distance per point, the largest 0.25 (a mouth
    # corner on a turned head: the two models place the corners differently)
    assert error.median() < 0.1, error
    assert error.max() < 0.35, error


def test_no_face_where_there_is_none(detector):
    scenes = decode("no_face.mp4", (0, 30, 60, 90))
    assert [len(faces) for faces in detector.detect(scenes)] == [0, 0, 0, 0]
    blank = torch.full((1, 3, 120, 160), 0.5)
    (faces,) = detector.detect(blank)
    assert len(faces) == 0 and faces.boxes.shape == (0, 4) and faces.points.shape == (0, 5, 2)
    assert faces.largest() is None
    (tiny,) = detector.detect(torch.rand(1, 3, 16, 16))  # smaller than the smallest face
    assert len(tiny) == 0


def test_landmark_order_and_box(detector):
    (faces,) = detector.detect(decode("single_face.mp4", (0,)))
    points, box = faces.points[0], faces.boxes[0]
    assert points[mtcnn.RIGHT_EYE, 0] < points[mtcnn.LEFT_EYE, 0]
    assert points[mtcnn.MOUTH_RIGHT, 0] < points[mtcnn.MOUTH_LEFT, 0]
    assert points[mtcnn.LEFT_EYE, 1] < points[mtcnn.NOSE_TIP, 1] < points[mtcnn.MOUTH_LEFT, 1]
    assert ((points >= box[:2]) & (points <= box[2:])).all()


def test_suppression():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [2.0, 2.0, 6.0, 6.0],
                          [0.0, 0.0, 10.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    groups = torch.tensor([0, 0, 0, 1])
    kept = mtcnn.non_max_suppression(boxes, scores, groups, 0.5)
    assert kept.tolist() == [3, 0, 2]  # box 1 overlaps box 0 (IoU 0.82); other image apart
    # intersection over the smaller box: the small box inside box 0 is a duplicate
    assert mtcnn.non_max_suppression(boxes, scores, groups, 0.7, mode="min").tolist() == [3, 0]
    overlap = mtcnn.box_overlap(boxes[:1], boxes[1:2], inclusive=True)
    torch.testing.assert_close(overlap, torch.tensor([[110.0 / 132.0]]))
    empty = mtcnn.non_max_suppression(boxes[:0], scores[:0], groups[:0], 0.5)
    assert empty.shape == (0,)
    square = mtcnn.square_boxes(torch.tensor([[0.0, 0.0, 10.0, 20.0]]))
    torch.testing.assert_close(square, torch.tensor([[-5.0, 0.0, 15.0, 20.0]]))


def test_pyramid_scales():
    scales = mtcnn.pyramid_scales(360, 640)
    assert scales[0] == pytest.approx(0.6) and len(scales) == 9
    assert all(b / a == pytest.approx(0.709) for a, b in zip(scales, scales[1:]))
    assert 360 * scales[-1] >= 12 > 360 * scales[-1] * 0.709


def test_refine_crops_is_differentiable_and_agrees_with_the_cascade(detector):
    frames = decode("single_face.mp4", (0,))
    (faces,) = detector.detect(frames)
    images = frames.clone().requires_grad_()
    rnet_logits, onet_logits, points = detector.refine_crops(images, faces.boxes[:1])
    assert torch.sigmoid(mtcnn.face_margin(onet_logits)) > 0.99
    assert torch.sigmoid(mtcnn.face_margin(rnet_logits)) > 0.7
    eye_distance = (faces.points[0, 0] - faces.points[0, 1]).norm()
    # the cascade reads O-Net on a whole-pixel box resampled by area averaging, this on the
    # regressed box by bilinear sampling: close, not equal
    assert ((points.detach()[0] - faces.points[0]).norm(dim=-1) / eye_distance).max() < 0.05
    (points.sum() + mtcnn.face_margin(onet_logits).sum()).backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="boxes"):
        detector.refine_crops(frames, faces.boxes[:1].repeat(2, 1))
