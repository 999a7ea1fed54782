"""Surrogate models: face readers from other families than MediaPipe's, as the optimiser
attacks them and as the evaluation reads with them.

A deepfake maker will not use our face pipeline: the protection is worth what transfers to
readers it was not made against. Each :class:`Surrogate` wraps one such reader behind one
interface:

``reference(frames, regions, found)``
    reads the clean frames once (no gradient): the face box the model would work on, and
    what it reads there. ``regions`` are the face-aligned squares of
    :meth:`vdf_stream.models.mesh.FacePipeline.regions`, ``found`` which frames have a face.
``loss(images, regions, scale, reference)``
    reads protected frames (possibly rescaled by ``scale``, with ``regions`` scaled and
    possibly jittered to match) on the clean box, differentiably, and returns a ``(B,)``
    loss to minimise, ``-1`` where the model's target is reached and ``0`` for frames without
    a face, with ``(B,)`` readings (detached) for logs.
``read(frames)``
    the model's own, independent reading of a frame (its own detection, no help from the
    clean frame): ``(found (B,), points (B, N, 2))``, points ``NaN`` where nothing is
    found. That is how an attacker would read the published video; the evaluation compares
    it on protected and original frames.

The box each surrogate reads in the loss follows the regions the optimiser passes: the
clean box is stored relative to the clean region (offset and size over the region's side)
and rebuilt from the given region, so a rescaling or a jittered region (a re-detection
that does not land on the same pixel) moves the box as it moves the region.

Models:

- :class:`MtcnnSurrogate` (``"mtcnn"``): MTCNN's R-Net and O-Net on the clean MTCNN box (or,
  where MTCNN finds no face near the region, the square the region was enlarged from).
  Loss: ``points_weight * -min(nme, nme_target) / nme_target`` (the 5 points, error over
  the clean eye-centre distance) plus ``face_weight * -mean_nets(min(progress, 1))`` where a
  net's progress is how far its face logit margin fell from the clean value towards the
  margin of its threshold (0.7): at 1 that stage of the cascade drops the face.
- :class:`FaceApi68Surrogate` (``"faceapi68"``): face-api's 68-point network on the clean
  MTCNN box, padded to a square as face-api does. Loss ``-min(nme, nme_target) /
  nme_target`` with the error over the clean outer-eye-corner distance (points 36 and 45).
  Its independent reading runs MTCNN on the frame and the network on the largest face.
- :class:`FaceApi68TinySurrogate` (``"faceapi68tiny"``): the same with face-api's tiny
  68-point network (FaceLandmark68TinyNet: its own, smaller network and weights).
- :class:`FaceApiDetectorSurrogate` (``"faceapidet"``): face-api's tiny face detector (a
  one-stage grid detector on the whole frame, another family than MTCNN's cascade). Its
  reading is the face's box, as two points (top-left and bottom-right corners), its error
  the corners' mean shift over the clean box's side; its loss half that error (capped at
  the target) and half how far the face's best objectness logit fell from its clean value
  towards the 0.5 threshold (at least one logit down: 1, the face is lost to the
  detector).

Both run on the device given at construction (frames must be there); ``dtype`` is the
networks' precision, readings and losses come in the frames' dtype.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import nn

from . import alignment, faceapi, faceapi_detector, mtcnn
from .alignment import RegionOfInterest

NME_TARGET = 0.05


def _check_frames(frames: torch.Tensor) -> None:
    if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
        raise ValueError(f"frames must be floating-point RGB (B, 3, H, W) in [0, 1], got "
                         f"{frames.dtype} {tuple(frames.shape)}")


def _check_regions(frames: torch.Tensor, regions: RegionOfInterest) -> None:
    if len(regions) != frames.shape[0]:
        raise ValueError(f"{len(regions)} regions for {frames.shape[0]} frames")


@dataclass
class BoxReference:
    """A surrogate's clean reading (scale 1, frame pixels).

    Attributes:
        regions: the clean face regions the boxes are stored against.
        boxes: ``(B, 4)`` the box the model reads, ``(x_min, y_min, x_max, y_max)``.
        points: ``(B, N, 2)`` what the model reads in that box on the clean frame.
        eye_distance: ``(B,)`` the clean points' eye distance (the NME normaliser), >= 1.
        valid: ``(B,)`` bool, frames the loss attacks (a face was found).
        detected: ``(B,)`` bool, the box is the model's own detection (else from the region).
        margins: ``(B, K)`` clean face logit margins of the model's K scoring stages (MTCNN:
            R-Net, O-Net); ``(B, 0)`` when it has none.
    """

    regions: RegionOfInterest
    boxes: torch.Tensor
    points: torch.Tensor
    eye_distance: torch.Tensor
    valid: torch.Tensor
    detected: torch.Tensor
    margins: torch.Tensor


def boxes_in_regions(boxes: torch.Tensor, clean_regions: RegionOfInterest,
                     regions: RegionOfInterest) -> torch.Tensor:
    """Move boxes stored against ``clean_regions`` to ``regions``: the same offset from the
    centre and the same size, in units of the region's side (the frame's axes)."""
    clean_regions = clean_regions.to(device=boxes.device, dtype=boxes.dtype)
    regions = regions.to(device=boxes.device, dtype=boxes.dtype)
    ratio = (regions.size / clean_regions.size)[:, None]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * ratio
    moved = regions.center + (centre - clean_regions.center) * ratio
    return torch.cat([moved - half, moved + half], dim=-1)


def region_boxes(regions: RegionOfInterest) -> torch.Tensor:
    """Upright square boxes ``(B, 4)`` of the face inside mesh regions: the region's side
    over the enlargement the region was built with (:data:`alignment.ROI_SCALE`)."""
    half = (regions.size / alignment.ROI_SCALE / 2)[:, None]
    return torch.cat([regions.center - half, regions.center + half], dim=-1)


def match_faces(faces: list[mtcnn.MtcnnFaces], regions: RegionOfInterest
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The detected face of each frame nearest the region's centre (within half the
    region's side): ``(boxes (B, 4), matched (B,))``; unmatched frames get the region's box."""
    boxes = region_boxes(regions).clone()
    matched = torch.zeros(len(faces), dtype=torch.bool, device=boxes.device)
    for index, found in enumerate(faces):
        if not len(found):
            continue
        centres = ((found.boxes[:, :2] + found.boxes[:, 2:]) / 2).to(boxes)
        distance = (centres - regions.center[index]).norm(dim=-1)
        nearest = int(distance.argmin())
        if distance[nearest] < regions.size[index] / 2:
            boxes[index] = found.boxes[nearest].to(boxes)
            matched[index] = True
    return boxes, matched


# Direction fields of :func:`point_error` (unit vectors in the frame's axes; "out" and "in"
# are radial, from or to the points' centroid).
DIRECTIONS = ("right", "left", "down", "up", "out", "in")
_AXES = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "down": (0.0, 1.0), "up": (0.0, -1.0)}


def point_error(points: torch.Tensor, truth: torch.Tensor,
                direction: str | torch.Tensor | None = None) -> torch.Tensor:
    """``(B,)`` how far ``points`` ``(B, N, 2)`` moved from ``truth``, in pixels.

    With no ``direction``: the mean distance (what the NME divides). With a direction (of
    :data:`DIRECTIONS`, or a ``(2,)`` unit vector in the frame's axes): the mean
    displacement *along* that field, signed, so that every model optimised with the same
    field is pushed the same way (the whole face read further right, or larger, by every
    reader at once) instead of each its own way.
    """
    offset = points - truth
    if direction is None:
        return offset.norm(dim=-1).mean(dim=-1)
    if isinstance(direction, torch.Tensor):
        unit = direction.to(truth).expand_as(truth)
    elif direction in _AXES:
        unit = truth.new_tensor(_AXES[direction]).expand_as(truth)
    elif direction in ("out", "in"):
        radial = truth - truth.mean(dim=1, keepdim=True)
        unit = radial / radial.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        if direction == "in":
            unit = -unit
    else:
        raise ValueError(f"direction {direction!r}: one of {', '.join(DIRECTIONS)}")
    return (offset * unit).sum(dim=-1).mean(dim=-1)


def mean_shift(points: torch.Tensor, truth: torch.Tensor, eye_distance: torch.Tensor
               ) -> torch.Tensor:
    """``(B, 2)`` the points' mean displacement over the eye distance (detached): where the
    reader as a whole sees the face move."""
    return ((points - truth).mean(dim=1) / eye_distance[:, None]).detach()


def capped_progress(nme: torch.Tensor, target: float) -> torch.Tensor:
    """``min(nme, target) / target``: 1 once the landmark error reaches the target."""
    return nme.clamp(max=target) / target


def threshold_progress(clean: torch.Tensor, current: torch.Tensor, drop: torch.Tensor | float
                       ) -> torch.Tensor:
    """How far a face logit (or margin) fell from its clean value towards the value ``drop``
    at which the model drops the face, over at least one unit, capped at 1 (dropped)."""
    return ((clean - current) / (clean - drop).clamp_min(1.0)).clamp(max=1.0)


def largest_faces(faces: list[mtcnn.MtcnnFaces], like: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The largest face of each frame: ``(found (B,), boxes (B, 4), points (B, 5, 2))`` on
    ``like``'s device and dtype, ``NaN`` where there is none."""
    batch = len(faces)
    found = torch.zeros(batch, dtype=torch.bool, device=like.device)
    boxes = like.new_full((batch, 4), float("nan"))
    points = like.new_full((batch, mtcnn.POINT_COUNT, 2), float("nan"))
    for index, frame_faces in enumerate(faces):
        largest = frame_faces.largest()
        if largest is not None:
            found[index] = True
            boxes[index] = frame_faces.boxes[largest].to(like)
            points[index] = frame_faces.points[largest].to(like)
    return found, boxes, points


class Surrogate(nn.Module, abc.ABC):
    """A face model the protection is optimised against and measured with (see the module
    docstring for the contract)."""

    name: str
    # The reading whose median decides whether the model's target is reached (early stop):
    # "nme" against Targets.surrogate_nme, "flip" against Targets.parse_flip.
    goal = "nme"

    @abc.abstractmethod
    def reference(self, frames: torch.Tensor, regions: RegionOfInterest,
                  found: torch.Tensor) -> BoxReference:
        """Clean reading, no gradient."""

    @abc.abstractmethod
    def loss(self, images: torch.Tensor, regions: RegionOfInterest, scale: float,
             reference: BoxReference) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(B,)`` loss to minimise (``-1``: target reached) and ``(B,)`` readings."""

    def read(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Independent reading: ``(found (B,), points (B, N, 2))``, ``NaN`` where not found
        (the point readers; a parser reads no points)."""
        raise NotImplementedError(f"{self.name} reads no points")


class MtcnnSurrogate(Surrogate):
    """MTCNN as a surrogate (see the module docstring).

    Args:
        device, dtype: where the networks run.
        nme_target: the landmark error (over the eye-centre distance) counted as reached.
        direction: push the points along this field (:func:`point_error`) instead of
            away from their clean places in any direction; the error is then the signed
            displacement along it.
        points_weight, face_weight: the mix of the two terms (their sum is the loss at the
            target: keep it 1).
    """

    name = "mtcnn"

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 nme_target: float = NME_TARGET, points_weight: float = 0.5,
                 face_weight: float = 0.5, direction: str | torch.Tensor | None = None):
        super().__init__()
        self.detector = mtcnn.MTCNN(device=device, dtype=dtype)
        self.nme_target = nme_target
        self.direction = direction
        self.points_weight = points_weight
        self.face_weight = face_weight
        # the margins at which R-Net and O-Net drop a face
        self.drop_margins = (mtcnn.threshold_margin(self.detector.thresholds[1]),
                             mtcnn.threshold_margin(self.detector.thresholds[2]))

    @torch.no_grad()
    def reference(self, frames: torch.Tensor, regions: RegionOfInterest,
                  found: torch.Tensor) -> BoxReference:
        _check_frames(frames)
        _check_regions(frames, regions)
        regions = regions.to(device=frames.device, dtype=frames.dtype)
        boxes, detected = match_faces(self.detector.detect(frames), regions)
        rnet_logits, onet_logits, points = self.detector.refine_crops(frames, boxes)
        margins = torch.stack([mtcnn.face_margin(rnet_logits), mtcnn.face_margin(onet_logits)], -1)
        return BoxReference(regions, boxes, points, self.eye_distance(points).clamp_min(1.0),
                            found.to(frames.device).bool(), detected, margins)

    def loss(self, images: torch.Tensor, regions: RegionOfInterest, scale: float,
             reference: BoxReference) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _check_frames(images)
        _check_regions(images, regions)
        boxes = boxes_in_regions(reference.boxes.to(images), reference.regions, regions)
        rnet_logits, onet_logits, points = self.detector.refine_crops(images, boxes)
        truth = reference.points.to(images) * scale
        eye = reference.eye_distance.to(images) * scale
        nme = point_error(points, truth, self.direction) / eye
        margins = torch.stack([mtcnn.face_margin(rnet_logits), mtcnn.face_margin(onet_logits)], -1)
        clean = reference.margins.to(images)
        drop = images.new_tensor(self.drop_margins)
        # how far each stage's margin fell towards its threshold (1: the stage drops the face)
        face_term = -threshold_progress(clean, margins, drop).mean(dim=-1)
        points_term = -capped_progress(nme, self.nme_target)
        loss = self.points_weight * points_term + self.face_weight * face_term
        valid = reference.valid.to(images.device)
        loss = torch.where(valid, loss, torch.zeros_like(loss))
        readings = {"nme": nme.detach(), "face_score": torch.sigmoid(margins[:, 1]).detach(),
                    "rnet_score": torch.sigmoid(margins[:, 0]).detach(),
                    "shift": mean_shift(points, truth, eye)}
        return loss, readings

    @staticmethod
    def eye_distance(points: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the NME's normaliser: the distance of the two eye centres."""
        return (points[:, mtcnn.RIGHT_EYE] - points[:, mtcnn.LEFT_EYE]).norm(dim=-1)

    @torch.no_grad()
    def detect(self, frames: torch.Tensor) -> list[mtcnn.MtcnnFaces]:
        """MTCNN's faces in each frame (:meth:`mtcnn.MTCNN.detect`)."""
        return self.detector.detect(frames)

    @torch.no_grad()
    def read(self, frames: torch.Tensor, faces: list[mtcnn.MtcnnFaces] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The largest face's 5 points, as MTCNN's own cascade finds them (``faces``: its
        detections of these frames when already made)."""
        _check_frames(frames)
        faces = self.detector.detect(frames) if faces is None else faces
        found, _, points = largest_faces(faces, frames)
        return found, points


class FaceApi68Surrogate(Surrogate):
    """face-api's 68-point landmark network as a surrogate (see the module docstring).

    Args:
        device, dtype: where the networks run.
        nme_target: the landmark error (over the outer-eye-corner distance) counted as reached.
        direction: push the points along this field (:func:`point_error`) instead of
            away from their clean places in any direction; the error is then the signed
            displacement along it.
        detector: the MTCNN finding the boxes (by default a new one, sharing the cached
            networks).
    """

    name = "faceapi68"
    variant = "full"

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 nme_target: float = NME_TARGET, detector: mtcnn.MTCNN | None = None,
                 direction: str | torch.Tensor | None = None):
        super().__init__()
        self.landmarker = faceapi.FaceApiLandmarker(device=device, dtype=dtype,
                                                    variant=self.variant)
        self.detector = detector or mtcnn.MTCNN(device=device, dtype=dtype)
        self.nme_target = nme_target
        self.direction = direction

    @staticmethod
    def eye_distance(points: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the NME's normaliser: the distance of the outer eye corners."""
        corners = points[:, faceapi.RIGHT_EYE_OUTER] - points[:, faceapi.LEFT_EYE_OUTER]
        return corners.norm(dim=-1)

    @torch.no_grad()
    def reference(self, frames: torch.Tensor, regions: RegionOfInterest,
                  found: torch.Tensor) -> BoxReference:
        _check_frames(frames)
        _check_regions(frames, regions)
        regions = regions.to(device=frames.device, dtype=frames.dtype)
        boxes, detected = match_faces(self.detector.detect(frames), regions)
        points = self.landmarker(frames, boxes)
        return BoxReference(regions, boxes, points, self.eye_distance(points).clamp_min(1.0),
                            found.to(frames.device).bool(), detected,
                            frames.new_zeros(frames.shape[0], 0))

    def loss(self, images: torch.Tensor, regions: RegionOfInterest, scale: float,
             reference: BoxReference) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _check_frames(images)
        _check_regions(images, regions)
        boxes = boxes_in_regions(reference.boxes.to(images), reference.regions, regions)
        points = self.landmarker(images, boxes)
        truth = reference.points.to(images) * scale
        eye = reference.eye_distance.to(images) * scale
        nme = point_error(points, truth, self.direction) / eye
        loss = -capped_progress(nme, self.nme_target)
        valid = reference.valid.to(images.device)
        return torch.where(valid, loss, torch.zeros_like(loss)), {
            "nme": nme.detach(), "shift": mean_shift(points, truth, eye)}

    @torch.no_grad()
    def read(self, frames: torch.Tensor, faces: list[mtcnn.MtcnnFaces] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The 68 points in the largest face MTCNN finds (``faces``: its detections of
        these frames when already made)."""
        _check_frames(frames)
        faces = self.detector.detect(frames) if faces is None else faces
        found, boxes, _ = largest_faces(faces, frames)
        points = frames.new_full((frames.shape[0], faceapi.POINT_COUNT, 2), float("nan"))
        if found.any():
            points[found] = self.landmarker(frames[found], boxes[found])
        return found, points


class FaceApi68TinySurrogate(FaceApi68Surrogate):
    """face-api's tiny 68-point network (FaceLandmark68TinyNet) as a surrogate: the same
    reading, box and loss as :class:`FaceApi68Surrogate`, another network."""

    name = "faceapi68tiny"
    variant = "tiny"


class FaceApiDetectorSurrogate(Surrogate):
    """face-api's tiny face detector as a surrogate (see the module docstring).

    The face is the anchor with the best objectness among those whose box overlaps the
    clean box (IoU over :attr:`NEAR_IOU`); on a clean frame it is the detection face-api
    reports there. ``points`` are its box's corners ``(B, 2, 2)`` and ``eye_distance`` the
    clean box's longer side (the error's normaliser).

    Args:
        device, dtype: where the network runs.
        nme_target: the box's corner shift (over its side) counted as reached.
        box_weight, face_weight: the mix of the two terms (keep their sum 1).
    """

    name = "faceapidet"
    NEAR_IOU = 0.3

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 nme_target: float = NME_TARGET, box_weight: float = 0.5,
                 face_weight: float = 0.5):
        super().__init__()
        self.detector = faceapi_detector.TinyFaceDetector(device=device, dtype=dtype)
        self.nme_target = nme_target
        self.box_weight = box_weight
        self.face_weight = face_weight
        self.drop_logit = 0.0  # sigmoid(0) = 0.5, face-api's score threshold

    def _face_anchor(self, boxes: torch.Tensor, logits: torch.Tensor, truth: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(box (B, 4), logit (B,), any (B,))`` of the best anchor overlapping ``truth``."""
        overlap = torch.stack([mtcnn.box_overlap(frame_boxes.detach(), box[None])[:, 0]
                               for frame_boxes, box in zip(boxes, truth.detach())])
        near = overlap > self.NEAR_IOU
        masked = logits.masked_fill(~near, float("-inf"))
        best = masked.argmax(dim=1)
        rows = torch.arange(boxes.shape[0], device=boxes.device)
        return boxes[rows, best], logits[rows, best], near.any(dim=1)

    @torch.no_grad()
    def reference(self, frames: torch.Tensor, regions: RegionOfInterest,
                  found: torch.Tensor) -> BoxReference:
        _check_frames(frames)
        _check_regions(frames, regions)
        regions = regions.to(device=frames.device, dtype=frames.dtype)
        boxes, logits = self.detector(frames)
        matched_boxes, _ = match_faces(self.detector.select(boxes, logits), regions)
        box, logit, any_near = self._face_anchor(boxes, logits, matched_boxes)
        box = torch.where(any_near[:, None], box, matched_boxes)
        detected = any_near & (logit > self.drop_logit)
        side = (box[:, 2:] - box[:, :2]).amax(dim=-1)
        return BoxReference(regions, box, box.view(-1, 2, 2), side.clamp_min(1.0),
                            found.to(frames.device).bool(), detected,
                            torch.where(any_near, logit, logit.new_zeros(()))[:, None])

    def loss(self, images: torch.Tensor, regions: RegionOfInterest, scale: float,
             reference: BoxReference) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _check_frames(images)
        _check_regions(images, regions)
        truth = boxes_in_regions(reference.boxes.to(images), reference.regions, regions)
        boxes, logits = self.detector(images)
        box, logit, any_near = self._face_anchor(boxes, logits, truth)
        side = reference.eye_distance.to(images) * scale
        shift = (box - truth).abs().mean(dim=-1) / side
        # no anchor left on the face: lost to the detector, both terms reached
        shift = torch.where(any_near, shift, shift.new_full((), self.nme_target))
        clean = reference.margins[:, 0].to(images)
        progress = threshold_progress(clean, logit, self.drop_logit)
        progress = torch.where(any_near, progress, progress.new_ones(()))
        loss = (-self.box_weight * capped_progress(shift, self.nme_target)
                - self.face_weight * progress)
        valid = reference.valid.to(images.device)
        score = torch.where(any_near, torch.sigmoid(logit), logit.new_zeros(()))
        return (torch.where(valid, loss, torch.zeros_like(loss)),
                {"nme": shift.detach(), "face_score": score.detach()})

    @torch.no_grad()
    def read(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The best-scoring face's box corners ``(B, 2, 2)``, as face-api finds it."""
        _check_frames(frames)
        found = torch.zeros(frames.shape[0], dtype=torch.bool, device=frames.device)
        points = frames.new_full((frames.shape[0], 2, 2), float("nan"))
        for index, detections in enumerate(self.detector.detect(frames)):
            if len(detections):
                found[index] = True
                points[index] = detections.boxes[0].view(2, 2).to(frames)
        return found, points
