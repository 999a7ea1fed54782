"""Face-aligned crops: rotated square regions of a frame, cut out and put back differentiably.

Coordinates are continuous pixel coordinates: pixel ``(i, j)`` of an image covers
``[j, j + 1) x [i, i + 1)`` in ``(x, y)`` and its centre is ``(j + 0.5, i + 0.5)``; ``y``
points down. This is MediaPipe's convention (normalised coordinates times the image size)
and the one of ``grid_sample(align_corners=False)``.

A :class:`RegionOfInterest` is a square of side ``size`` centred at ``center`` and turned
by ``angle`` radians: the crop's ``x`` axis points along ``(cos angle, sin angle)`` in the
frame (with ``y`` down, a positive angle turns clockwise on screen) and its ``y`` axis along
``(-sin angle, cos angle)``. A crop of ``S x S`` pixels maps crop point ``u`` to the frame
point ``center + R(angle) @ (u / S - 1/2) * size``; crop and frame are never mirrored.

:func:`roi_from_detection` builds the region the way MediaPipe's face-mesh graph does from a
face detection (box centre, eye line horizontal, the longer box side enlarged 1.5 times);
:func:`roi_from_landmarks` does it from a previous face mesh (tracking).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# MediaPipe face mesh: the face-detection box is made square on its long side and enlarged.
ROI_SCALE = 1.5
# Face-mesh points whose line is the eye line (subject's right then left outer eye corner).
MESH_RIGHT_EYE_OUTER = 33
MESH_LEFT_EYE_OUTER = 263


@dataclass
class RegionOfInterest:
    """A batch of rotated squares in frame pixels.

    Attributes:
        center: ``(B, 2)`` centre ``(x, y)`` in frame pixels.
        size: ``(B,)`` side length in frame pixels.
        angle: ``(B,)`` rotation in radians (crop ``x`` axis along ``(cos, sin)``).
    """

    center: torch.Tensor
    size: torch.Tensor
    angle: torch.Tensor

    def __post_init__(self):
        if self.center.dim() != 2 or self.center.shape[-1] != 2:
            raise ValueError(f"center must be (B, 2), got {tuple(self.center.shape)}")
        batch = self.center.shape[0]
        if tuple(self.size.shape) != (batch,) or tuple(self.angle.shape) != (batch,):
            raise ValueError(
                f"size and angle must be ({batch},), got {tuple(self.size.shape)} "
                f"and {tuple(self.angle.shape)}"
            )

    def __len__(self) -> int:
        return self.center.shape[0]

    def __getitem__(self, index) -> RegionOfInterest:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return RegionOfInterest(self.center[index], self.size[index], self.angle[index])

    @staticmethod
    def cat(regions: list[RegionOfInterest]) -> RegionOfInterest:
        return RegionOfInterest(
            torch.cat([r.center for r in regions]),
            torch.cat([r.size for r in regions]),
            torch.cat([r.angle for r in regions]),
        )

    def detach(self) -> RegionOfInterest:
        return RegionOfInterest(self.center.detach(), self.size.detach(), self.angle.detach())

    def to(self, device=None, dtype=None) -> RegionOfInterest:
        return RegionOfInterest(
            self.center.to(device=device, dtype=dtype),
            self.size.to(device=device, dtype=dtype),
            self.angle.to(device=device, dtype=dtype),
        )

    def rotation(self) -> torch.Tensor:
        """``(B, 2, 2)``: crop axes as columns, in frame coordinates."""
        cos, sin = self.angle.cos(), self.angle.sin()
        return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)

    def crop_to_frame(self, crop_size: int) -> torch.Tensor:
        """``(B, 2, 3)`` affine map from crop pixels (``crop_size`` square) to frame pixels."""
        linear = self.rotation() * (self.size / crop_size)[:, None, None]
        offset = self.center - (linear @ linear.new_full((2, 1), crop_size / 2)).squeeze(-1)
        return torch.cat([linear, offset.unsqueeze(-1)], dim=-1)

    def frame_to_crop(self, crop_size: int) -> torch.Tensor:
        """``(B, 2, 3)`` affine map from frame pixels to crop pixels (inverse of the above)."""
        linear = self.rotation().transpose(1, 2) * (crop_size / self.size)[:, None, None]
        centre = linear.new_full((1, 2), crop_size / 2)
        offset = centre - (linear @ self.center.unsqueeze(-1)).squeeze(-1)
        return torch.cat([linear, offset.unsqueeze(-1)], dim=-1)

    def corners(self) -> torch.Tensor:
        """``(B, 4, 2)`` frame-pixel corners: top-left, top-right, bottom-right, bottom-left."""
        unit = self.center.new_tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        return apply_affine(self.crop_to_frame(1), unit.expand(len(self), 4, 2))


def apply_affine(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply ``(B, 2, 3)`` affine maps to ``(B, N, 2)`` points."""
    return points @ matrix[:, :, :2].transpose(1, 2) + matrix[:, :, 2].unsqueeze(1)


def _check_points(points: torch.Tensor, roi: RegionOfInterest) -> None:
    if points.dim() != 3 or points.shape[-1] not in (2, 3) or points.shape[0] != len(roi):
        raise ValueError(
            f"points must be (B, N, 2) or (B, N, 3) with B = {len(roi)} regions, "
            f"got {tuple(points.shape)}"
        )


def crop_points_to_frame(points: torch.Tensor, roi: RegionOfInterest,
                         crop_size: int) -> torch.Tensor:
    """Crop-pixel points ``(B, N, 2|3)`` -> frame pixels; a third (depth) coordinate is
    scaled like ``x`` (multiplied by ``size / crop_size``), as MediaPipe projects landmarks."""
    _check_points(points, roi)
    xy = apply_affine(roi.crop_to_frame(crop_size), points[..., :2])
    if points.shape[-1] == 2:
        return xy
    depth = points[..., 2:] * (roi.size / crop_size)[:, None, None]
    return torch.cat([xy, depth], dim=-1)


def frame_points_to_crop(points: torch.Tensor, roi: RegionOfInterest,
                         crop_size: int) -> torch.Tensor:
    """Frame-pixel points ``(B, N, 2|3)`` -> crop pixels (inverse of :func:`crop_points_to_frame`)."""
    _check_points(points, roi)
    xy = apply_affine(roi.frame_to_crop(crop_size), points[..., :2])
    if points.shape[-1] == 2:
        return xy
    depth = points[..., 2:] * (crop_size / roi.size)[:, None, None]
    return torch.cat([xy, depth], dim=-1)


def _pixel_to_normalised(width: int, height: int, like: torch.Tensor) -> torch.Tensor:
    """3x3 map from pixel coordinates to ``grid_sample``'s [-1, 1] (align_corners=False)."""
    return like.new_tensor([[2.0 / width, 0.0, -1.0], [0.0, 2.0 / height, -1.0], [0.0, 0.0, 1.0]])


def _normalised_to_pixel(width: int, height: int, like: torch.Tensor) -> torch.Tensor:
    return like.new_tensor([[width / 2.0, 0.0, width / 2.0], [0.0, height / 2.0, height / 2.0],
                            [0.0, 0.0, 1.0]])


def _homogeneous(matrix: torch.Tensor) -> torch.Tensor:
    bottom = matrix.new_tensor([0.0, 0.0, 1.0]).expand(matrix.shape[0], 1, 3)
    return torch.cat([matrix, bottom], dim=1)


def _sampling_theta(output_to_input: torch.Tensor, output_size: tuple[int, int],
                    input_size: tuple[int, int]) -> torch.Tensor:
    """``affine_grid`` theta for a pixel map ``output -> input``; sizes as ``(width, height)``."""
    to_pixels = _normalised_to_pixel(*output_size, output_to_input)
    to_normalised = _pixel_to_normalised(*input_size, output_to_input)
    return (to_normalised @ _homogeneous(output_to_input) @ to_pixels)[:, :2]


def _check_frames(frames: torch.Tensor) -> None:
    if frames.dim() != 4 or not frames.is_floating_point():
        raise ValueError(f"frames must be a floating-point (B, C, H, W) tensor, got "
                         f"{frames.dtype} {tuple(frames.shape)}")


def crop(frames: torch.Tensor, roi: RegionOfInterest, crop_size: int,
         frame_index: torch.Tensor | None = None, antialias: bool = True,
         padding_mode: str = "zeros") -> torch.Tensor:
    """Cut rotated square regions out of frames, differentiably (bilinear ``grid_sample``).

    Args:
        frames: ``(B, C, H, W)`` floating point.
        roi: ``K`` regions; region ``k`` is cut from frame ``frame_index[k]`` (by default
            ``K == B`` and region ``k`` from frame ``k``).
        crop_size: side of the square output, in pixels.
        antialias: when every region is at least twice as large as the crop, average-pool
            the frames by that integer factor first, so that shrinking does not alias.
        padding_mode: ``grid_sample`` padding outside the frame ("zeros", "border", ...).

    Returns:
        ``(K, C, crop_size, crop_size)``; differentiable with respect to ``frames`` and the
        region's parameters.
    """
    _check_frames(frames)
    if frame_index is None:
        if len(roi) != frames.shape[0]:
            raise ValueError(f"{len(roi)} regions for {frames.shape[0]} frames: pass frame_index")
        source = frames
    else:
        source = frames[frame_index]
    roi = roi.to(device=frames.device, dtype=frames.dtype)
    height, width = source.shape[-2:]
    matrix = roi.crop_to_frame(crop_size)
    factor = antialias_factor(roi, crop_size, (height, width)) if antialias else 1
    if factor > 1:
        # pool only the rectangle the regions cover, cut on the pooling's own grid (so the
        # pooled pixels are those of the whole frame): a fraction of the work
        x0, y0, x1, y1 = pooling_box(roi, (height, width), factor)
        if x1 > x0 and y1 > y0:
            source = source[..., y0:y1, x0:x1]
            matrix = torch.cat([matrix[:, :, :2], matrix[:, :, 2:] - matrix.new_tensor([[x0], [y0]])],
                               dim=-1)
        source = F.avg_pool2d(source, factor)
        matrix = matrix / factor
        height, width = source.shape[-2:]
    theta = _sampling_theta(matrix, (crop_size, crop_size), (width, height))
    grid = F.affine_grid(theta, [len(roi), source.shape[1], crop_size, crop_size],
                         align_corners=False)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode=padding_mode,
                         align_corners=False)


def region_box(roi: RegionOfInterest, frame_size: tuple[int, int],
               margin: int = 1) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the smallest pixel rectangle of the frame (``x1``, ``y1``
    exclusive) holding every pixel whose centre lies inside one of the regions, widened by
    ``margin`` pixels and clipped to the frame; empty (``x1 <= x0``) when no region
    reaches into the frame."""
    height, width = frame_size
    if not len(roi):
        return 0, 0, 0, 0
    corners = roi.corners().detach().reshape(-1, 2)
    low = torch.floor(corners.amin(dim=0)).tolist()
    high = torch.ceil(corners.amax(dim=0)).tolist()
    x0 = min(max(int(low[0]) - margin, 0), width)
    y0 = min(max(int(low[1]) - margin, 0), height)
    x1 = max(min(int(high[0]) + margin, width), x0)
    y1 = max(min(int(high[1]) + margin, height), y0)
    return x0, y0, x1, y1


def antialias_factor(roi: RegionOfInterest, crop_size: int, frame_size: tuple[int, int]) -> int:
    """The integer factor :func:`crop` average-pools the frames by before cutting
    ``crop_size`` crops of ``roi`` (1: none): the smallest region's side over the crop's."""
    if not len(roi):
        return 1
    factor = int(torch.floor(roi.size.detach().min() / crop_size).item())
    return max(1, min(factor, *frame_size))


def pooling_box(roi: RegionOfInterest, frame_size: tuple[int, int], factor: int,
                margin: int | None = None) -> tuple[int, int, int, int]:
    """:func:`region_box` (``margin`` default ``2 * factor + 1``) with its top-left corner
    on the grid of a ``factor`` pooling and its sides whole pooling cells (or reaching the
    frame's edge): pooling it gives the same pixels as pooling the whole frame there."""
    height, width = frame_size
    x0, y0, x1, y1 = region_box(roi, frame_size, 2 * factor + 1 if margin is None else margin)
    if x1 <= x0 or y1 <= y0:
        return x0, y0, x1, y1
    x0, y0 = x0 // factor * factor, y0 // factor * factor
    x1 = min(width, x0 + -(-(x1 - x0) // factor) * factor)
    y1 = min(height, y0 + -(-(y1 - y0) // factor) * factor)
    return x0, y0, x1, y1


def uncrop_grid(roi: RegionOfInterest, crop_size: int, frame_size: tuple[int, int],
                box: tuple[int, int, int, int] | None = None, like: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grid, inside)``: where :func:`uncrop` samples the crops for each frame pixel (of
    ``box`` when given; ``grid_sample``'s ``(B, h, w, 2)``) and its 0/1 mask ``(B, 1, h, w)``
    of the pixels inside the region. It depends on the regions alone: images warped with
    the same regions can share it (``uncrop(..., grid=)``). ``like``: the dtype and device."""
    height, width = frame_size
    dtype = like.dtype if like is not None else roi.center.dtype
    device = like.device if like is not None else roi.center.device
    roi = roi.to(device=device, dtype=dtype)
    matrix = roi.frame_to_crop(crop_size)
    if box is not None:
        x0, y0, x1, y1 = box
        # box pixel (i, j) is frame pixel (y0 + i, x0 + j)
        matrix = torch.cat([matrix[:, :, :2],
                            matrix[:, :, 2:] + matrix[:, :, :2] @ matrix.new_tensor([[x0], [y0]])],
                           dim=-1)
        width, height = x1 - x0, y1 - y0
    theta = _sampling_theta(matrix, (width, height), (crop_size, crop_size))
    grid = F.affine_grid(theta, [len(roi), 1, height, width], align_corners=False)
    inside = (grid.detach().abs() <= 1).all(dim=-1)
    return grid, inside.unsqueeze(1).to(dtype)


def uncrop(crops: torch.Tensor, roi: RegionOfInterest, frame_size: tuple[int, int],
           box: tuple[int, int, int, int] | None = None,
           grid: tuple[torch.Tensor, torch.Tensor] | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp crop-space images back into the frame (the inverse of :func:`crop`).

    Args:
        crops: ``(B, C, S, S)`` images in the regions' crop space.
        roi: ``B`` regions.
        frame_size: ``(height, width)`` of the frames.
        box: ``(x0, y0, x1, y1)``: resample only this rectangle of the frame (e.g.
            :func:`region_box`, outside which the mask is 0), a fraction of the work for a
            face that fills a fraction of the frame.
        grid: :func:`uncrop_grid` of these regions, crop size, frame size and box, when
            already made (made here when ``None``).

    Returns:
        ``(image, mask)``: ``(B, C, H, W)`` the crops resampled at every frame pixel (values
        outside the region are the crop's nearest border value) and ``(B, 1, H, W)`` a 0/1
        mask of the frame pixels whose centre lies inside the region; with ``box``, the
        same for the box's pixels only, ``(B, C, y1 - y0, x1 - x0)``. ``image`` is
        differentiable with respect to ``crops`` and the region.
    """
    _check_frames(crops)
    if crops.shape[-1] != crops.shape[-2] or crops.shape[0] != len(roi):
        raise ValueError(f"crops must be square (B, C, S, S) with B = {len(roi)} regions, "
                         f"got {tuple(crops.shape)}")
    sampling, inside = grid if grid is not None else uncrop_grid(
        roi, crops.shape[-1], frame_size, box, like=crops)
    image = F.grid_sample(crops, sampling, mode="bilinear", padding_mode="border",
                          align_corners=False)
    return image, inside


def _eye_angle(right_eye: torch.Tensor, left_eye: torch.Tensor) -> torch.Tensor:
    """Angle of the line from the subject's right eye (image left) to the left eye."""
    delta = left_eye - right_eye
    return torch.atan2(delta[..., 1], delta[..., 0])


def roi_from_detection(boxes: torch.Tensor, right_eye: torch.Tensor, left_eye: torch.Tensor,
                       scale: float = ROI_SCALE) -> RegionOfInterest:
    """MediaPipe's face-mesh region from face detections.

    The region is centred on the box, turned so that the eye line is horizontal in the
    crop, and its side is ``scale`` times the longer box side.

    Args:
        boxes: ``(B, 4)`` ``(x_min, y_min, x_max, y_max)`` in frame pixels.
        right_eye, left_eye: ``(B, 2)`` the detector's keypoints 0 and 1 in frame pixels.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (B, 4), got {tuple(boxes.shape)}")
    center = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=-1) * scale
    return RegionOfInterest(center, side, _eye_angle(right_eye, left_eye))


def roi_from_landmarks(landmarks: torch.Tensor, scale: float = ROI_SCALE) -> RegionOfInterest:
    """MediaPipe's tracking region from a face mesh ``(B, 468, 2|3)`` in frame pixels.

    The axis-aligned box of all points, the eye line from points 33 and 263, the longer
    side enlarged ``scale`` times.
    """
    if landmarks.dim() != 3 or landmarks.shape[-1] not in (2, 3):
        raise ValueError(f"landmarks must be (B, N, 2|3), got {tuple(landmarks.shape)}")
    xy = landmarks[..., :2]
    boxes = torch.cat([xy.amin(dim=1), xy.amax(dim=1)], dim=-1)
    return roi_from_detection(boxes, xy[:, MESH_RIGHT_EYE_OUTER], xy[:, MESH_LEFT_EYE_OUTER], scale)


def full_frame_roi(batch: int, frame_size: tuple[int, int], device=None,
                   dtype=torch.float32) -> RegionOfInterest:
    """Upright squares that cover whole frames (long side), for frames without a face."""
    height, width = frame_size
    center = torch.tensor([[width / 2, height / 2]], device=device, dtype=dtype).expand(batch, 2)
    size = torch.full((batch,), float(max(height, width)), device=device, dtype=dtype)
    return RegionOfInterest(center.clone(), size, torch.zeros(batch, device=device, dtype=dtype))


def normalize_angle(angle: torch.Tensor) -> torch.Tensor:
    """Wrap radians into ``[-pi, pi)``."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi
