"""The differentiable face pipeline: detection -> aligned crop -> face mesh -> head pose,
plus iris landmarks and person segmentation, on batches of frames.

:class:`FacePipeline` follows MediaPipe's face-mesh graph:

1. **regions** (:meth:`FacePipeline.regions`, not differentiable): BlazeFace on the
   letterboxed frame, the largest face of each frame, its region built with
   :func:`alignment.roi_from_detection` (box centre, eye line horizontal, 1.5 x the long
   box side). A frame without a face gets a whole-frame region and ``found = False``.
2. **mesh** (differentiable from the frame pixels, for a fixed region): the region is cut
   to 192x192, the face-landmark network gives 468 points in crop pixels and a presence
   logit; the points are mapped back to frame pixels (``z`` scaled like ``x``).
3. **pose**: the canonical face fitted to the mesh (:func:`pose.fit_canonical`).
4. **iris** (optional): 64x64 crops around each eye (corners 33-133 and 362-263, side 2.3 x
   their horizontal extent); the right eye's crop is mirrored, as the network expects a
   left eye, and its points mirrored back.
5. **segmentation** (optional): the whole frame stretched to 256x256, the selfie network,
   logits resized back to the frame and passed through the sigmoid.

For attacks, take the regions from the clean frames once (``regions``), then call the
pipeline on the perturbed frames with those regions: everything after the choice of the
region is differentiable with respect to the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import alignment, pose
from .alignment import RegionOfInterest
from .detection import LEFT_EYE, RIGHT_EYE, FaceDetections, FaceDetector

MESH_INPUT_SIZE = 192
IRIS_INPUT_SIZE = 64
SEGMENTATION_INPUT_SIZE = 256
IRIS_ROI_SCALE = 2.3
# Eye corners of the 468-point mesh that bound the iris crops: (start, end) of the crop's
# x axis, both pointing to the image right for an upright face.
RIGHT_EYE_CORNERS = (33, 133)  # the person's right eye (image left): outer, inner
LEFT_EYE_CORNERS = (362, 263)  # the person's left eye (image right): inner, outer
# Outer eye corners: the person's right eye (image left) and left eye (image right). Their
# distance normalises the landmark error (metrics.landmark_nme).
OUTER_EYE_CORNERS = (RIGHT_EYE_CORNERS[0], LEFT_EYE_CORNERS[1])
# MediaPipe's FACEMESH_FACE_OVAL, in order around the face (forehead, the image-right side,
# chin, the image-left side).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)


@dataclass
class FaceMeshResult:
    """What :class:`FacePipeline` gives for a batch of ``B`` frames (one face per frame).

    Attributes:
        found: ``(B,)`` bool, a face was detected (or a region was given) for the frame.
        roi: the regions used (detached when chosen by the detector).
        landmarks: ``(B, 468, 3)`` mesh points in frame pixels: ``x``, ``y`` and depth
            ``z`` in the same pixel scale as ``x`` (smaller is nearer the camera).
        presence_logits: ``(B,)`` the face-presence logit of the mesh network.
        pose: head pose of each mesh (:class:`pose.PoseFit`, angles in degrees).
        iris: ``(B, 2, 5, 3)`` iris centre and 4 boundary points in frame pixels, eye 0 the
            person's right (image left), eye 1 their left; ``None`` unless asked for.
        eye_contours: ``(B, 2, 71, 3)`` eye contour and brow points, same layout; or ``None``.
        segmentation_logits: ``(B, 1, H, W)`` person logits at frame size, or ``None``.
        detections: the detector's per-frame results when it chose the regions, else ``None``.
    """

    found: torch.Tensor
    roi: RegionOfInterest
    landmarks: torch.Tensor
    presence_logits: torch.Tensor
    pose: pose.PoseFit
    iris: torch.Tensor | None = None
    eye_contours: torch.Tensor | None = None
    segmentation_logits: torch.Tensor | None = None
    detections: list[FaceDetections] | None = None

    @property
    def presence(self) -> torch.Tensor:
        """``(B,)`` face-presence probability."""
        return torch.sigmoid(self.presence_logits)

    @property
    def segmentation(self) -> torch.Tensor | None:
        """``(B, 1, H, W)`` person probability, or ``None``."""
        if self.segmentation_logits is None:
            return None
        return torch.sigmoid(self.segmentation_logits)


def choose_regions(detections: list[FaceDetections], frame_size: tuple[int, int],
                   scale: float = alignment.ROI_SCALE, device=None,
                   dtype=torch.float32) -> tuple[RegionOfInterest, torch.Tensor]:
    """One face-mesh region per frame from detections: the largest face of each frame.

    Returns the regions and ``found (B,)``; frames without a face get a whole-frame region.
    """
    batch = len(detections)
    regions = alignment.full_frame_roi(batch, frame_size, device=device, dtype=dtype)
    found = torch.zeros(batch, dtype=torch.bool, device=device)
    center, size, angle = regions.center.clone(), regions.size.clone(), regions.angle.clone()
    for index, faces in enumerate(detections):
        largest = faces.largest()
        if largest is None:
            continue
        face = faces.select(slice(largest, largest + 1))
        keypoints = face.keypoints.to(device=device, dtype=dtype)
        region = alignment.roi_from_detection(face.boxes.to(device=device, dtype=dtype),
                                              keypoints[:, RIGHT_EYE], keypoints[:, LEFT_EYE],
                                              scale)
        center[index], size[index], angle[index] = region.center[0], region.size[0], region.angle[0]
        found[index] = True
    return RegionOfInterest(center, size, angle), found


def eye_regions(landmarks: torch.Tensor, scale: float = IRIS_ROI_SCALE) -> RegionOfInterest:
    """Iris crop regions from face meshes ``(B, 468, 2|3)``: ``2B`` regions, right eyes
    first then left eyes, as MediaPipe's iris graph builds them (square on the longer side
    of the corners' box, ``scale`` times, turned along the corner line)."""
    regions = []
    for start, end in (RIGHT_EYE_CORNERS, LEFT_EYE_CORNERS):
        first, second = landmarks[:, start, :2], landmarks[:, end, :2]
        boxes = torch.cat([torch.minimum(first, second), torch.maximum(first, second)], dim=-1)
        regions.append(alignment.roi_from_detection(boxes, first, second, scale))
    return RegionOfInterest.cat(regions)


def polygon_mask(polygons: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixels whose centre lies inside each polygon (even-odd rule).

    Only the pixels of each polygon's bounding box are tested. With the mesh points of
    :data:`FACE_OVAL` as the polygon, this is the face region of each frame.

    Args:
        polygons: ``(B, K, 2)`` vertices ``(x, y)`` in pixels, in order.
        height, width: size of the masks.

    Returns:
        ``(B, H, W)`` bool.
    """
    device = polygons.device
    mask = torch.zeros(polygons.shape[0], height, width, dtype=torch.bool, device=device)
    for position, vertices in enumerate(polygons.detach().float()):
        if not bool(torch.isfinite(vertices).all()):
            continue
        low = vertices.amin(dim=0).floor().clamp_min(0)
        high = vertices.amax(dim=0).ceil()
        left, top = int(low[0]), int(low[1])
        right, bottom = min(int(high[0]), width), min(int(high[1]), height)
        if right <= left or bottom <= top:
            continue
        y = torch.arange(top, bottom, device=device, dtype=torch.float32).view(-1, 1) + 0.5
        x = torch.arange(left, right, device=device, dtype=torch.float32).view(1, -1) + 0.5
        inside = torch.zeros(bottom - top, right - left, dtype=torch.bool, device=device)
        following = vertices.roll(-1, dims=0)
        for (x0, y0), (x1, y1) in zip(vertices.tolist(), following.tolist()):
            if y0 == y1:
                continue  # a horizontal edge crosses no row
            straddles = (y0 > y) != (y1 > y)
            crossing = x0 + (y - y0) * ((x1 - x0) / (y1 - y0))
            inside ^= straddles & (x < crossing)
        mask[position, top:bottom, left:right] = inside
    return mask


class FacePipeline(nn.Module):
    """Detection, face mesh, head pose, iris and person segmentation for batches of frames.

    Args:
        device, dtype: where the networks run (``zoo.load``); frames must be on ``device``.
        segmentation: run the selfie segmentation by default.
        iris: run the iris network by default.
        detector: a :class:`FaceDetector` to use instead of the default one.
    """

    def __init__(self, device="cpu", dtype=torch.float32, segmentation: bool = True,
                 iris: bool = False, detector: FaceDetector | None = None):
        super().__init__()
        from . import zoo

        self.detector = detector or FaceDetector(device=device, dtype=dtype)
        self.landmarker = zoo.load("face_landmark", device=device, dtype=dtype)
        self.segmenter = zoo.load("selfie_segmentation", device=device, dtype=dtype) if segmentation else None
        self.iris_landmarker = zoo.load("iris_landmark", device=device, dtype=dtype) if iris else None
        self.register_buffer("canonical", pose.canonical_face(device), persistent=False)

    @staticmethod
    def _check(frames: torch.Tensor) -> None:
        if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"frames must be floating-point RGB (B, 3, H, W) in [0, 1], got "
                             f"{frames.dtype} {tuple(frames.shape)}")

    @torch.no_grad()
    def regions(self, frames: torch.Tensor) -> tuple[RegionOfInterest, torch.Tensor, list[FaceDetections]]:
        """Regions chosen by the detector (detached): ``(roi, found (B,), detections)``."""
        self._check(frames)
        detections = self.detector.detect(frames)
        roi, found = choose_regions(detections, tuple(frames.shape[-2:]), device=frames.device)
        return roi, found, detections

    def mesh(self, frames: torch.Tensor, roi: RegionOfInterest
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(landmarks (B, 468, 3) frame pixels, presence logits (B,))`` for given regions."""
        crops = alignment.crop(frames, roi, MESH_INPUT_SIZE)
        output = self.landmarker(crops)
        # Back to the frames' precision before mapping (bfloat16 cannot hold frame pixels).
        crop_points = output.landmarks.to(frames.dtype)
        roi = roi.to(device=frames.device, dtype=frames.dtype)
        landmarks = alignment.crop_points_to_frame(crop_points, roi, MESH_INPUT_SIZE)
        return landmarks, output.presence.to(frames.dtype)

    def iris(self, frames: torch.Tensor, landmarks: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(iris (B, 2, 5, 3), eye contours (B, 2, 71, 3))`` in frame pixels, eye 0 the
        person's right. The eye regions follow ``landmarks`` (detached)."""
        if self.iris_landmarker is None:
            from . import zoo

            parameter = next(self.landmarker.parameters())
            self.iris_landmarker = zoo.load("iris_landmark", device=parameter.device, dtype=parameter.dtype)
        batch = frames.shape[0]
        regions = eye_regions(landmarks.detach())
        crops = alignment.crop(frames, regions, IRIS_INPUT_SIZE,
                               frame_index=torch.arange(batch, device=frames.device).repeat(2))
        mirrored = torch.zeros(2 * batch, dtype=torch.bool, device=frames.device)
        mirrored[:batch] = True  # right eyes: the network expects a left eye
        crops = torch.where(mirrored[:, None, None, None], crops.flip(-1), crops)
        output = self.iris_landmarker(crops)
        points = []
        regions = regions.to(dtype=frames.dtype)
        for crop_points in (output.iris.to(frames.dtype), output.eye_contour.to(frames.dtype)):
            x = torch.where(mirrored[:, None], IRIS_INPUT_SIZE - crop_points[..., 0], crop_points[..., 0])
            crop_points = torch.cat([x.unsqueeze(-1), crop_points[..., 1:]], dim=-1)
            frame_points = alignment.crop_points_to_frame(crop_points, regions, IRIS_INPUT_SIZE)
            points.append(frame_points.unflatten(0, (2, batch)).transpose(0, 1))
        return points[0], points[1]

    def segment(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` person logits: the frame stretched to 256x256 and back."""
        if self.segmenter is None:
            from . import zoo

            parameter = next(self.landmarker.parameters())
            self.segmenter = zoo.load("selfie_segmentation", device=parameter.device, dtype=parameter.dtype)
        self._check(frames)
        size = SEGMENTATION_INPUT_SIZE
        resized = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True)
        logits = self.segmenter(resized).logits.to(frames.dtype)
        return F.interpolate(logits, size=tuple(frames.shape[-2:]), mode="bilinear", align_corners=False)

    def forward(self, frames: torch.Tensor, roi: RegionOfInterest | None = None,
                segmentation: bool | None = None, iris: bool | None = None) -> FaceMeshResult:
        """Run the pipeline on ``(B, 3, H, W)`` RGB frames in [0, 1].

        Args:
            roi: regions to use (e.g. from the clean frames); chosen by the detector when
                ``None``. With given regions, ``found`` is all true.
            segmentation, iris: override the defaults given at construction.
        """
        self._check(frames)
        detections = None
        if roi is None:
            roi, found, detections = self.regions(frames)
        else:
            if len(roi) != frames.shape[0]:
                raise ValueError(f"{len(roi)} regions for {frames.shape[0]} frames")
            found = torch.ones(frames.shape[0], dtype=torch.bool, device=frames.device)
        landmarks, presence = self.mesh(frames, roi)
        head_pose = pose.fit_canonical(landmarks, canonical=self.canonical)
        iris_points = eye_contours = None
        if iris if iris is not None else self.iris_landmarker is not None:
            iris_points, eye_contours = self.iris(frames, landmarks)
        segmentation_logits = None
        if segmentation if segmentation is not None else self.segmenter is not None:
            segmentation_logits = self.segment(frames)
        return FaceMeshResult(found, roi, landmarks, presence, head_pose, iris_points,
                              eye_contours, segmentation_logits, detections)
