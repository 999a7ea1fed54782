"""The face pipeline on a real talking-face clip: detection, mesh, pose, iris, segmentation."""

import av
import pytest
import torch

from vdf_stream.models import alignment, pose
from vdf_stream.models.alignment import RegionOfInterest

mesh = pytest.importorskip("vdf_stream.models.mesh")
pytest.importorskip("vdf_stream.models.zoo")


def decode_clip(path):
    with av.open(str(path)) as container:
        frames = [torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                  for frame in container.decode(video=0)]
    return torch.stack(frames).float() / 255


@pytest.fixture(scope="module")
def pipeline():
    return mesh.FacePipeline(segmentation=False)


@pytest.fixture(scope="module")
def frames(clip):
    return decode_clip(clip("single_face.mp4"))


@pytest.fixture(scope="module")
def result(pipeline, frames):
    with torch.no_grad():
        return pipeline(frames)


def eye_centres(landmarks):
    right = landmarks[:, list(mesh.RIGHT_EYE_CORNERS), :2].mean(1)
    left = landmarks[:, list(mesh.LEFT_EYE_CORNERS), :2].mean(1)
    return right, left


def test_face_in_every_frame(result, frames):
    assert result.found.shape == (72,) and bool(result.found.all())
    assert len(result.detections) == 72 and all(len(faces) == 1 for faces in result.detections)
    assert result.landmarks.shape == (72, 468, 3)
    assert result.presence.min() > 0.9
    # Every point inside the frame, the face about the size the detector saw.
    xy = result.landmarks[..., :2]
    assert xy.min() >= 0 and (xy[..., 0] <= 640).all() and (xy[..., 1] <= 360).all()


def test_mesh_eyes_lie_on_the_detector_eyes(result):
    keypoints = torch.stack([faces.keypoints[0] for faces in result.detections])
    right, left = eye_centres(result.landmarks)
    eye_distance = (keypoints[:, 1] - keypoints[:, 0]).norm(dim=-1)
    error = torch.cat([(right - keypoints[:, 0]).norm(dim=-1), (left - keypoints[:, 1]).norm(dim=-1)])
    relative = error / eye_distance.repeat(2)
    assert relative.mean() < 0.08, relative.mean()
    assert relative.max() < 0.2, relative.max()


def test_head_pose_is_plausible_and_smooth(result):
    fit = result.pose
    assert fit.angles.shape == (72, 3)
    assert fit.angles.abs().max() < 25  # a talking head facing the camera
    steps = pose.geodesic_angle_degrees(fit.rotation[1:], fit.rotation[:-1])
    assert steps.max() < 4.0, steps.max()
    # The mesh is a scaled canonical face: a small residual relative to the face size.
    assert (fit.residual / fit.scale).max() < 0.6  # centimetres of the canonical face
    # The eye line is nearly level in this clip and the roll says so: the person's left eye
    # (image right) is a little higher, a counter-clockwise tilt, a positive roll.
    right, left = eye_centres(result.landmarks)
    tilt = torch.rad2deg(torch.atan2(right[:, 1] - left[:, 1], left[:, 0] - right[:, 0]))
    assert (fit.roll - tilt).abs().max() < 3


def test_regions_follow_the_face(result):
    roi = result.roi
    tracked = alignment.roi_from_landmarks(result.landmarks)
    assert ((tracked.center - roi.center).norm(dim=-1) < 0.1 * roi.size).all()
    assert ((tracked.size / roi.size - 1).abs() < 0.25).all()
    assert (alignment.normalize_angle(tracked.angle - roi.angle).abs() < 0.1).all()


def test_segmentation_covers_the_person(pipeline, frames, result):
    chosen = slice(0, 72, 12)
    with torch.no_grad():
        person = torch.sigmoid(pipeline.segment(frames[chosen]))
    assert person.shape == (6, 1, 360, 640)
    # The person mask holds (nearly) every mesh point.
    landmarks = result.landmarks[chosen][..., :2]
    grid = landmarks / torch.tensor([640.0, 360.0]) * 2 - 1
    at_points = torch.nn.functional.grid_sample(person, grid[:, None], align_corners=False)
    assert ((at_points > 0.5).float().mean((1, 2, 3)) > 0.97).all()
    # Background corners are background; the person covers a sizeable part of the frame.
    assert person[:, :, :40, :40].max() < 0.1 and person[:, :, :40, -40:].max() < 0.1
    share = (person > 0.5).float().mean((1, 2, 3))
    assert ((share > 0.15) & (share < 0.6)).all(), share


def test_iris_inside_the_eyes(pipeline, frames, result):
    chosen = slice(0, 72, 18)
    with torch.no_grad():
        iris, contours = pipeline.iris(frames[chosen], result.landmarks[chosen])
    assert iris.shape == (4, 2, 5, 3) and contours.shape == (4, 2, 71, 3)
    right, left = eye_centres(result.landmarks[chosen])
    keypoints = torch.stack([faces.keypoints[0] for faces in result.detections[chosen]])
    eye_distance = (keypoints[:, 1] - keypoints[:, 0]).norm(dim=-1)
    assert ((iris[:, 0, 0, :2] - right).norm(dim=-1) / eye_distance).max() < 0.1
    assert ((iris[:, 1, 0, :2] - left).norm(dim=-1) / eye_distance).max() < 0.1
    # The right eye's crop was mirrored and its points mirrored back: both eyes' first
    # contour point is the inner eye corner (the mesh's 133 and 362).
    inner = result.landmarks[chosen][:, [133, 362], :2]
    assert ((contours[:, :, 0, :2] - inner).norm(dim=-1) / eye_distance[:, None]).max() < 0.15


def test_differentiable_from_pixels_for_fixed_regions(pipeline, frames, result):
    clean = frames[:1]
    roi = result.roi[0:1]
    perturbed = clean.clone().requires_grad_()
    output = pipeline(perturbed, roi=roi, segmentation=True, iris=True)
    assert output.detections is None and bool(output.found.all())
    torch.testing.assert_close(output.landmarks.detach(), result.landmarks[:1], atol=1e-3, rtol=0)
    assert not output.roi.center.requires_grad
    terms = {
        "pose": output.pose.angles[:, 0].sum() + output.pose.scale.sum(),
        "segmentation": output.segmentation_logits.mean(),
        "iris and presence": output.iris.sum() + output.presence_logits.sum(),
    }
    for name, term in terms.items():
        (gradient,) = torch.autograd.grad(term, perturbed, retain_graph=True)
        assert torch.isfinite(gradient).all(), name
        assert gradient.abs().sum() > 0, name


def test_frame_without_face(pipeline, frames):
    batch = torch.stack([frames[0], torch.full_like(frames[0], 0.5)])
    with torch.no_grad():
        output = pipeline(batch)
    assert output.found.tolist() == [True, False]
    assert len(output.detections[1]) == 0
    assert output.landmarks.shape == (2, 468, 3)
    # The frame without a face gets a whole-frame region and a low presence.
    torch.testing.assert_close(output.roi.size[1], torch.tensor(640.0))
    assert output.presence[1] < 0.5 < output.presence[0]


def test_eye_regions_geometry():
    landmarks = torch.zeros(1, 468, 3)
    landmarks[0, 33, :2] = torch.tensor([100.0, 50.0])
    landmarks[0, 133, :2] = torch.tensor([120.0, 52.0])
    landmarks[0, 362, :2] = torch.tensor([140.0, 52.0])
    landmarks[0, 263, :2] = torch.tensor([160.0, 50.0])
    regions = mesh.eye_regions(landmarks)
    assert len(regions) == 2
    torch.testing.assert_close(regions.center, torch.tensor([[110.0, 51.0], [150.0, 51.0]]))
    torch.testing.assert_close(regions.size, torch.tensor([46.0, 46.0]))
    assert regions.angle[0] > 0 > regions.angle[1]


def test_choose_regions_picks_the_largest_face():
    from vdf_stream.models.detection import FaceDetections

    keypoints = torch.zeros(2, 6, 2)
    keypoints[:, 0] = torch.tensor([[10.0, 10.0], [110.0, 100.0]])
    keypoints[:, 1] = torch.tensor([[20.0, 10.0], [150.0, 100.0]])
    faces = FaceDetections(torch.tensor([[0.0, 0.0, 30.0, 30.0], [100.0, 80.0, 160.0, 140.0]]),
                           keypoints, torch.tensor([0.9, 0.8]), torch.tensor([3, 7]))
    empty = faces.select(slice(0, 0))
    roi, found = mesh.choose_regions([faces, empty], (200, 300))
    assert found.tolist() == [True, False]
    torch.testing.assert_close(roi.center[0], torch.tensor([130.0, 110.0]))
    assert roi.size[0].item() == pytest.approx(90.0)
    torch.testing.assert_close(roi.center[1], torch.tensor([150.0, 100.0]))
    assert isinstance(roi, RegionOfInterest)


def test_rejects_bad_frames(pipeline):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        pipeline(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="regions"):
        pipeline(torch.zeros(2, 3, 32, 32), roi=alignment.full_frame_roi(1, (32, 32)))
