"""Head pose: the similarity fit to the canonical face and the geodesic pose error."""

import pytest
import torch

from vdf_stream.models import pose


@pytest.fixture(scope="module")
def canonical():
    return pose.canonical_face(dtype=torch.float64)


def test_canonical_face_structure(canonical):
    assert canonical.shape == (468, 3)
    # Model axes: x to the subject's left, y up, z towards the viewer.
    assert canonical[pose.LEFT_EYE_OUTER, 0] > 0 > canonical[pose.RIGHT_EYE_OUTER, 0]
    assert canonical[pose.FOREHEAD, 1] > 0 > canonical[pose.CHIN, 1]
    assert canonical[pose.NOSE_TIP, 2] == canonical[:, 2].max()


def test_euler_round_trip():
    angles = torch.tensor([[20.0, -10.0, 5.0], [-60.0, 45.0, 170.0], [0.0, 0.0, 0.0]],
                          dtype=torch.float64)
    rotation = pose.euler_degrees_to_rotation(angles)
    torch.testing.assert_close(rotation @ rotation.transpose(1, 2),
                               torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
    torch.testing.assert_close(pose.rotation_to_euler_degrees(rotation), angles)


def test_euler_signs_match_documentation(canonical):
    nose = canonical[pose.NOSE_TIP] - canonical.mean(0)
    yawed = pose.euler_degrees_to_rotation(torch.tensor([30.0, 0, 0], dtype=torch.float64))
    assert (yawed @ nose)[0] > nose[0]  # nose towards the image right
    pitched = pose.euler_degrees_to_rotation(torch.tensor([0, 30.0, 0], dtype=torch.float64))
    assert (pitched @ nose)[1] < nose[1]  # nose goes down


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recovers_known_pose(canonical, dtype):
    generator = torch.Generator().manual_seed(0)
    angles = torch.tensor([[0.0, 0.0, 0.0], [25.0, -10.0, 5.0], [-40.0, 20.0, -15.0],
                           [60.0, 35.0, 30.0], [-5.0, -30.0, 80.0]], dtype=torch.float64)
    rotation = pose.euler_degrees_to_rotation(angles)
    scale = torch.tensor([1.0, 3.0, 12.5, 0.4, 40.0], dtype=torch.float64)
    translation = torch.randn(5, 3, generator=generator, dtype=torch.float64) * 100
    points = scale[:, None, None] * canonical @ rotation.transpose(1, 2) + translation[:, None]
    noise = torch.randn(points.shape, generator=generator, dtype=torch.float64)
    points = points + 0.02 * scale[:, None, None] * noise  # 0.2 mm on a ~15 cm face
    fit = pose.fit_similarity(canonical.to(dtype), points.to(dtype))
    error = pose.geodesic_angle_degrees(fit.rotation.double(), rotation)
    assert error.max() < 0.5, error
    assert torch.linalg.det(fit.rotation.double()).sub(1).abs().max() < 1e-4
    torch.testing.assert_close(fit.scale.double(), scale, rtol=2e-3, atol=0)
    torch.testing.assert_close(fit.translation.double(), translation, rtol=0, atol=0.05 * scale.max())
    angle_error = (fit.angles.double() - angles).abs()
    assert angle_error.max() < 0.5, angle_error


def test_fit_canonical_image_axes(canonical):
    # A frontal upright face in image axes (y down, z away) gives the identity rotation.
    image = canonical * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64) * 20 + 300
    fit = pose.fit_canonical(image[None], canonical=canonical)
    assert pose.geodesic_angle_degrees(fit.rotation, torch.eye(3, dtype=torch.float64)) < 1e-6
    assert torch.isclose(fit.scale, torch.tensor([20.0], dtype=torch.float64))
    # Turning the nose towards the image right is a positive yaw.
    turned = pose.euler_degrees_to_rotation(torch.tensor([15.0, 0.0, 0.0], dtype=torch.float64))
    image = pose.image_to_model_axes(canonical @ turned.T * 20)
    assert pose.fit_canonical(image[None], canonical=canonical).yaw.item() == pytest.approx(15.0)


def test_reflection_gives_proper_rotation(canonical):
    mirrored = canonical * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    fit = pose.fit_similarity(canonical, mirrored[None])
    assert torch.linalg.det(fit.rotation).item() == pytest.approx(1.0)
    assert fit.residual.item() > 0.1  # a mirror image cannot be fitted exactly


def test_weights_ignore_outliers(canonical):
    rotation = pose.euler_degrees_to_rotation(torch.tensor([10.0, 20.0, -5.0], dtype=torch.float64))
    points = canonical @ rotation.T
    points[:50] += 30.0  # gross outliers
    weights = torch.ones(468, dtype=torch.float64)
    weights[:50] = 0
    fit = pose.fit_similarity(canonical, points[None], weights)
    assert pose.geodesic_angle_degrees(fit.rotation[0], rotation) < 1e-6
    assert fit.residual.item() < 1e-5


def test_rigid_fit_keeps_unit_scale(canonical):
    fit = pose.fit_similarity(canonical, (canonical * 2)[None], with_scale=False)
    assert fit.scale.item() == 1.0


def test_gradient_finite_and_correct(canonical):
    generator = torch.Generator().manual_seed(1)
    rotation = pose.euler_degrees_to_rotation(torch.tensor([[12.0, -7.0, 3.0]], dtype=torch.float64))
    target = (5 * canonical[:24] @ rotation.transpose(1, 2)).clone()
    target += 0.1 * torch.randn(target.shape, generator=generator, dtype=torch.float64)
    target.requires_grad_()

    def outputs(points):
        fit = pose.fit_similarity(canonical[:24], points)
        return fit.rotation, fit.scale, fit.translation, fit.angles

    assert torch.autograd.gradcheck(outputs, (target,))
    landmarks = (canonical * 30)[None].float().requires_grad_()
    fit = pose.fit_canonical(landmarks)
    (fit.angles.sum() + fit.scale.sum() + fit.residual.sum()).backward()
    assert torch.isfinite(landmarks.grad).all()


def test_gradient_finite_for_degenerate_spectrum():
    # Equal singular values (an octahedron): the SVD's backward would divide by zero.
    octahedron = torch.cat([torch.eye(3), -torch.eye(3)]).double()
    target = octahedron[None].clone().requires_grad_()
    fit = pose.fit_similarity(octahedron, target)
    (fit.rotation * torch.arange(9.0, dtype=torch.float64).view(3, 3)).sum().backward()
    assert torch.isfinite(target.grad).all()
    # Collinear points: the rotation is not unique, the gradient must still be finite.
    line = torch.linspace(-1, 1, 5, dtype=torch.float64)[:, None] * torch.tensor([[1.0, 0, 0]]).double()
    target = line[None].clone().requires_grad_()
    pose.fit_similarity(line, target).angles.sum().backward()
    assert torch.isfinite(target.grad).all()


def test_geodesic_angle():
    identity = torch.eye(3, dtype=torch.float64)
    for degrees in (0.0, 1e-4, 3.0, 90.0, 179.9):
        other = pose.euler_degrees_to_rotation(torch.tensor([0.0, degrees, 0.0], dtype=torch.float64))
        assert pose.geodesic_angle_degrees(identity, other).item() == pytest.approx(degrees, abs=1e-6)
    a = pose.euler_degrees_to_rotation(torch.tensor([[10.0, 20.0, 30.0]], dtype=torch.float64))
    b = pose.euler_degrees_to_rotation(torch.tensor([[-15.0, 5.0, 40.0]], dtype=torch.float64))
    # Invariant to a common rotation and symmetric.
    c = pose.euler_degrees_to_rotation(torch.tensor([[33.0, -12.0, 70.0]], dtype=torch.float64))
    torch.testing.assert_close(pose.geodesic_angle_degrees(a, b), pose.geodesic_angle_degrees(c @ a, c @ b))
    torch.testing.assert_close(pose.geodesic_angle_degrees(a, b), pose.geodesic_angle_degrees(b, a))
    moving = identity.clone().requires_grad_()
    pose.geodesic_angle_degrees(moving, identity).backward()
    assert torch.isfinite(moving.grad).all()


def test_shape_errors(canonical):
    with pytest.raises(ValueError, match=r"\(B, 468, 3\)"):
        pose.fit_canonical(torch.zeros(468, 3))
    with pytest.raises(ValueError, match="source"):
        pose.fit_similarity(canonical[:10], torch.zeros(1, 11, 3))
