"""The face readers the talking-face pipelines themselves run, as targets of the optimiser.

ER-NeRF, RAD-NeRF, SyncTalk and TalkingGaussian preprocess every training frame with two
public networks whose weights are the same for every attacker:

- FAN (2DFAN-4, through the ``face-alignment`` package): S3FD finds the faces, the first
  one is cropped (its box's centre moved up by 0.12 of its height, a square of
  ``(w + h) / 195 * 200`` pixels resized to 256x256) and FAN reads 68 points from its
  heatmaps. A 3DMM fit to those points gives the head poses that become the NeRF's cameras.
- BiSeNet (``79999_iter.pth``): the frame resized to 512x512 is parsed into 19 classes,
  merged into head, neck, torso and background; the masks cut the head and torso apart.

Both are attacked white-box through the :class:`~vdf_stream.models.surrogate.Surrogate`
interface, so the objective balances them with the other targets as it does the
surrogates (``targets=fan``, ``targets=bisenet``):

:class:`FanTarget` (``"fan"``)
    The S3FD box of the clean frame (the detected face nearest the mesh's region; without
    one, the square the region was enlarged from) is kept, stored against the region so it
    follows rescaling and jitter as the pipeline's re-detection would. The loss reads FAN in
    that crop and pushes its points away from the clean ones: ``-min(NME, target) /
    target``, the NME of the heatmaps' soft arg-max points (from their clean places) over
    the clean outer-eye-corner distance (points 36 and 45). The reading ``nme`` is that of the points as the package
    decodes them (arg-max and its quarter-pixel shift): what the pipeline would read.
:class:`BiSeNetTarget` (``"bisenet"``)
    Every pixel the clean frame's parse gives to the head, the neck or the torso is pushed
    off that region: the region logits (log-sum-exp of each region's classes) with a hinge
    ``softplus(own - best other + margin)`` averaged over those pixels, as a share of its
    clean value (0 clean, -1 when every pixel is confidently relabelled). The reading
    ``flip`` is parse flip's definition: the share of the clean head pixels no longer
    labelled head (arg-max class, then the merge), at the parser's 512x512.

Their weights are the user's (:mod:`vdf_stream.models.fan`, :mod:`vdf_stream.models.s3fd`,
:mod:`vdf_stream.models.bisenet`); without them, constructing a target raises the
:class:`~vdf_stream.errors.AssetError` that says how to get them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import bisenet, fan, s3fd
from .alignment import RegionOfInterest
from .surrogate import (NME_TARGET, BoxReference, Surrogate, _check_frames, _check_regions,
                        boxes_in_regions, capped_progress, match_faces, mean_shift, point_error)


@dataclass
class FanReference(BoxReference):
    """FAN's clean reading: :class:`~vdf_stream.models.surrogate.BoxReference` (``points``
    as the package decodes them) and ``soft`` ``(B, 68, 2)``, the soft arg-max points the
    loss moves away from (the two differ where a heatmap is not one clean peak)."""

    soft: torch.Tensor


class FanTarget(Surrogate):
    """FAN's 68 points in S3FD's crop, as the talking-face pipelines read them (see the
    module docstring).

    Args:
        device, dtype: where the networks run.
        nme_target: the landmark error (over the outer-eye-corner distance) counted as
            reached.
        direction: push the points along this field
            (:func:`~vdf_stream.models.surrogate.point_error`) instead of away from their
            clean places in any direction.
    """

    name = "fan"

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 nme_target: float = NME_TARGET, direction: str | torch.Tensor | None = None):
        super().__init__()
        self.landmarker = fan.FanLandmarks(fan.load_fan(device=device, dtype=dtype))
        self.detector = s3fd.S3FDDetector(s3fd.load_s3fd(device=device, dtype=dtype))
        self.nme_target = nme_target
        self.direction = direction

    @staticmethod
    def eye_distance(points: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the NME's normaliser: the distance of the outer eye corners."""
        return (points[:, fan.RIGHT_EYE_OUTER] - points[:, fan.LEFT_EYE_OUTER]).norm(dim=-1)

    @torch.no_grad()
    def reference(self, frames: torch.Tensor, regions: RegionOfInterest,
                  found: torch.Tensor) -> FanReference:
        _check_frames(frames)
        _check_regions(frames, regions)
        regions = regions.to(device=frames.device, dtype=frames.dtype)
        boxes, detected = match_faces(self.detector.detect(frames), regions)
        soft, points = self.landmarker(frames, boxes)
        return FanReference(regions, boxes, points, self.eye_distance(points).clamp_min(1.0),
                            found.to(frames.device).bool(), detected,
                            frames.new_zeros(frames.shape[0], 0), soft)

    def loss(self, images: torch.Tensor, regions: RegionOfInterest, scale: float,
             reference: FanReference) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _check_frames(images)
        _check_regions(images, regions)
        boxes = boxes_in_regions(reference.boxes.to(images), reference.regions, regions)
        soft, hard = self.landmarker(images, boxes)
        eye = reference.eye_distance.to(images) * scale
        clean = reference.soft.to(images) * scale
        moved = point_error(soft, clean, self.direction) / eye
        loss = -capped_progress(moved, self.nme_target)
        valid = reference.valid.to(images.device)
        return torch.where(valid, loss, torch.zeros_like(loss)), {
            "nme": (point_error(hard, reference.points.to(images) * scale) / eye).detach(),
            "shift": mean_shift(soft, clean, eye)}

    @torch.no_grad()
    def read(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 68 points of the first face S3FD finds, as ``get_landmarks`` gives them to
        the pipelines (they use the first face only)."""
        found, boxes = self.first_faces(frames)
        return found, self.points_in(frames, boxes)

    @torch.no_grad()
    def first_faces(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(found (B,), boxes (B, 4))``: the first face S3FD finds in each frame, the one
        the pipelines keep (``NaN`` where there is none)."""
        _check_frames(frames)
        found = torch.zeros(frames.shape[0], dtype=torch.bool, device=frames.device)
        boxes = frames.new_full((frames.shape[0], 4), float("nan"))
        for index, faces in enumerate(self.detector.detect(frames)):
            if len(faces.boxes):
                found[index] = True
                boxes[index] = faces.boxes[0].to(frames)
        return found, boxes

    @torch.no_grad()
    def points_in(self, frames: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """``(B, 68, 2)`` FAN's points as the package decodes them, read in ``boxes``
        (``NaN`` where a box is ``NaN``)."""
        usable = ~boxes.isnan().any(dim=-1)
        points = frames.new_full((frames.shape[0], fan.POINT_COUNT, 2), float("nan"))
        if bool(usable.any()):
            points[usable] = self.landmarker(frames[usable], boxes[usable])[1]
        return points


@dataclass
class ParseReference:
    """BiSeNet's clean reading: ``labels`` ``(B, 512, 512)`` merged regions,
    ``hinge`` ``(B,)`` the clean value of the loss's hinge (its normaliser), ``valid`` the
    frames attacked."""

    labels: torch.Tensor
    hinge: torch.Tensor
    valid: torch.Tensor


class BiSeNetTarget(Surrogate):
    """BiSeNet's merged head / neck / torso parse, as the talking-face pipelines read it
    (see the module docstring).

    Args:
        device, dtype: where the network runs.
        margin: how far past the best other region a pixel's own region logit must fall
            before it stops pulling (a confident relabelling, not a coin toss).
    """

    name = "bisenet"
    goal = "flip"

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 margin: float = 2.0):
        super().__init__()
        self.parser = bisenet.load_bisenet(device=device, dtype=dtype)
        self.margin = margin

    def _parse(self, frames: torch.Tensor) -> torch.Tensor:
        """Class logits at the parser's 512x512, the frame resized as the pipelines do."""
        size = bisenet.INPUT_SIZE
        resized = frames
        if frames.shape[-2:] != (size, size):
            resized = F.interpolate(frames, size=(size, size), mode="bilinear",
                                    align_corners=False, antialias=True)
        return self.parser(resized.to(self.parser.mean.dtype)).to(frames.dtype)

    def _hinge(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B,)`` mean over the clean person pixels of ``softplus(own - best other +
        margin)`` on the region logits."""
        regions = bisenet.region_logits(logits)
        own = regions.gather(1, labels[:, None])[:, 0]
        others = regions.masked_fill(F.one_hot(labels, regions.shape[1]).permute(0, 3, 1, 2)
                                     .bool(), float("-inf")).amax(dim=1)
        person = (labels != bisenet.BACKGROUND).to(logits.dtype)
        hinge = F.softplus(own - others + self.margin) * person
        return hinge.sum(dim=(1, 2)) / person.sum(dim=(1, 2)).clamp_min(1)

    @torch.no_grad()
    def reference(self, frames: torch.Tensor, regions: RegionOfInterest,
                  found: torch.Tensor) -> ParseReference:
        _check_frames(frames)
        logits = self._parse(frames)
        labels = bisenet.region_labels(logits)
        return ParseReference(labels, self._hinge(logits, labels).clamp_min(1e-6),
                              found.to(frames.device).bool())

    def loss(self, images: torch.Tensor, regions: RegionOfInterest, scale: float,
             reference: ParseReference) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _check_frames(images)
        logits = self._parse(images)
        labels = reference.labels.to(images.device)
        loss = (self._hinge(logits, labels) / reference.hinge.to(images) - 1).clamp(min=-1.0)
        valid = reference.valid.to(images.device)
        return torch.where(valid, loss, torch.zeros_like(loss)), {
            "flip": head_flip(labels, bisenet.region_labels(logits.detach()))}

    @torch.no_grad()
    def labels(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, 512, 512)`` merged regions of frames, as the pipelines label them."""
        _check_frames(frames)
        return bisenet.region_labels(self._parse(frames))


def head_flip(clean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(B,)`` parse flip: the share of ``clean``'s head pixels that ``labels`` no longer
    label head (0 where the clean parse has no head)."""
    head = clean == bisenet.HEAD
    lost = head & (labels != bisenet.HEAD)
    return lost.sum(dim=(1, 2)).float() / head.sum(dim=(1, 2)).clamp_min(1).float()
