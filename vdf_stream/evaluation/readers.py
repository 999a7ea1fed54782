"""The face readers ``vdf-stream eval`` runs, and how two readings are compared.

:class:`FaceReader` is the face pipeline of the model zoo (BlazeFace detection, the 468-point
face mesh, head pose, and a face parser) reading batches of 8-bit frames; :func:`compare`
turns two of its readings into the per-frame efficacy metrics of
:mod:`vdf_stream.evaluation.metrics` (landmark NME, pose error, parse flip, detection loss,
the mesh's face-presence score). :class:`TransferReader` and :func:`compare_transfer` do the
same with face readers of other families (MTCNN, face-api), each with its own detection.

The pipeline reads each frame independently, with its own face detection. When the
detector finds no face in a compared frame although the clean original has one, the frame
counts as a detection loss, and its landmarks, pose and face mask are still read by the
mesh in the clean original's face region (as a tracker would), so that the NME, pose and
parse figures never leave out the frames where the defense works best. Frames where the
clean original has no face are left out of every efficacy figure (``NaN``).

The face/head mask of parse flip is BiSeNet's head region (classes 1-13, 17, 18 merged as
ER-NeRF merges them) when the user added the BiSeNet checkpoint; otherwise MediaPipe's
selfie segmentation (person probability > 0.5) inside the face oval of the face mesh read
on the same frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import metrics
from ..models.mesh import FACE_OVAL, polygon_mask

PIPELINE_BATCH = 8
SEGMENTATION_THRESHOLD = 0.5


@dataclass
class Reading:
    """What the face pipeline reads from a batch of ``B`` frames (all on one device).

    Attributes:
        found: ``(B,)`` the detector found a face.
        defined: ``(B,)`` landmarks were read in a face region: the frame's own detection,
            or the clean original's region where the detector missed (``fallback``).
        fallback: ``(B,)`` the landmarks come from the clean original's region.
        boxes: the detected box ``(4,)`` of each frame, or ``None``.
        landmarks: ``(B, 468, 3)`` mesh points in frame pixels.
        rotation: ``(B, 3, 3)`` head rotation.
        presence: ``(B,)`` face-presence probability of the mesh.
        face_mask: ``(B, H, W)`` bool face/head pixels (see the module's documentation).
        roi: the regions the mesh read.
    """

    found: torch.Tensor
    defined: torch.Tensor
    fallback: torch.Tensor
    boxes: list
    landmarks: torch.Tensor
    rotation: torch.Tensor
    presence: torch.Tensor
    face_mask: torch.Tensor
    roi: object

    @staticmethod
    def cat(readings: list[Reading]) -> Reading:
        from ..models.alignment import RegionOfInterest

        return Reading(
            torch.cat([r.found for r in readings]),
            torch.cat([r.defined for r in readings]),
            torch.cat([r.fallback for r in readings]),
            [box for r in readings for box in r.boxes],
            torch.cat([r.landmarks for r in readings]),
            torch.cat([r.rotation for r in readings]),
            torch.cat([r.presence for r in readings]),
            torch.cat([r.face_mask for r in readings]),
            RegionOfInterest.cat([r.roi for r in readings]),
        )

    def view(self, position: int) -> dict:
        """The reading of one frame for a :class:`FrameView` (NumPy, CPU)."""
        box = self.boxes[position]
        return {
            "landmarks": (self.landmarks[position, :, :2].float().cpu().numpy()
                          if bool(self.defined[position]) else None),
            "box": box.float().cpu().numpy() if box is not None else None,
            "mask": self.face_mask[position].float().cpu().numpy(),
        }


class FaceReader:
    """The face pipeline of the model zoo, reading batches of 8-bit frames.

    Args:
        device: where the networks run.
        parser: ``"bisenet"`` or ``"selfie+mesh"`` (resolved, not ``auto``).
        batch_size: frames per forward pass.
    """

    def __init__(self, device: torch.device, parser: str, batch_size: int = PIPELINE_BATCH):
        from ..models.mesh import FacePipeline

        self.device = device
        self.parser = parser
        self.batch_size = batch_size
        self.pipeline = FacePipeline(device=device, segmentation=parser == "selfie+mesh")
        self.pipeline.eval()
        self.bisenet = None
        if parser == "bisenet":
            from ..models.bisenet import load_bisenet

            self.bisenet = load_bisenet(device=device)

    @torch.no_grad()
    def read(self, frames: torch.Tensor, reference=None) -> Reading:
        """Read ``(B, 3, H, W)`` uint8 RGB frames; ``reference`` (a :class:`Reading` of the
        clean originals of the same frames) gives the regions used where no face is found."""
        readings = []
        for start in range(0, frames.shape[0], self.batch_size):
            stop = min(start + self.batch_size, frames.shape[0])
            part = None
            if reference is not None:
                part = (reference.roi[start:stop], reference.found[start:stop])
            readings.append(self._read_batch(frames[start:stop], part))
        return Reading.cat(readings)

    def _read_batch(self, frames: torch.Tensor, reference) -> Reading:
        from ..models import pose

        images = frames.to(self.device, non_blocking=True).float().div_(255.0)
        result = self.pipeline(images)
        found = result.found.clone()
        landmarks = result.landmarks
        presence = torch.sigmoid(result.presence_logits)
        rotation = result.pose.rotation
        roi = result.roi
        fallback = torch.zeros_like(found)
        if reference is not None:
            reference_roi, reference_found = reference
            fallback = reference_found.to(found.device) & ~found
            if bool(fallback.any()):
                chosen = torch.nonzero(fallback).squeeze(-1)
                region = reference_roi.to(device=images.device)[chosen]
                points, logits = self.pipeline.mesh(images[chosen], region)
                fit = pose.fit_canonical(points, canonical=self.pipeline.canonical)
                landmarks = landmarks.clone()
                presence = presence.clone()
                rotation = rotation.clone()
                landmarks[chosen] = points
                presence[chosen] = torch.sigmoid(logits)
                rotation[chosen] = fit.rotation
                roi = _replace_regions(roi, chosen, region)
        defined = found | fallback
        boxes = []
        for position, faces in enumerate(result.detections or []):
            largest = faces.largest()
            boxes.append(faces.boxes[largest] if largest is not None else None)
        height, width = images.shape[-2:]
        if self.bisenet is not None:
            from ..models import bisenet

            labels = bisenet.region_labels(bisenet.parse(self.bisenet, images))
            face_mask = labels == bisenet.HEAD
        else:
            person = result.segmentation[:, 0] > SEGMENTATION_THRESHOLD
            oval = polygon_mask(landmarks[:, list(FACE_OVAL), :2], height, width)
            face_mask = person & oval & defined.view(-1, 1, 1)
        return Reading(found, defined, fallback, boxes, landmarks.float(), rotation.float(),
                       presence.float(), face_mask, roi)


def _replace_regions(roi, positions: torch.Tensor, replacement):
    from ..models.alignment import RegionOfInterest

    center, size, angle = roi.center.clone(), roi.size.clone(), roi.angle.clone()
    center[positions] = replacement.center.to(center.dtype)
    size[positions] = replacement.size.to(size.dtype)
    angle[positions] = replacement.angle.to(angle.dtype)
    return RegionOfInterest(center, size, angle)


def compare(reading: Reading, reference: Reading) -> dict[str, torch.Tensor]:
    """Per-frame efficacy metrics of ``reading`` against ``reference`` (``(B,)`` CPU
    float tensors, ``NaN`` where the reference has no face)."""
    valid = (reference.defined & reading.defined).cpu()
    nan = torch.tensor(math.nan)

    def masked(values: torch.Tensor) -> torch.Tensor:
        values = values.detach().float().cpu()
        return torch.where(valid, values, nan)

    return {
        "landmark_nme": masked(metrics.landmark_nme(reading.landmarks, reference.landmarks)),
        "pose_error": masked(metrics.pose_error_degrees(reading.rotation, reference.rotation)),
        "parse_flip": masked(metrics.parse_flip(reference.face_mask, reading.face_mask)),
        "detection_loss": metrics.detection_loss(reference.found, reading.found).cpu(),
        "presence": masked(reading.presence),
    }


# --transfer: per-frame metric -> the metric of metrics.METRICS whose definition it uses
TRANSFER_METRICS = {"mtcnn_nme": "landmark_nme", "mtcnn_faces_lost": "detection_loss",
                    "faceapi68_nme": "landmark_nme", "faceapi68tiny_nme": "landmark_nme",
                    "faceapidet_faces_lost": "detection_loss",
                    "faceapidet_box_shift": "landmark_nme",
                    "fan_nme": "landmark_nme", "fan_faces_lost": "detection_loss"}
# measured only where the user has FAN's and S3FD's weights
FAN_METRICS = ("fan_nme", "fan_faces_lost")
TRANSFER_DESCRIPTIONS = {
    "mtcnn_nme": "MTCNN's 5 points (own detection, largest face), mean distance over the "
                 "original's eye-centre distance",
    "mtcnn_faces_lost": "1 when MTCNN finds a face in the original and none in the compared "
                        "frame; its mean is the share of faces lost",
    "faceapi68_nme": "face-api's 68 points in MTCNN's box, mean distance over the original's "
                     "outer-eye-corner distance (points 36, 45)",
    "faceapi68tiny_nme": "the same with face-api's tiny 68-point network (FaceLandmark68TinyNet)",
    "faceapidet_faces_lost": "1 when face-api's tiny face detector finds a face in the "
                             "original and none in the compared frame",
    "faceapidet_box_shift": "face-api's tiny face detector's best box, mean distance of its "
                            "two corners over the original box's diagonal",
    "fan_nme": "FAN's 68 points (2DFAN-4) in the crop of S3FD's first face, as the "
               "talking-face pipelines read them, mean distance over the original's "
               "outer-eye-corner distance (points 36, 45)",
    "fan_faces_lost": "1 when S3FD finds a face in the original and none in the compared "
                      "frame: the pipelines drop that frame",
}


@dataclass
class TransferReading:
    """What the other families' readers read from ``B`` frames.

    Attributes:
        found: ``(B,)`` MTCNN found a face.
        boxes: ``(B, 4)`` MTCNN's box of the largest face (``NaN`` where none).
        mtcnn_points: ``(B, 5, 2)`` its 5 points.
        faceapi_points: ``(B, 68, 2)`` face-api's 68 points in that box.
        faceapi_tiny_points: ``(B, 68, 2)`` its tiny network's 68 points in that box.
        detector_found: ``(B,)`` face-api's tiny face detector found a face.
        detector_corners: ``(B, 2, 2)`` its best box's corners (``NaN`` where none).
        fan_found: ``(B,)`` S3FD found a face (``None`` without FAN's weights).
        fan_boxes: ``(B, 4)`` S3FD's first face (``NaN`` where none).
        fan_points: ``(B, 68, 2)`` FAN's points in its crop.
    """

    found: torch.Tensor
    boxes: torch.Tensor
    mtcnn_points: torch.Tensor
    faceapi_points: torch.Tensor
    faceapi_tiny_points: torch.Tensor
    detector_found: torch.Tensor
    detector_corners: torch.Tensor
    fan_found: torch.Tensor | None = None
    fan_boxes: torch.Tensor | None = None
    fan_points: torch.Tensor | None = None

    @staticmethod
    def cat(readings: list[TransferReading]) -> TransferReading:
        def joined(name: str) -> torch.Tensor | None:
            parts = [getattr(r, name) for r in readings]
            return None if any(part is None for part in parts) else torch.cat(parts)

        return TransferReading(*(joined(name) for name in
                                 ("found", "boxes", "mtcnn_points", "faceapi_points",
                                  "faceapi_tiny_points", "detector_found",
                                  "detector_corners", "fan_found", "fan_boxes",
                                  "fan_points")))


class TransferReader:
    """MTCNN, face-api's two 68-point networks and its tiny face detector reading 8-bit
    frames on their own (the surrogates' independent readings,
    :mod:`vdf_stream.models.surrogate`); and, where the user has their weights, FAN in
    S3FD's crop as the talking-face pipelines read it
    (:class:`~vdf_stream.models.talking_face.FanTarget`).

    Args:
        device: where the networks run.
        batch_size: frames per forward pass.

    Attributes:
        metrics: the per-frame metrics it measures (of :data:`TRANSFER_METRICS`).
        fan_missing: without FAN's weights, how to get them (else ``None``).
    """

    def __init__(self, device: torch.device, batch_size: int = PIPELINE_BATCH):
        from ..models.surrogate import (FaceApi68Surrogate, FaceApi68TinySurrogate,
                                       FaceApiDetectorSurrogate, MtcnnSurrogate)
        from ..protection.recipes import missing

        self.device = device
        self.batch_size = batch_size
        self.mtcnn = MtcnnSurrogate(device=device)
        # face-api's networks, in the order of TransferReading's fields
        self.landmarkers = [kind(device=device, detector=self.mtcnn.detector)
                            for kind in (FaceApi68Surrogate, FaceApi68TinySurrogate)]
        self.detector = FaceApiDetectorSurrogate(device=device)
        self.fan_missing = missing("fan")
        self.fan = None
        if self.fan_missing is None:
            from ..models.talking_face import FanTarget

            self.fan = FanTarget(device=device)
        self.metrics = [name for name in TRANSFER_METRICS
                        if self.fan is not None or name not in FAN_METRICS]

    @torch.no_grad()
    def read(self, frames: torch.Tensor, reference: TransferReading | None = None
             ) -> TransferReading:
        """Read ``(B, 3, H, W)`` uint8 RGB frames; ``reference`` (the clean originals'
        reading) gives the boxes read where MTCNN finds no face."""
        from ..models.surrogate import largest_faces

        readings = []
        for start in range(0, frames.shape[0], self.batch_size):
            stop = min(start + self.batch_size, frames.shape[0])
            images = frames[start:stop].to(self.device).float().div_(255.0)
            faces = self.mtcnn.detect(images)
            found, boxes, points = largest_faces(faces, images)
            points68 = [model.read(images, faces)[1] for model in self.landmarkers]
            if reference is not None:
                tracked = reference.found[start:stop].to(found.device) & ~found
                if bool(tracked.any()):
                    clean_boxes = reference.boxes[start:stop].to(images)[tracked]
                    refined = self.mtcnn.detector.refine_crops(images[tracked], clean_boxes)
                    points[tracked] = refined[2]
                    for model, read in zip(self.landmarkers, points68):
                        read[tracked] = model.landmarker(images[tracked], clean_boxes)
            detector_found, corners = self.detector.read(images)
            fan = self._read_fan(images, None if reference is None or reference.fan_found is None
                                 else (reference.fan_found[start:stop],
                                       reference.fan_boxes[start:stop]))
            readings.append(TransferReading(found, boxes, points, *points68, detector_found,
                                            corners, *fan))
        return TransferReading.cat(readings)

    def _read_fan(self, images: torch.Tensor, reference) -> tuple:
        """``(found, boxes, points)`` of FAN in S3FD's first face (``None`` x 3 without
        FAN); where S3FD finds no face and the original had one (``reference``: its found
        and boxes), FAN reads in the original's box, as a tracker would."""
        if self.fan is None:
            return None, None, None
        found, boxes = self.fan.first_faces(images)
        read_in = boxes.clone()
        if reference is not None:
            tracked = reference[0].to(found.device) & ~found
            read_in[tracked] = reference[1].to(images)[tracked]
        return found, boxes, self.fan.points_in(images, read_in)


def compare_transfer(reading: TransferReading, reference: TransferReading
                     ) -> dict[str, torch.Tensor]:
    """Per-frame transfer metrics of ``reading`` against ``reference`` (``(B,)`` CPU float
    tensors, ``NaN`` where MTCNN finds no face in the reference)."""
    from ..models import faceapi, mtcnn

    valid = reference.found.cpu()
    nan = torch.tensor(math.nan)

    def masked(values: torch.Tensor) -> torch.Tensor:
        return torch.where(valid, values.detach().float().cpu(), nan)

    fan_metrics = {}
    if reading.fan_found is not None and reference.fan_found is not None:
        from ..models import fan

        fan_valid = reference.fan_found.cpu()
        fan_metrics = {
            "fan_nme": torch.where(fan_valid, metrics.landmark_nme(
                reading.fan_points, reference.fan_points,
                (fan.RIGHT_EYE_OUTER, fan.LEFT_EYE_OUTER)).detach().float().cpu(), nan),
            "fan_faces_lost": metrics.detection_loss(reference.fan_found,
                                                     reading.fan_found).cpu(),
        }
    return fan_metrics | {
        "mtcnn_nme": masked(metrics.landmark_nme(reading.mtcnn_points, reference.mtcnn_points,
                                                 (mtcnn.RIGHT_EYE, mtcnn.LEFT_EYE))),
        "mtcnn_faces_lost": metrics.detection_loss(reference.found, reading.found).cpu(),
        "faceapi68_nme": masked(metrics.landmark_nme(
            reading.faceapi_points, reference.faceapi_points,
            (faceapi.RIGHT_EYE_OUTER, faceapi.LEFT_EYE_OUTER))),
        "faceapi68tiny_nme": masked(metrics.landmark_nme(
            reading.faceapi_tiny_points, reference.faceapi_tiny_points,
            (faceapi.RIGHT_EYE_OUTER, faceapi.LEFT_EYE_OUTER))),
        "faceapidet_faces_lost": metrics.detection_loss(reference.detector_found,
                                                        reading.detector_found).cpu(),
        # the box's corners as two points, over the original's corner-to-corner distance;
        # NaN where either reading has no face
        "faceapidet_box_shift": metrics.landmark_nme(
            reading.detector_corners, reference.detector_corners, (0, 1)).detach().float().cpu(),
    }
