"""``vdf-stream eval``: how visible a protection is, and how much it misleads the face
preprocessing of talking-face generators, as a library.

:func:`evaluate` pairs the frames of an ORIGINAL and a PROTECTED video by index and measures

* **visibility** (first, unless turned off): ColorVideoVDP's JOD of the whole video at its
  native size and of a run of frames at full screen, per frame, beside the codec floor (the
  original re-encoded with the protected file's settings): :mod:`vdf_stream.visibility`;
* **fidelity**: PSNR, SSIM, max |delta| and temporal flicker between the two (secondary:
  they do not see structured low-frequency changes on skin, nor flicker);
* **efficacy**: what the face pipeline of the model zoo (BlazeFace detection, 468-point
  face mesh, head pose, and a face parser) reads from the protected frame against what it
  reads from the original: landmark NME, pose error, parse flip, detection loss and the
  mesh's face-presence score;
* **robustness** (optional): efficacy again after each degradation an adversary or a
  platform applies (H.264 re-encoding, down-and-up scaling, JPEG, Gaussian blur, median,
  a bilateral denoiser), each also applied to the original so that every figure has its
  noise floor beside it;
* **transfer** (optional): what face readers of other families read on their own (own
  detection): MTCNN's 5 points and faces lost, face-api's 68 points on MTCNN's box
  (:class:`TransferReader`), protected against original, beside the floor of H.264 CRF 23
  applied to the original alone.

Every metric is defined once, in :mod:`vdf_stream.evaluation.metrics`. What is compared with what:

``efficacy``
    pipeline(PROTECTED) against pipeline(ORIGINAL): the frames as the files hold them (the
    protected file is normally already H.264-encoded: that is what gets published).
``robustness[*].efficacy``
    pipeline(D(PROTECTED)) against pipeline(D(ORIGINAL)): what the perturbation still does
    once both went through the degradation D (the degradation's own effect cancels).
``robustness[*].floor``
    pipeline(D(ORIGINAL)) against pipeline(ORIGINAL): what D alone does to an unprotected
    video. The noise floor of the two other figures.
``robustness[*].versus_clean``
    pipeline(D(PROTECTED)) against pipeline(ORIGINAL): the error a generator trained on the
    degraded protected video really suffers. Compare it with ``floor``: the protection
    survives D when it is far above it.
``transfer.efficacy``
    MTCNN and face-api on PROTECTED against the same on ORIGINAL; where MTCNN finds no face
    in the protected frame, both read in the original's MTCNN box (as a tracker would) and
    the frame counts in ``mtcnn_faces_lost``.
``transfer.floor``
    the same on H.264 CRF 23 of ORIGINAL against ORIGINAL: what encoding alone does.

The pipeline reads each frame independently, with its own face detection. When the
detector finds no face in a compared frame although the clean original has one, the frame
counts as a detection loss, and its landmarks, pose and face mask are still read by the
mesh in the clean original's face region (as a tracker would), so that the NME, pose and
parse figures never leave out the frames where the defense works best. Frames where the
clean original has no face are left out of every efficacy figure (``NaN``, ``None`` in
JSON) and counted as ``missing``.

The face/head mask of parse flip is BiSeNet's head region (classes 1-13, 17, 18 merged as
ER-NeRF merges them) when the user added the BiSeNet checkpoint; otherwise MediaPipe's
selfie segmentation (person probability > 0.5) inside the face oval of the face mesh read
on the same frame, which the result says.

Frames are decoded once, in lockstep, and evaluated in chunks (bounded memory whatever the
length of the video); a second pass decodes the few frames shown in a report.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from . import metrics
from ..errors import InputError, UsageError
from ..media.frames import Frames, VideoInfo
from ..visibility import FULL_SCREEN_FRAMES

PARSERS = ("auto", "bisenet", "selfie+mesh")
PIPELINE_BATCH = 8
CHUNK_FRAMES = 32
SEGMENTATION_THRESHOLD = 0.5
H264_PRESET = "medium"

# MediaPipe's FACEMESH_FACE_OVAL, in order around the face (forehead, the image-right side,
# chin, the image-left side).
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)

REFERENCES = {
    "efficacy": "face pipeline on PROTECTED against the face pipeline on ORIGINAL",
    "robustness.efficacy": "pipeline on D(PROTECTED) against pipeline on D(ORIGINAL): what the "
                           "perturbation still does after the degradation D",
    "robustness.floor": "pipeline on D(ORIGINAL) against pipeline on ORIGINAL: what D alone "
                        "does to an unprotected video (the noise floor)",
    "robustness.versus_clean": "pipeline on D(PROTECTED) against pipeline on ORIGINAL: the "
                               "error a generator trained on the degraded protected video "
                               "suffers; set it beside the floor",
    "lost_faces": "a compared frame where the detector finds no face although the clean "
                  "original has one counts in detection_loss; its landmarks, pose and face "
                  "mask are read in the clean original's face region",
    "missing": "frames where the clean original has no face are left out of the efficacy "
               "figures (None) and counted as missing",
    "transfer.efficacy": "MTCNN and face-api (own detection) on PROTECTED against the same on "
                         "ORIGINAL; read in the original's MTCNN box where MTCNN finds no face",
    "transfer.floor": "the same on H.264 CRF 23 of ORIGINAL against ORIGINAL",
}


# ---------------------------------------------------------------------------------------
# Options and results


@dataclass
class EvalOptions:
    """What ``vdf-stream eval`` measures and how.

    Attributes:
        frames: evaluate at most this many frames (``None``: all selected by ``stride``).
        stride: evaluate frames 0, S, 2S, ...
        robustness: also measure efficacy after each degradation of :func:`degradations`.
        device: ``auto`` (a CUDA GPU when present), ``cpu``, ``cuda``...
        parser: ``auto`` (BiSeNet when the checkpoint was added, else selfie+mesh),
            ``bisenet`` or ``selfie+mesh``.
        allow_length_mismatch: evaluate the common frames of videos of different lengths
            instead of refusing them.
        chunk_frames: selected frames evaluated together (also the length of the H.264
            sequences of the robustness test).
        batch_size: frames the face pipeline reads at once.
        only: names of the degradations to run (``None``: all), e.g. ``("h264",)``.
        transfer: also read with MTCNN and face-api's 68-point network (:class:`TransferReader`).
        visibility: measure ColorVideoVDP's JOD (:mod:`vdf_stream.visibility`).
        visibility_stride: 1: the video metric reads every frame; ``S``: one segment of
            consecutive frames every ``S`` segments.
        full_screen_frames: consecutive frames measured at full screen (0: none).
        floor_crf: the codec floor's CRF (``None``: read from PROTECTED).
        visibility_floor: measure the codec floor too (off: the caller has it).
    """

    frames: int | None = None
    stride: int = 1
    robustness: bool = False
    device: str = "auto"
    parser: str = "auto"
    allow_length_mismatch: bool = False
    chunk_frames: int = CHUNK_FRAMES
    batch_size: int = PIPELINE_BATCH
    only: tuple[str, ...] | None = None
    transfer: bool = False
    visibility: bool = True
    visibility_stride: int = 1
    full_screen_frames: int = FULL_SCREEN_FRAMES
    floor_crf: float | None = None
    visibility_floor: bool = True

    def visibility_options(self, device, frames: int | None):
        from ..visibility import VisibilityOptions

        return VisibilityOptions(frames=frames, stride=self.visibility_stride,
                                 full_screen_frames=self.full_screen_frames,
                                 floor_crf=self.floor_crf, floor=self.visibility_floor,
                                 device=device)

    def validate(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise UsageError(f"--frames must be at least 1, got {self.frames}")
        if self.stride < 1:
            raise UsageError(f"--stride must be at least 1, got {self.stride}")
        if self.parser not in PARSERS:
            raise UsageError(f"--parser must be one of {', '.join(PARSERS)}, got {self.parser!r}")
        if self.chunk_frames < 1 or self.batch_size < 1:
            raise UsageError("chunk_frames and batch_size must be at least 1")
        if self.only is not None:
            known = {degradation.name for degradation in degradations(2, 2)}
            unknown = sorted(set(self.only) - known)
            if unknown:
                raise UsageError(f"unknown degradation {', '.join(unknown)}; known: "
                                 f"{', '.join(sorted(known))}")
        if self.visibility:
            self.visibility_options("cpu", None).validate()


@dataclass
class FrameView:
    index: int
    original: np.ndarray   # (H, W, 3) uint8 RGB
    protected: np.ndarray  # (H, W, 3) uint8 RGB
    original_reading: dict   # {"landmarks": (468, 2) float32 px or None, "box": (4,) x0,y0,x1,y1 or None, "mask": (H, W) float32 in [0,1] or None}
    protected_reading: dict  # same keys
    metrics: dict            # metric name -> float for this frame
    why: str = ""            # why this frame was chosen: "lowest NME", "median NME"...
    visibility_map: np.ndarray | None = None  # (H, W, 3) uint8: where a viewer sees the change
    jod: float | None = None  # the frame's JOD as a still image at its native size


# ---------------------------------------------------------------------------------------
# Reading faces


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


def polygon_mask(polygons: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixels whose centre lies inside each polygon (even-odd rule).

    Only the pixels of each polygon's bounding box are tested.

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
                    "faceapidet_box_shift": "landmark_nme"}
TRANSFER_FLOOR_CRF = 23
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
    """

    found: torch.Tensor
    boxes: torch.Tensor
    mtcnn_points: torch.Tensor
    faceapi_points: torch.Tensor
    faceapi_tiny_points: torch.Tensor
    detector_found: torch.Tensor
    detector_corners: torch.Tensor

    @staticmethod
    def cat(readings: list[TransferReading]) -> TransferReading:
        return TransferReading(*(torch.cat([getattr(r, name) for r in readings]) for name in
                                 ("found", "boxes", "mtcnn_points", "faceapi_points",
                                  "faceapi_tiny_points", "detector_found",
                                  "detector_corners")))


class TransferReader:
    """MTCNN, face-api's two 68-point networks and its tiny face detector reading 8-bit
    frames on their own (the surrogates' independent readings,
    :mod:`vdf_stream.models.surrogate`).

    Args:
        device: where the networks run.
        batch_size: frames per forward pass.
    """

    def __init__(self, device: torch.device, batch_size: int = PIPELINE_BATCH):
        from ..models.surrogate import (FaceApi68Surrogate, FaceApi68TinySurrogate,
                                       FaceApiDetectorSurrogate, MtcnnSurrogate)

        self.device = device
        self.batch_size = batch_size
        self.mtcnn = MtcnnSurrogate(device=device)
        # face-api's networks, in the order of TransferReading's fields
        self.landmarkers = [kind(device=device, detector=self.mtcnn.detector)
                            for kind in (FaceApi68Surrogate, FaceApi68TinySurrogate)]
        self.detector = FaceApiDetectorSurrogate(device=device)

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
            readings.append(TransferReading(found, boxes, points, *points68, detector_found,
                                            corners))
        return TransferReading.cat(readings)


def compare_transfer(reading: TransferReading, reference: TransferReading
                     ) -> dict[str, torch.Tensor]:
    """Per-frame transfer metrics of ``reading`` against ``reference`` (``(B,)`` CPU float
    tensors, ``NaN`` where MTCNN finds no face in the reference)."""
    from ..models import faceapi, mtcnn

    valid = reference.found.cpu()
    nan = torch.tensor(math.nan)

    def masked(values: torch.Tensor) -> torch.Tensor:
        return torch.where(valid, values.detach().float().cpu(), nan)

    return {
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


def summarize_transfer(series: _Series) -> dict:
    """Summaries of the transfer metrics, with the thresholds of the metric each one uses."""
    return {name: metrics.summarize_metric(kind, series.get(name))
            for name, kind in TRANSFER_METRICS.items()}


def fidelity(original: torch.Tensor, protected: torch.Tensor,
             previous_original: torch.Tensor | None, previous_protected: torch.Tensor | None,
             has_previous: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame fidelity metrics (``(B,)`` CPU float tensors); temporal flicker is ``NaN``
    for a frame without a previous frame (the first of the video)."""
    values = {
        "psnr": metrics.psnr(original, protected),
        "ssim": metrics.ssim(original, protected),
        "max_abs_difference": metrics.max_abs_difference(original, protected),
    }
    flicker = torch.full((original.shape[0],), math.nan)
    if previous_original is not None and bool(has_previous.any()):
        computed = metrics.temporal_flicker(original, protected, previous_original,
                                            previous_protected).cpu()
        flicker = torch.where(has_previous, computed, flicker)
    values["temporal_flicker"] = flicker
    return {name: value.detach().float().cpu() for name, value in values.items()}


# ---------------------------------------------------------------------------------------
# Degradations


@dataclass(frozen=True)
class Degradation:
    """A transformation an adversary or a platform applies to a published video.

    ``graph`` is a vdf-stream filter graph for the degradations that are built-in filters;
    ``h264`` and ``bilateral`` are implemented here.
    """

    name: str
    label: str
    params: dict = field(default_factory=dict)
    graph: str | None = None


def degradations(width: int, height: int) -> list[Degradation]:
    """The degradations of ``--robustness`` for frames of ``width x height``."""
    items = [Degradation("h264", f"H.264 CRF {crf}", {"crf": crf, "preset": H264_PRESET,
                                                      "codec": "libx264"})
             for crf in (18, 23, 28, 35)]
    items += [Degradation("rescale", f"scale x{factor} and back",
                          {"factor": factor, "interpolation": "bicubic"},
                          f"scale=factor={factor},scale=w={width}:h={height}")
              for factor in (0.5, 0.75)]
    items += [Degradation("jpeg", f"JPEG q{quality}", {"quality": quality},
                          f"jpeg=quality={quality}") for quality in (90, 75, 50)]
    items += [Degradation("gaussian_blur", f"Gaussian blur sigma {sigma}", {"sigma": sigma},
                          f"gaussian_blur=sigma={sigma}") for sigma in (0.5, 1.0)]
    items.append(Degradation("median", "median 3x3", {"size": 3}, "median=size=3"))
    items.append(Degradation("bilateral", "bilateral denoiser",
                             {"radius": 3, "sigma_space": 2.0, "sigma_color": 0.1}))
    return items


def bilateral_denoise(images: torch.Tensor, radius: int = 3, sigma_space: float = 2.0,
                      sigma_color: float = 0.1) -> torch.Tensor:
    """Edge-preserving bilateral filter, the colour distance taken jointly over RGB.

    ``out(p) = sum_q w(p, q) in(q) / sum_q w(p, q)`` over the ``(2 radius + 1)^2`` window,
    ``w = exp(-|p - q|^2 / (2 sigma_space^2) - |in(p) - in(q)|^2 / (2 sigma_color^2))``
    with colours in [0, 1] (``sigma_color`` 0.1 is about 25 levels: it flattens noise of a
    few levels and keeps edges). Borders mirrored.

    Args:
        images: uint8 RGB ``(B, 3, H, W)``.

    Returns:
        uint8 RGB of the same shape, on the same device.
    """
    from ..filters.gaussian_blur import reflect_pad2d

    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    height, width = images.shape[-2:]
    values = images.float().div_(255.0)
    padded = reflect_pad2d(values, radius)
    total = torch.zeros_like(values)
    weight_sum = torch.zeros_like(values[:, :1])
    colour_scale = -1.0 / (2 * sigma_color**2)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            spatial = math.exp(-(dx * dx + dy * dy) / (2 * sigma_space**2))
            shifted = padded[..., radius + dy: radius + dy + height, radius + dx: radius + dx + width]
            distance = (shifted - values).square_().sum(dim=1, keepdim=True)
            weight = distance.mul_(colour_scale).exp_().mul_(spatial)
            total.addcmul_(shifted, weight)
            weight_sum.add_(weight)
    return total.div_(weight_sum).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)


def h264_roundtrip(images: torch.Tensor, crf: float, info: VideoInfo,
                   preset: str = H264_PRESET) -> torch.Tensor:
    """Encode frames as one H.264 sequence with libx264 at ``crf`` and decode them back,
    in memory (PyAV), as a re-encoding platform would.

    The frames are converted to YUV 4:2:0 (4:4:4 for odd sizes) with the stream's colour
    matrix and range, encoded at the stream's frame rate (25 when unknown) starting with a
    keyframe, decoded by FFmpeg's H.264 decoder and converted back to RGB.

    Args:
        images: uint8 RGB ``(B, 3, H, W)`` (any device; coded on the CPU).

    Returns:
        uint8 RGB of the same shape on the CPU.
    """
    import av

    from ..media.sources import SWSCALE_COLORSPACE, frame_to_array

    if images.dim() != 4 or images.dtype != torch.uint8 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    count, _, height, width = images.shape
    if count == 0:
        return images.cpu().clone()
    pix_fmt = "yuv444p" if (width % 2 or height % 2) else "yuv420p"
    rate = Fraction(info.frame_rate) if info.frame_rate else Fraction(25)
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = pix_fmt
    encoder.time_base = 1 / rate
    encoder.framerate = rate
    encoder.options = {"crf": f"{crf:g}", "preset": preset}
    decoder = av.CodecContext.create("h264", "r")
    decoded: list[np.ndarray] = []
    full = info.color_range == "full"

    def decode(packets) -> None:
        for packet in packets:
            for frame in decoder.decode(packet):
                decoded.append(frame_to_array(frame, "rgb24", info))

    pixels = images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    for position, image in enumerate(pixels):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
            format=pix_fmt, dst_colorspace=SWSCALE_COLORSPACE[info.colorspace],
            src_color_range="JPEG", dst_color_range="JPEG" if full else "MPEG")
        frame.pts = position
        decode(encoder.encode(frame))
    decode(encoder.encode(None))
    for frame in decoder.decode(None):
        decoded.append(frame_to_array(frame, "rgb24", info))
    if len(decoded) != count:
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} frames for {count}")
    return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).contiguous()


class Degrader:
    """Applies the degradations to uint8 RGB batches, graphs negotiated once."""

    def __init__(self, info: VideoInfo, device: torch.device):
        self.info = info
        self.device = device
        self.graphs: dict[str, object] = {}

    def __call__(self, degradation: Degradation, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` uint8 -> degraded uint8 of the same size, on ``self.device``."""
        if degradation.name == "h264":
            return h264_roundtrip(images, degradation.params["crf"], self.info,
                                  degradation.params["preset"]).to(self.device)
        images = images.to(self.device)
        if degradation.name == "bilateral":
            params = degradation.params
            return bilateral_denoise(images, params["radius"], params["sigma_space"],
                                     params["sigma_color"])
        if degradation.graph is None:
            raise ValueError(f"no way to apply degradation {degradation.name!r}")
        from ..media import colour
        from ..pipeline.engine import Graph
        from ..pipeline.filter import build_filters

        graph = self.graphs.get(degradation.graph)
        if graph is None:
            graph = Graph(build_filters(degradation.graph))
            graph.negotiate(self.info, self.device, "rgb24")
            self.graphs[degradation.graph] = graph
        count = images.shape[0]
        frames = Frames(images, "rgb24", list(range(count)), list(range(count)),
                        self.info.time_base)
        result = graph.process(frames, self.info)
        result = colour.convert(result, "rgb24", graph.output_info.colorspace,
                                graph.output_info.color_range)
        if tuple(result.data.shape) != tuple(images.shape):
            raise RuntimeError(f"degradation {degradation.label} changed the frame shape "
                               f"{tuple(images.shape)} to {tuple(result.data.shape)}")
        return result.data

    def close(self) -> None:
        for graph in self.graphs.values():
            graph.close()


# ---------------------------------------------------------------------------------------
# Environment (kept as names of this module: benchmarks use them from here)

from ..environment import (library_versions, machine_description,  # noqa: E402,F401
                          machine_tag)


# ---------------------------------------------------------------------------------------
# Inputs


def count_video_packets(path: str) -> int | None:
    """Frames of the first video stream counted from its packets, without decoding (packets
    an edit list hides are left out); ``None`` when the file cannot be demuxed."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            count = 0
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    count += 1
            return count
    except (av.error.FFmpegError, OSError, IndexError):
        return None


def _describe_input(path: str, source, packets: int | None) -> dict:
    info = source.info
    stream = getattr(source, "stream", None)
    return {
        "path": path,
        "absolute_path": str(Path(path).resolve()),
        "width": info.width,
        "height": info.height,
        "frame_rate": str(info.frame_rate) if info.frame_rate else None,
        "time_base": str(info.time_base),
        "codec": stream.codec_context.name if stream is not None else None,
        "pix_fmt": info.pix_fmt,
        "fps": float(info.frame_rate) if info.frame_rate else None,
        "frames": packets if packets is not None else info.frame_count,
        "frames_declared": info.frame_count,
        "frames_counted": packets,
        "frames_decoded": None,
        "damage": None,
    }


def _check_path(path: str, role: str) -> None:
    if path == "-":
        raise UsageError(f"eval reads two files; {role} cannot be stdin (-)")


# ---------------------------------------------------------------------------------------
# Accumulating per-frame values


class _Series:
    """Per-frame values of several metrics, appended chunk by chunk."""

    def __init__(self):
        self.values: dict[str, list[torch.Tensor]] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for name, tensor in values.items():
            self.values.setdefault(name, []).append(tensor.detach().float().cpu())

    def get(self, name: str) -> torch.Tensor:
        parts = self.values.get(name)
        return torch.cat(parts) if parts else torch.zeros(0)

    def summaries(self, names) -> dict:
        return {name: metrics.summarize_metric(name, self.get(name)) for name in names}

    def lists(self, names) -> dict:
        return {name: _json_list(self.get(name)) for name in names}


def _json_list(values: torch.Tensor) -> list:
    return [None if math.isnan(value) else value for value in values.tolist()]


# ---------------------------------------------------------------------------------------
# The evaluation


def resolve_parser(parser: str) -> str:
    """``auto`` -> ``bisenet`` when the checkpoint was added, else ``selfie+mesh``."""
    if parser != "auto":
        return parser
    from ..models.bisenet import cached_path

    return "bisenet" if cached_path().is_file() else "selfie+mesh"


def parser_note(parser: str) -> str:
    if parser == "bisenet":
        return ("parse flip measured with BiSeNet (79999_iter.pth), the parser the talking-face "
                "pipelines use: the head region (classes 1-13, 17, 18 merged as ER-NeRF does)")
    return ("parse flip measured with MediaPipe selfie segmentation (person > 0.5) inside the "
            "face oval of the face mesh, because the BiSeNet checkpoint is not added; add it "
            "with `vdf-stream models add bisenet 79999_iter.pth` to measure with the parser "
            "the talking-face pipelines use")


@dataclass
class _Pair:
    """One selected frame of each video (``(3, H, W)`` uint8) and the frames just before."""

    index: int
    original: torch.Tensor
    protected: torch.Tensor
    previous_original: torch.Tensor | None
    previous_protected: torch.Tensor | None


class _PairedFrames:
    """Decodes two videos in lockstep, compares their timestamps and counts their frames.

    Iterating yields ``(index, original (3, H, W), protected (3, H, W))`` uint8 tensors.
    When one video ends first, the rest of the other is decoded to count it, then
    :class:`InputError` is raised naming both counts (or, when the mismatch is allowed,
    iteration stops with :attr:`length_note` set).
    """

    def __init__(self, source_original, source_protected, names: tuple[str, str],
                 allow_length_mismatch: bool):
        self.sources = (source_original, source_protected)
        self.names = names
        self.allow_length_mismatch = allow_length_mismatch
        info_o, info_p = source_original.info, source_protected.info
        self.time_bases = (info_o.time_base, info_p.time_base)
        rate = info_o.frame_rate or info_p.frame_rate
        self.tolerance = 0.5 / float(rate) if rate else 0.5e-3  # half a frame
        self.timestamps = {"compared": 0, "mismatched": 0, "max_difference_seconds": 0.0,
                           "first_mismatch": None}
        self.index = 0  # frames of each decoded so far
        self.complete = False  # both ended together
        self.counts: tuple[int, int] | None = None  # decoded counts, once known
        self.length_note: str | None = None
        self.decode_seconds = 0.0

    def __iter__(self):
        frames_o = self.sources[0].frames("rgb24")
        frames_p = self.sources[1].frames("rgb24")
        first_pts = None
        while True:
            clock = time.perf_counter()
            item_o = next(frames_o, None)
            item_p = next(frames_p, None)
            self.decode_seconds += time.perf_counter() - clock
            if item_o is None and item_p is None:
                self.complete = True
                self.counts = (self.index, self.index)
                return
            if item_o is None or item_p is None:
                self._lengths_differ(frames_p if item_o is None else frames_o,
                                     original_ended=item_o is None)
                return
            if first_pts is None:
                first_pts = (item_o.pts, item_p.pts)
            self._compare_times(item_o.pts - first_pts[0], item_p.pts - first_pts[1])
            index = self.index
            self.index += 1  # counted before the caller may stop iterating
            yield (index, torch.from_numpy(item_o.pixels).permute(2, 0, 1),
                   torch.from_numpy(item_p.pixels).permute(2, 0, 1))

    def _compare_times(self, pts_original: int, pts_protected: int) -> None:
        time_o = pts_original * self.time_bases[0]
        time_p = pts_protected * self.time_bases[1]
        difference = abs(float(time_o - time_p))
        stamps = self.timestamps
        stamps["compared"] += 1
        stamps["max_difference_seconds"] = max(stamps["max_difference_seconds"], difference)
        if difference > self.tolerance:
            stamps["mismatched"] += 1
            if stamps["first_mismatch"] is None:
                stamps["first_mismatch"] = {"index": self.index,
                                            "original_seconds": float(time_o),
                                            "protected_seconds": float(time_p)}

    def _lengths_differ(self, remaining, original_ended: bool) -> None:
        extra = 1 + sum(1 for _ in remaining)  # the frame already taken, and the rest
        self.counts = ((self.index, self.index + extra) if original_ended
                       else (self.index + extra, self.index))
        original, protected = self.names
        if not self.allow_length_mismatch:
            damage = [f"{name}: {source.damage}" for name, source in zip(self.names, self.sources)
                      if source.damage]
            raise InputError(
                f"the videos have different lengths: {original} has {self.counts[0]} frames, "
                f"{protected} has {self.counts[1]}"
                + (f" ({'; '.join(damage)})" if damage else "")
                + "; use --allow-length-mismatch to evaluate the common frames")
        self.length_note = (f"the videos have different lengths ({self.counts[0]} and "
                            f"{self.counts[1]} frames): the first {self.index} of each were "
                            "evaluated")

    def time_note(self) -> str | None:
        stamps = self.timestamps
        if not stamps["mismatched"]:
            return None
        first = stamps["first_mismatch"]
        return (f"timestamps differ in {stamps['mismatched']} of {stamps['compared']} frame pairs "
                f"(first at frame {first['index']}: {first['original_seconds']:.3f} s against "
                f"{first['protected_seconds']:.3f} s); frames were paired by index")


class _Measurements:
    """Reads the faces of chunks of frame pairs and keeps every per-frame metric."""

    def __init__(self, reader: FaceReader, chosen: list[Degradation], degrader: Degrader | None,
                 device: torch.device, progress: Callable[[float], None] | None,
                 transfer: TransferReader | None = None,
                 transfer_floor: Degradation | None = None):
        self.reader = reader
        self.chosen = chosen
        self.degrader = degrader
        self.device = device
        self.progress = progress
        self.main = _Series()
        self.robust = [{"efficacy": _Series(), "floor": _Series(), "versus_clean": _Series()}
                       for _ in chosen]
        self.transfer = transfer
        self.transfer_floor = transfer_floor
        self.transferred = {"efficacy": _Series(), "floor": _Series()}
        self.evaluated: list[int] = []
        self.found_original: list[bool] = []
        self.seconds = {"fidelity": 0.0, "reading": 0.0, "robustness": 0.0, "transfer": 0.0}

    def _advance(self, frames: int) -> None:
        if self.progress is not None:
            self.progress(frames / (1 + len(self.chosen)))

    def process(self, chunk: list[_Pair]) -> None:
        if not chunk:
            return
        device = self.device
        clock = time.perf_counter()
        original = torch.stack([pair.original for pair in chunk])
        protected = torch.stack([pair.protected for pair in chunk])
        has_previous = torch.tensor([pair.previous_original is not None for pair in chunk])
        previous_original = previous_protected = None
        if bool(has_previous.any()):  # a stand-in where there is none (its value is unused)
            previous_original = torch.stack([
                pair.original if pair.previous_original is None else pair.previous_original
                for pair in chunk]).to(device)
            previous_protected = torch.stack([
                pair.protected if pair.previous_protected is None else pair.previous_protected
                for pair in chunk]).to(device)
        original_device, protected_device = original.to(device), protected.to(device)
        self.main.add(fidelity(original_device, protected_device, previous_original,
                               previous_protected, has_previous))
        self.seconds["fidelity"] += time.perf_counter() - clock

        clock = time.perf_counter()
        clean = self.reader.read(original_device)
        self.main.add(compare(self.reader.read(protected_device, reference=clean), clean))
        self.found_original.extend(clean.found.cpu().tolist())
        self.evaluated.extend(pair.index for pair in chunk)
        self.seconds["reading"] += time.perf_counter() - clock
        if self.transfer is not None:
            clock = time.perf_counter()
            clean_transfer = self.transfer.read(original_device)
            self.transferred["efficacy"].add(compare_transfer(
                self.transfer.read(protected_device, reference=clean_transfer), clean_transfer))
            encoded = self.degrader(self.transfer_floor, original)
            self.transferred["floor"].add(compare_transfer(
                self.transfer.read(encoded, reference=clean_transfer), clean_transfer))
            self.seconds["transfer"] += time.perf_counter() - clock
        self._advance(len(chunk))

        for degradation, series in zip(self.chosen, self.robust):
            clock = time.perf_counter()
            degraded_original = self.reader.read(self.degrader(degradation, original),
                                                 reference=clean)
            degraded_protected = self.reader.read(self.degrader(degradation, protected),
                                                  reference=clean)
            series["efficacy"].add(compare(degraded_protected, degraded_original))
            series["floor"].add(compare(degraded_original, clean))
            series["versus_clean"].add(compare(degraded_protected, clean))
            self.seconds["robustness"] += time.perf_counter() - clock
            self._advance(len(chunk))

    def face_note(self, original: str) -> str | None:
        faces, count = sum(self.found_original), len(self.evaluated)
        if count and faces == 0:
            return (f"no face was found in any of the {count} evaluated frames of {original}: "
                    "efficacy is undefined (None)")
        if faces < count:
            return (f"{count - faces} of {count} evaluated frames of {original} show no face: "
                    "they are left out of the efficacy figures")
        return None


def _planned_frames(options: EvalOptions, counts: list[int | None]) -> int | None:
    known = [count for count in counts if count is not None]
    if not known:
        return None
    planned = len(range(0, min(known), options.stride))
    return min(planned, options.frames) if options.frames is not None else planned


def evaluate(original: str, protected: str, options: EvalOptions | None = None,
             progress: Callable[[float], None] | None = None, with_views: bool = False,
             set_total: Callable[[int], None] | None = None,
             visibility_progress: Callable[[float], None] | None = None
             ) -> tuple[dict, list[FrameView]]:
    """Measure fidelity and efficacy of ``protected`` against ``original``.

    Args:
        original, protected: paths of the two videos, paired frame by frame.
        options: what to measure (:class:`EvalOptions`).
        progress: called with the number of frames just evaluated (fractions of a frame
            while the robustness test runs).
        with_views: also return a few representative frames for a report.
        set_total: called once with the number of frames that will be evaluated.
        visibility_progress: called once per frame pair the visibility passes decode (the
            protected video, then the codec floor).

    Returns:
        ``(result, views)``: the JSON-serialisable result (keys in the module's
        documentation and ``vdf-stream eval --help``) and the :class:`FrameView` list
        (empty unless ``with_views``).

    Raises:
        InputError: a file is missing or unreadable, the sizes differ, or the frame counts
            differ (unless ``allow_length_mismatch``).
        UsageError: bad options.
    """
    from ..pipeline.engine import resolve_device
    from ..media.sources import open_source

    options = options or EvalOptions()
    options.validate()
    _check_path(original, "ORIGINAL")
    _check_path(protected, "PROTECTED")
    started = time.perf_counter()
    device = resolve_device(options.device)
    parser = resolve_parser(options.parser)
    notes: list[str] = []
    stages = {"setup": 0.0, "decode": 0.0, "fidelity": 0.0, "reading": 0.0, "robustness": 0.0,
              "transfer": 0.0, "views": 0.0, "visibility": 0.0}

    with open_source(original) as source_original, open_source(protected) as source_protected:
        info_o, info_p = source_original.info, source_protected.info
        if (info_o.width, info_o.height) != (info_p.width, info_p.height):
            raise InputError(
                f"the videos have different frame sizes: {original} is "
                f"{info_o.width}x{info_o.height}, {protected} is {info_p.width}x{info_p.height}; "
                "eval compares frames pixel by pixel (scale the protected video back first)")
        packets_o, packets_p = count_video_packets(original), count_video_packets(protected)
        inputs = {"original": _describe_input(original, source_original, packets_o),
                  "protected": _describe_input(protected, source_protected, packets_p)}
        if (packets_o is not None and packets_p is not None and packets_o != packets_p
                and not options.allow_length_mismatch):
            raise InputError(
                f"the videos have different lengths: {original} has {packets_o} frames, "
                f"{protected} has {packets_p}; frames are paired by index (use "
                "--allow-length-mismatch to evaluate the first "
                f"{min(packets_o, packets_p)} frames of each)")
        planned = _planned_frames(options, [packets_o, packets_p, info_o.frame_count,
                                            info_p.frame_count])
        if set_total is not None and planned is not None:
            set_total(planned)

        clock = time.perf_counter()
        reader = FaceReader(device, parser, options.batch_size)
        transfer = TransferReader(device, options.batch_size) if options.transfer else None
        stages["setup"] = time.perf_counter() - clock
        every = degradations(info_o.width, info_o.height)
        chosen = []
        if options.robustness:
            chosen = [d for d in every if options.only is None or d.name in options.only]
        transfer_floor = next(d for d in every if d.name == "h264"
                              and d.params["crf"] == TRANSFER_FLOOR_CRF)
        degrader = Degrader(info_o, device) if chosen or transfer is not None else None
        measurements = _Measurements(reader, chosen, degrader, device, progress, transfer,
                                     transfer_floor)
        pairs = _PairedFrames(source_original, source_protected, (original, protected),
                              options.allow_length_mismatch)
        chunk: list[_Pair] = []
        previous = (None, None)
        selected = 0
        try:
            for index, pixels_o, pixels_p in pairs:
                if index % options.stride == 0:
                    chunk.append(_Pair(index, pixels_o, pixels_p, *previous))
                    selected += 1
                    if len(chunk) >= options.chunk_frames:
                        measurements.process(chunk)
                        chunk = []
                    if options.frames is not None and selected >= options.frames:
                        break  # nothing more to select: the packet counts stand for the rest
                previous = (pixels_o, pixels_p)
            measurements.process(chunk)
        finally:
            if degrader is not None:
                degrader.close()
        stages["decode"] = pairs.decode_seconds
        stages.update(measurements.seconds)
        if pairs.counts is not None:
            for role, count in zip(("original", "protected"), pairs.counts):
                inputs[role]["frames_decoded"] = inputs[role]["frames"] = count
        for role, source in zip(("original", "protected"), (source_original, source_protected)):
            item = inputs[role]
            if source.damage:
                item["damage"] = source.damage
                notes.append(f"{item['path']}: {source.damage}")
            declared, decoded = item["frames_declared"], item["frames_decoded"]
            if pairs.complete and declared and declared != decoded:
                notes.append(f"{item['path']} declares {declared} frames and {decoded} were "
                             "decoded")

    if pairs.index == 0:
        raise InputError(f"no frame could be decoded from {original} and {protected}")
    notes += [note for note in (pairs.length_note, pairs.time_note(),
                                measurements.face_note(original)) if note]
    visible = None
    if options.visibility:
        from .. import visibility

        clock = time.perf_counter()
        # the video metric covers the frames the face readings cover: up to the last one
        last = (measurements.evaluated[-1] + 1 if options.frames is not None
                and measurements.evaluated else None)
        visible = visibility.measure(
            original, protected, options.visibility_options(device, last),
            fps=float(info_o.frame_rate) if info_o.frame_rate else None, total_frames=pairs.index,
            progress=visibility_progress)
        stages["visibility"] = time.perf_counter() - clock
    views: list[FrameView] = []
    if with_views and measurements.evaluated:
        clock = time.perf_counter()
        views = collect_views(original, protected, measurements.evaluated, measurements.main,
                              reader, device if options.visibility else None)
        stages["views"] = time.perf_counter() - clock
    seconds = time.perf_counter() - started
    evaluated = measurements.evaluated
    result = {
        "schema": 1,
        "config": _resolved_config(options, device, parser, chosen),
        "versions": library_versions(),
        "machine": machine_description(),
        "inputs": {**inputs, "timestamps": pairs.timestamps},
        "frames": evaluated,
        "parser": parser,
        "parser_note": parser_note(parser),
        "metrics": {name: {"unit": info.unit, "description": info.description}
                    for name, info in metrics.METRICS.items()},
        **({"visibility": visible} if visible is not None else {}),
        "fidelity": measurements.main.summaries(metrics.FIDELITY_METRICS),
        "efficacy": measurements.main.summaries(metrics.EFFICACY_METRICS),
        "per_frame": measurements.main.lists(metrics.FIDELITY_METRICS
                                             + metrics.EFFICACY_METRICS),
        "robustness": [
            {"degradation": degradation.name, "label": degradation.label,
             "params": dict(degradation.params),
             **{comparison: series[comparison].summaries(metrics.EFFICACY_METRICS)
                for comparison in ("efficacy", "floor", "versus_clean")}}
            for degradation, series in zip(chosen, measurements.robust)],
        **({"transfer": {
            "description": TRANSFER_DESCRIPTIONS,
            "efficacy": summarize_transfer(measurements.transferred["efficacy"]),
            "floor": summarize_transfer(measurements.transferred["floor"]),
            "floor_label": transfer_floor.label,
            "per_frame": measurements.transferred["efficacy"].lists(TRANSFER_METRICS),
        }} if transfer is not None else {}),
        "notes": notes,
        "timing": {"seconds": seconds,
                   "seconds_per_frame": seconds / len(evaluated) if evaluated else None,
                   "frames_evaluated": len(evaluated),
                   "frames_decoded": pairs.index,
                   "stages": stages},
    }
    return result, views


def _resolved_config(options: EvalOptions, device: torch.device, parser: str,
                     chosen: list[Degradation]) -> dict:
    config = asdict(options)
    config.update(
        device=str(device),
        parser=parser,
        ssim=f"luma (BT.601), Gaussian window {metrics.SSIM_WINDOW}, sigma {metrics.SSIM_SIGMA}, "
             "valid region",
        temporal_flicker="mean |d_t - d_(t-1)| / max(mean |original_t - original_(t-1)|, "
                         f"{metrics.FLICKER_FLOOR_LEVELS}) in levels, d = protected - original",
        landmark_nme_normaliser=f"distance of mesh points {metrics.OUTER_EYE_CORNERS} on the "
                                "original",
        thresholds={name: {"values": list(info.thresholds),
                           "direction": "below" if info.below else "above", "unit": info.unit}
                    for name, info in metrics.METRICS.items()},
        degradations=[asdict(degradation) for degradation in chosen],
        references=REFERENCES,
    )
    return config


def choose_view_indices(evaluated: list[int], nme: torch.Tensor) -> list[tuple[str, int]]:
    """``[(why, index)]``: the frames of lowest, median and highest landmark NME (the first,
    middle and last evaluated frames when no NME is defined), without repeats."""
    values = nme.numpy()
    finite = [position for position, value in enumerate(values) if not math.isnan(value)]
    if finite:
        order = sorted(finite, key=lambda position: values[position])
        picks = [("lowest NME", order[0]), ("median NME", order[(len(order) - 1) // 2]),
                 ("highest NME", order[-1])]
    else:
        count = len(evaluated)
        picks = [("first", 0), ("middle", (count - 1) // 2), ("last", count - 1)]
    seen, chosen = set(), []
    for why, position in picks:
        if position not in seen:
            seen.add(position)
            chosen.append((why, position))
    return chosen


def collect_views(original: str, protected: str, evaluated: list[int], main: _Series,
                  reader: FaceReader, visibility_device=None) -> list[FrameView]:
    """Decode the representative frames again and read them for a report; with a
    ``visibility_device``, each also gets its image JOD and ColorVideoVDP's heat map."""
    from ..media.sources import open_source

    picks = choose_view_indices(evaluated, main.get("landmark_nme"))
    wanted = {evaluated[position]: position for _, position in picks}
    pixels: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    last = max(wanted)
    with open_source(original) as source_o, open_source(protected) as source_p:
        for item_o, item_p in zip(source_o.frames("rgb24"), source_p.frames("rgb24")):
            if item_o.index in wanted:
                pixels[item_o.index] = (item_o.pixels.copy(), item_p.pixels.copy())
            if item_o.index >= last:
                break
    names = list(metrics.FIDELITY_METRICS) + list(metrics.EFFICACY_METRICS)
    views = []
    for why, position in picks:
        index = evaluated[position]
        if index not in pixels:
            continue
        image_o, image_p = pixels[index]
        batch_o = torch.from_numpy(image_o).permute(2, 0, 1).unsqueeze(0)
        batch_p = torch.from_numpy(image_p).permute(2, 0, 1).unsqueeze(0)
        clean = reader.read(batch_o)
        read_p = reader.read(batch_p, reference=clean)
        values = {name: float(main.get(name)[position]) for name in names}
        view = FrameView(index, image_o, image_p, clean.view(0), read_p.view(0), values, why)
        if visibility_device is not None:
            from ..visibility import frame_map

            view.jod, view.visibility_map = frame_map(image_o, image_p, visibility_device)
        views.append(view)
    return views


def default_json_path(protected: str) -> str:
    """Where an evaluation's JSON goes unless told: beside PROTECTED, ``NAME.eval.json``."""
    root, _ = os.path.splitext(protected)
    return f"{root}.eval.json"


def write_json(result: dict, path: str | os.PathLike) -> Path:
    """Write ``result`` as indented JSON (``NaN`` never appears; an infinite PSNR is written
    as ``Infinity``, which Python's json reads back)."""
    import json

    from ..errors import OutputError

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=2) + "\n")
    except OSError as error:
        raise OutputError(f"cannot write {target}: {error.strerror or error}") from None
    return target


# ---------------------------------------------------------------------------------------
# Text summary


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 10:
        return f"{value:.2f}"
    return f"{value:.{digits}f}"


def _share_text(summary: dict) -> str:
    parts = []
    for key, value in summary.items():
        if key.startswith("share_"):
            _, direction, threshold = key.split("_", 2)
            sign = "<" if direction == "below" else ">"
            parts.append(f"{sign}{threshold}: " + ("-" if value is None else f"{100 * value:.0f}%"))
    return "  ".join(parts)


def visibility_lines(visible: dict) -> list[str]:
    """The visibility section of :func:`format_table`."""
    rule = visible["rule"]
    lines = [f"visibility: {visible['metric']}, JOD (10 = no difference), display "
             f"{visible['display']} [codec floor: {visible['floor']['label']}]",
             f"{'':30}{'video':>10}{'floor':>10}{'frame min':>11}{'frame median':>14}"]
    for name, label in (("native", "native size"), ("full_screen", "full screen (1080 lines)")):
        part = visible.get(name)
        if not part:
            continue
        per_frame = part["per_frame"]
        lines.append(f"  {label:<28}{_number(part['jod']):>10}{_number(part['floor_jod']):>10}"
                     f"{_number(min(per_frame)):>11}"
                     f"{_number(float(np.median(per_frame))):>14}   "
                     f"{len(part['frames'])} frames")
    verdict = visible["verdict"]
    lines.append(f"  verdict: {verdict['text']} (looks the same: native >= "
                 f"{rule['native_jod']:g}, full screen >= {rule['full_screen_jod']:g}, each "
                 f"within {rule['floor_margin']:g} of its floor)")
    return lines


def format_table(result: dict) -> str:
    """A plain-text summary of an evaluation, for a terminal."""
    inputs = result["inputs"]
    original, protected = inputs["original"], inputs["protected"]
    frames = result["frames"]
    timing = result["timing"]
    lines = []
    rate = original["fps"]
    count = original["frames"]
    lines.append(f"original   {original['path']} ({original['width']}x{original['height']}, "
                 f"{count} frames" + (f", {rate:.3g} fps)" if rate else ")"))
    lines.append(f"protected  {protected['path']}")
    if frames:
        shown = ", ".join(map(str, frames[:4])) + (f", ... {frames[-1]}" if len(frames) > 4 else "")
        lines.append(f"evaluated  {len(frames)} frames ({shown}) on {result['config']['device']} "
                     f"in {timing['seconds']:.1f} s ({timing['seconds_per_frame']:.2f} s per frame)")
    lines.append(f"parser     {result['parser']}: {result['parser_note']}")
    if result.get("visibility"):
        lines.append("")
        lines.extend(visibility_lines(result["visibility"]))
    header = f"{'':30}{'median':>10}{'mean':>10}{'min':>10}{'max':>10}   frames beyond"
    for title, group in (("fidelity", result["fidelity"]),
                         ("efficacy (protected against original)", result["efficacy"])):
        lines.append("")
        lines.append(title)
        lines.append(header)
        for name, summary in group.items():
            unit = result["metrics"][name]["unit"]
            label = f"  {name}" + (f" ({unit})" if unit in ("dB", "levels", "degrees") else "")
            lines.append(f"{label:<30}{_number(summary['median']):>10}{_number(summary['mean']):>10}"
                         f"{_number(summary['min']):>10}{_number(summary['max']):>10}   "
                         f"{_share_text(summary)}")
    if result["robustness"]:
        lines.append("")
        lines.append("robustness: efficacy after each degradation [its floor: the degraded "
                     "original against the original]")
        columns = (("landmark_nme", "median", "NME median"), ("pose_error", "median",
                                                             "pose median"),
                   ("parse_flip", "median", "parse flip median"),
                   ("detection_loss", "mean", "detection loss"))
        lines.append(f"{'':26}" + "".join(f"{title:>22}" for _, _, title in columns))
        for entry in result["robustness"]:
            cells = []
            for name, statistic, _ in columns:
                value = entry["efficacy"][name][statistic]
                floor = entry["floor"][name][statistic]
                cells.append(f"{_number(value)} [{_number(floor)}]")
            lines.append(f"  {entry['label']:<24}" + "".join(f"{cell:>22}" for cell in cells))
    if "transfer" in result:
        transfer = result["transfer"]
        lines.append("")
        lines.append("transfer: other families' readers, own detection, protected against "
                     f"original [floor: {transfer['floor_label']} of the original alone]")
        lines.append(f"{'':30}{'median':>10}{'mean':>10}{'max':>10}{'floor median':>16}"
                     f"{'floor mean':>14}")
        for name, summary in transfer["efficacy"].items():
            floor = transfer["floor"][name]
            lines.append(f"  {name:<28}{_number(summary['median']):>10}"
                         f"{_number(summary['mean']):>10}{_number(summary['max']):>10}"
                         f"{_number(floor['median']):>16}{_number(floor['mean']):>14}")
    if result["notes"]:
        lines.append("")
        lines.append("notes")
        lines.extend(f"  - {note}" for note in result["notes"])
    return "\n".join(lines)
