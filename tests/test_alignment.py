"""Face-aligned crops: regions of interest, differentiable crop and inverse warp."""

import math

import pytest
import torch

from vdf_stream.models import alignment
from vdf_stream.models.alignment import RegionOfInterest


def smooth_image(batch=1, height=120, width=160, dtype=torch.float64):
    y = torch.arange(height, dtype=dtype)[:, None] + 0.5
    x = torch.arange(width, dtype=dtype)[None, :] + 0.5
    channels = [
        torch.sin(x / 17.0) * torch.cos(y / 23.0),
        torch.cos((x + y) / 31.0),
        (x / width) * (y / height),
    ]
    image = torch.stack(channels)[None].expand(batch, 3, height, width).clone()
    return image


def random_regions(count, generator, dtype=torch.float64):
    center = torch.rand(count, 2, generator=generator, dtype=dtype) * torch.tensor([100.0, 60.0]).to(dtype) + 30
    size = torch.rand(count, generator=generator, dtype=dtype) * 40 + 20
    angle = (torch.rand(count, generator=generator, dtype=dtype) - 0.5) * 2 * math.pi
    return RegionOfInterest(center, size, angle)


def test_matrices_are_inverse_and_not_mirrored():
    roi = random_regions(5, torch.Generator().manual_seed(0))
    forward = alignment._homogeneous(roi.crop_to_frame(192))
    backward = alignment._homogeneous(roi.frame_to_crop(192))
    torch.testing.assert_close(forward @ backward, torch.eye(3, dtype=torch.float64).expand(5, 3, 3))
    assert (torch.linalg.det(forward[:, :2, :2]) > 0).all()
    # The crop centre is the region centre; the crop's x axis is (cos, sin).
    centre = alignment.apply_affine(roi.crop_to_frame(192), torch.full((5, 1, 2), 96.0, dtype=torch.float64))
    torch.testing.assert_close(centre[:, 0], roi.center)
    step = alignment.apply_affine(roi.crop_to_frame(192), torch.tensor([[[97.0, 96.0]]], dtype=torch.float64).expand(5, 1, 2))
    direction = (step[:, 0] - roi.center) / (roi.size / 192)[:, None]
    torch.testing.assert_close(direction, torch.stack([roi.angle.cos(), roi.angle.sin()], -1))


def test_point_round_trip_exact():
    generator = torch.Generator().manual_seed(1)
    roi = random_regions(4, generator)
    points = torch.rand(4, 468, 3, generator=generator, dtype=torch.float64) * 192
    frame = alignment.crop_points_to_frame(points, roi, 192)
    torch.testing.assert_close(alignment.frame_points_to_crop(frame, roi, 192), points, rtol=0, atol=1e-10)
    # Depth scales like x.
    torch.testing.assert_close(frame[..., 2], points[..., 2] * (roi.size / 192)[:, None])
    two = alignment.crop_points_to_frame(points[..., :2], roi, 192)
    torch.testing.assert_close(two, frame[..., :2])


def test_crop_samples_the_mapped_points():
    # A linear image is reproduced exactly by bilinear sampling: the crop's pixel values
    # must equal the image function at the mapped pixel centres.
    height, width = 90, 130
    y = torch.arange(height, dtype=torch.float64)[:, None] + 0.5
    x = torch.arange(width, dtype=torch.float64)[None, :] + 0.5
    image = torch.stack([x + 0 * y, y + 0 * x])[None]
    roi = RegionOfInterest(torch.tensor([[60.0, 45.0]], dtype=torch.float64),
                           torch.tensor([40.0], dtype=torch.float64), torch.tensor([0.7], dtype=torch.float64))
    patch = alignment.crop(image, roi, 16)
    grid = torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="xy"), -1).double() + 0.5
    mapped = alignment.crop_points_to_frame(grid.reshape(1, -1, 2), roi, 16).reshape(16, 16, 2)
    torch.testing.assert_close(patch[0].permute(1, 2, 0), mapped, rtol=0, atol=1e-9)


def test_crop_then_uncrop_reproduces_inside():
    image = smooth_image(batch=3)
    roi = RegionOfInterest(torch.tensor([[80.0, 60.0], [70.0, 55.0], [90.0, 64.0]], dtype=torch.float64),
                           torch.tensor([60.0, 80.0, 50.0], dtype=torch.float64),
                           torch.tensor([0.0, 0.5, -2.5], dtype=torch.float64))
    patches = alignment.crop(image, roi, 128)
    back, mask = alignment.uncrop(patches, roi, (120, 160))
    assert back.shape == image.shape and mask.shape == (3, 1, 120, 160)
    # Inside the region, away from its border, the round trip reproduces the image.
    shrunk = RegionOfInterest(roi.center, roi.size - 6, roi.angle)
    _, inner = alignment.uncrop(patches, shrunk, (120, 160))
    inner = inner.bool().expand_as(image)
    error = (back - image).abs()[inner]
    assert error.max() < 0.01, error.max()
    # The mask covers the region's area.
    torch.testing.assert_close(mask.sum((1, 2, 3)), roi.size ** 2, rtol=0.03, atol=0)
    assert mask.sum() > inner[:, :1].sum()


def test_rotating_the_frame_rotates_the_crop():
    image = smooth_image(height=100, width=140)
    roi = RegionOfInterest(torch.tensor([[64.0, 47.0]], dtype=torch.float64),
                           torch.tensor([50.0], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64))
    patch = alignment.crop(image, roi, 64)
    # rot90 counter-clockwise: (x, y) -> (y, W - x); the crop axis turns by -90 degrees.
    turned = torch.rot90(image, k=1, dims=(2, 3))
    cx, cy = roi.center[0]
    turned_roi = RegionOfInterest(torch.stack([cy, 140 - cx])[None], roi.size, roi.angle - math.pi / 2)
    torch.testing.assert_close(alignment.crop(turned, turned_roi, 64), patch, rtol=0, atol=1e-9)
    # Rotating the image by an arbitrary angle about the region centre, and the region
    # with it, leaves the crop (nearly) unchanged.
    angle = 0.4
    frame_roi = RegionOfInterest(roi.center, torch.tensor([140.0], dtype=torch.float64), torch.tensor([angle], dtype=torch.float64))
    rotated_frame = alignment.crop(image, frame_roi, 140, antialias=False)  # frame turned by angle
    inner = RegionOfInterest(torch.tensor([[70.0, 70.0]], dtype=torch.float64), roi.size, roi.angle - angle)
    torch.testing.assert_close(alignment.crop(rotated_frame, inner, 64), patch, rtol=0, atol=0.01)


def test_antialias_matches_plain_crop_on_smooth_image():
    image = smooth_image(height=240, width=320)
    roi = RegionOfInterest(torch.tensor([[160.0, 120.0]], dtype=torch.float64),
                           torch.tensor([200.0], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64))
    plain = alignment.crop(image, roi, 64, antialias=False)
    pooled = alignment.crop(image, roi, 64, antialias=True)
    assert (plain - pooled).abs().max() < 0.05
    # On a fine checkerboard the pooled crop is close to the mean, the plain one aliases.
    board = ((torch.arange(240)[:, None] + torch.arange(320)[None]) % 2).double()[None, None]
    assert alignment.crop(board, roi, 64).std() < 0.05
    assert alignment.crop(board, roi, 64, antialias=False).std() > 0.1


def test_crop_gradients_reach_frames_and_region():
    image = smooth_image().float().requires_grad_()
    center = torch.tensor([[80.0, 60.0]], requires_grad=True)
    roi = RegionOfInterest(center, torch.tensor([50.0]), torch.tensor([0.1]))
    alignment.crop(image, roi, 32).pow(2).sum().backward()
    assert image.grad.abs().sum() > 0 and torch.isfinite(image.grad).all()
    assert center.grad.abs().sum() > 0


def test_frame_index_picks_frames():
    image = torch.stack([smooth_image()[0], 1 - smooth_image()[0]])
    roi = RegionOfInterest.cat([
        RegionOfInterest(torch.tensor([[80.0, 60.0]], dtype=torch.float64), torch.tensor([40.0], dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    ] * 3)
    patches = alignment.crop(image, roi, 16, frame_index=torch.tensor([1, 0, 1]))
    torch.testing.assert_close(patches[0], patches[2])
    torch.testing.assert_close(patches[0], 1 - patches[1])
    with pytest.raises(ValueError, match="frame_index"):
        alignment.crop(image, roi, 16)


def test_roi_from_detection_is_mediapipe_geometry():
    boxes = torch.tensor([[100.0, 50.0, 160.0, 130.0]])
    right_eye = torch.tensor([[115.0, 80.0]])
    left_eye = torch.tensor([[145.0, 90.0]])
    roi = alignment.roi_from_detection(boxes, right_eye, left_eye)
    torch.testing.assert_close(roi.center, torch.tensor([[130.0, 90.0]]))
    assert roi.size.item() == pytest.approx(80 * 1.5)
    assert roi.angle.item() == pytest.approx(math.atan2(10, 30))
    # In the crop the eyes lie on a horizontal line, right eye on the left.
    eyes = alignment.frame_points_to_crop(torch.stack([right_eye, left_eye], 1), roi, 192)
    assert eyes[0, 0, 1].item() == pytest.approx(eyes[0, 1, 1].item(), abs=1e-4)
    assert eyes[0, 0, 0] < eyes[0, 1, 0]


def test_roi_from_landmarks_and_full_frame():
    points = torch.zeros(1, 468, 3)
    points[0, :, 0] = torch.linspace(10, 50, 468)
    points[0, :, 1] = torch.linspace(20, 100, 468)
    points[0, 33, :2] = torch.tensor([20.0, 50.0])
    points[0, 263, :2] = torch.tensor([40.0, 50.0])
    roi = alignment.roi_from_landmarks(points)
    torch.testing.assert_close(roi.center, torch.tensor([[30.0, 60.0]]))
    assert roi.size.item() == pytest.approx(120.0) and roi.angle.item() == 0.0
    whole = alignment.full_frame_roi(2, (360, 640))
    corners = whole.corners()
    torch.testing.assert_close(corners[0, 0], torch.tensor([0.0, -140.0]))
    torch.testing.assert_close(corners[1, 2], torch.tensor([640.0, 500.0]))


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        RegionOfInterest(torch.zeros(3), torch.zeros(3), torch.zeros(3))
    roi = alignment.full_frame_roi(1, (10, 10))
    with pytest.raises(ValueError, match="points"):
        alignment.crop_points_to_frame(torch.zeros(2, 5, 2), roi, 8)
    with pytest.raises(ValueError, match="frames"):
        alignment.crop(torch.zeros(1, 3, 10, 10, dtype=torch.uint8), roi, 8)


def test_uncrop_of_the_region_box_equals_the_whole_frame_there():
    generator = torch.Generator().manual_seed(5)
    roi = alignment.RegionOfInterest(torch.tensor([[60.0, 40.0], [150.0, 100.0]]),
                                     torch.tensor([50.0, 70.0]), torch.tensor([0.4, -0.2]))
    patches = torch.rand(2, 2, 32, 32, generator=generator)
    image, mask = alignment.uncrop(patches, roi, (120, 160))
    for index in range(2):
        box = alignment.region_box(roi[index], (120, 160))
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120
        part, part_mask = alignment.uncrop(patches[index:index + 1], roi[index], (120, 160), box=box)
        assert torch.allclose(part, image[index:index + 1, :, y0:y1, x0:x1], atol=1e-5)
        assert torch.equal(part_mask, mask[index:index + 1, :, y0:y1, x0:x1])
        outside = mask[index].clone()
        outside[:, y0:y1, x0:x1] = 0
        assert outside.sum() == 0  # nothing of the region lies outside its box
    assert alignment.region_box(roi, (120, 160))[2] == 160  # the second region leaves the frame


def test_antialiased_crop_pools_only_the_regions_rectangle():
    """Pooling only the rectangle the regions cover (on the pooling's own grid) gives the
    crops of pooling the whole frame, a region half outside the frame included."""
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 400, 700, generator=generator)
    roi = alignment.RegionOfInterest(torch.tensor([[200.0, 150.0], [650.0, 380.0]]),
                                     torch.tensor([260.0, 300.0]), torch.tensor([0.3, -0.5]))
    factor = 4  # floor(260 / 64)
    pooled = F.avg_pool2d(frames, factor)
    theta = alignment._sampling_theta(roi.crop_to_frame(64) / factor, (64, 64),
                                      (pooled.shape[-1], pooled.shape[-2]))
    grid = F.affine_grid(theta, [2, 3, 64, 64], align_corners=False)
    whole = F.grid_sample(pooled, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.allclose(alignment.crop(frames, roi, 64), whole, atol=1e-4)
