"""What the VDF optimiser maximises: how wrongly the face pipeline reads the protected frame,
in expectation over the transformations a published video goes through.

:class:`Objective` holds the face pipeline (:class:`~vdf_stream.models.mesh.FacePipeline`)
and the weights. :meth:`Objective.reference` reads the clean keyframes once (regions,
mesh, pose, person logits, face mask). :meth:`Objective.loss` reads a protected frame after
a random transformation and returns a loss to *minimise* (a weighted sum of these terms,
each switchable by setting its weight to 0):

``landmarks`` (default weight 1.0)
    ``-NME``: mean 2-D distance of the 468 mesh points from the clean ones over the clean
    outer-eye-corner distance (:func:`vdf_stream.evaluation.metrics.landmark_nme`'s definition),
    capped at ``landmark_cap`` so that one frame's runaway points do not take the budget.
``pose`` (1.0)
    ``-|R - R_clean|_F^2 / 8 = -sin^2(theta / 2)``, theta the geodesic angle between the
    rotations fitted on the protected and clean meshes (smooth at theta = 0, unlike the
    angle itself).
``parsing`` (default 0, off)
    With a plain weighted sum the selfie segmenter gives way far more easily than the mesh
    and its term took the whole budget (weight 1: NME 0.006 on 4 frames). With gradient
    balancing (``ObjectiveWeights.balance``, the default) it gets its weight's share of
    each step and the mesh keeps most of its own (weight 1: NME 0.063 before encoding, 0.037
    after CRF 23, against 0.076 and 0.051 without the term), but at eps 8/255 with the
    luma-only, texture-shaped change the segmenter flips only 0.09 of the face before
    encoding and 0.02 after: it costs mesh efficacy and buys no parse flip, so it stays
    off by default.
    ``mean softplus(person logit)`` over the clean face mask (the selfie segmenter's person
    logits pushed below 0 where the face was): the face pixels go to background.
``detection`` (default 0, off: the detector keeps the face at this budget)
    the detector's best anchor score (BlazeFace), pushed down.
``fidelity`` (0.05)
    ``mean((protected - clean)^2) / eps^2``: spend the budget only where it pays.

The mesh reads the protected frame in the clean frame's face region, jittered (a tracker
or a re-detection does not land on the same pixel). Transformations (expectation over
transformations), drawn per step from a seeded generator:

* rescaling by ``s ~ U[scale_min, 1]`` (antialiased bilinear), the region and the clean
  points scaled with it;
* with probability ``h264_probability`` a differentiable H.264-like quantisation
  (:func:`h264_like`: 4:2:0 chroma subsampling, 4x4 DCT with H.264's flat step at a QP
  drawn in ``[h264_qp_min, h264_qp_max]`` (22-30, what CRF 23 spends on a 360p talking
  head), dead-zone rounding, straight-through gradient); half of the time as an inter
  frame: only the residual against the clean frame is quantised, at QP 20-26 (calibrated:
  a mid-frequency luma change of a few levels keeps about 0.4 of its energy at QP 22, as
  through a real libx264 CRF 23 encode of frames that each carry a different change);
  otherwise, with probability
  ``jpeg_probability``, a JPEG-like one (8x8 DCT of luma and chroma, JPEG's tables at a
  random quality in ``[jpeg_quality_min, jpeg_quality_max]``);
* a Gaussian blur of sigma ``U[0.3, blur_sigma_max]`` with probability ``blur_probability``.

:func:`optimise` runs Adam on the parameters of :mod:`vdf_stream.protection.perturb` for some steps,
stopping early when the per-step readings meet the targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..models import pose
from ..models.alignment import RegionOfInterest, antialias_factor, pooling_box
from ..models.ghost import feature_noise
from ..models.mesh import FACE_OVAL, OUTER_EYE_CORNERS, polygon_mask
from ..models.surrogate import mean_shift, point_error
from ..media.pixels import LUMA_BT601, gaussian_blur2d
from .perturb import PerturbParams, frame_term_outside, perturb, prepare

# JPEG's luminance and chrominance quantisation tables (ITU-T T.81 Annex K), row major.
_LUMA_TABLE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24,
               40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77,
               24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95,
               98, 112, 100, 103, 99)
_CHROMA_TABLE = (17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99,
                 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99) + (99,) * 32


@dataclass
class ObjectiveWeights:
    landmarks: float = 1.0
    pose: float = 1.0
    parsing: float = 0.0
    detection: float = 0.0
    fidelity: float = 0.05
    landmark_cap: float = 0.3
    # The mesh's points pushed along one field (vdf_stream.models.surrogate.point_error:
    # "right", "down", "out", ...) instead of away in any direction; give the surrogates the
    # same so that every reader is pushed the same way. "auto": every landmark reader
    # pushed along the direction in which, together, they already see the face move
    # (Objective.consensus). None: any direction.
    direction: str | None = None
    # Gradient balancing: the parsing, detection and surrogate terms' gradients are each
    # rescaled to ``weight x`` the norm of the mesh terms' gradient (landmarks + pose; the
    # fidelity term is added as it is) before they are added, so a model that gives way
    # easily cannot take the whole budget (see :func:`optimise`). Off: the plain weighted
    # sum.
    balance: bool = True
    # Other face models (vdf_stream.models.surrogate.Surrogate, by name) and their weights;
    # each is a balanced term.
    surrogates: dict[str, float] = field(default_factory=dict)
    # Ghost networks (vdf_stream.models.ghost): at every step, the convolutions of the
    # networks read (the face mesh and the surrogates) have their outputs multiplied by
    # fresh noise 1 + ghost * U(-1, 1), so the change must work on a family of networks
    # around each one. 0: the networks as they are.
    ghost: float = 0.0

    def of(self, term: str) -> float:
        """The weight of a term by name (a surrogate's by its name)."""
        if term in ("landmarks", "pose", "parsing", "detection", "fidelity"):
            return getattr(self, term)
        return self.surrogates.get(term, 0.0)


@dataclass
class Transformations:
    """The expectation over transformations (see the module docstring)."""

    scale_min: float = 0.5
    jpeg_probability: float = 0.5
    jpeg_quality_min: int = 60
    jpeg_quality_max: int = 90
    blur_probability: float = 0.3
    blur_sigma_max: float = 1.2
    region_jitter: float = 0.03
    h264_probability: float = 0.6
    h264_qp_min: float = 22.0
    h264_qp_max: float = 30.0
    h264_inter_probability: float = 0.5
    h264_inter_qp_min: float = 20.0
    h264_inter_qp_max: float = 26.0

    def none(self) -> Transformations:
        return Transformations(1.0, 0.0, 90, 90, 0.0, 0.3, 0.0, 0.0)

    def identity(self) -> bool:
        """Whether every transformation is off (the frames are read as they are)."""
        return (self.scale_min >= 1.0 and self.jpeg_probability <= 0 and self.blur_probability <= 0
                and self.region_jitter <= 0 and self.h264_probability <= 0)


@dataclass
class Targets:
    """Early stop: all reached (in the step's transformed reading) -> stop."""

    landmark_nme: float = 0.10
    pose_degrees: float = 10.0
    parse_flip: float = 0.5
    surrogate_nme: float = 0.05  # each other model's own landmark error (issue target)


@dataclass
class Reference:
    """The clean reading of ``B`` keyframes."""

    regions: RegionOfInterest
    found: torch.Tensor          # (B,) bool
    landmarks: torch.Tensor      # (B, 468, 3)
    rotation: torch.Tensor       # (B, 3, 3)
    face_mask: torch.Tensor | None  # (B, 1, H, W) float 0/1: person & face oval; None
                                    # when parsing is not attacked (only that term reads it)
    eye_distance: torch.Tensor   # (B,)
    surrogates: dict = field(default_factory=dict)  # name -> that model's clean reading

    def shifted(self, dx: float, dy: float, mask: torch.Tensor | None) -> Reference:
        """The same reading in a window of the frames whose top-left pixel is ``(dx, dy)``
        (regions and landmarks moved by ``-(dx, dy)``), with the window's ``mask``."""
        offset = self.regions.center.new_tensor([dx, dy])
        regions = RegionOfInterest(self.regions.center - offset, self.regions.size,
                                   self.regions.angle)
        landmarks = torch.cat([self.landmarks[..., :2] - offset.to(self.landmarks),
                               self.landmarks[..., 2:]], dim=-1)
        return Reference(regions, self.found, landmarks, self.rotation, mask,
                         self.eye_distance, dict(self.surrogates))

    def select(self, index: int) -> Reference:
        if self.surrogates:
            raise NotImplementedError("select() of a reference with surrogate readings")
        return Reference(self.regions[index], self.found[index:index + 1],
                         self.landmarks[index:index + 1], self.rotation[index:index + 1],
                         None if self.face_mask is None else self.face_mask[index:index + 1],
                         self.eye_distance[index:index + 1])


@dataclass
class StepReading:
    loss: float
    landmark_nme: float
    pose_degrees: float
    parse_flip: float
    face_score: float
    terms: dict = field(default_factory=dict)
    surrogates: dict = field(default_factory=dict)  # "<model>_<reading>" -> median


def _dct_matrix(device, dtype) -> torch.Tensor:
    index = torch.arange(8, device=device, dtype=dtype)
    matrix = torch.cos((2 * index[None, :] + 1) * index[:, None] * math.pi / 16)
    matrix[0] *= 1 / math.sqrt(2)
    return matrix * 0.5


def _quality_tables(quality: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    quality = min(max(int(quality), 1), 100)
    factor = 5000 / quality if quality < 50 else 200 - 2 * quality
    tables = []
    for table in (_LUMA_TABLE, _CHROMA_TABLE):
        values = torch.tensor(table, device=device, dtype=dtype).view(8, 8)
        tables.append(((values * factor + 50) / 100).floor().clamp(1, 255))
    return tables[0], tables[1]


def jpeg_like(images: torch.Tensor, quality: int) -> torch.Tensor:
    """A differentiable JPEG-like quantisation of ``(B, 3, H, W)`` in [0, 1]: BT.601
    YCbCr, 8x8 DCT per plane (no chroma subsampling), JPEG's tables at ``quality``,
    rounding with a straight-through gradient, inverse DCT, back to RGB."""
    batch, _, height, width = images.shape
    pad_h, pad_w = (-height) % 8, (-width) % 8
    padded = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") * 255
    r, g, b = padded.unbind(1)
    y = LUMA_BT601[0] * r + LUMA_BT601[1] * g + LUMA_BT601[2] * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    planes = torch.stack([y - 128, cb, cr], dim=1)
    full_h, full_w = planes.shape[-2:]
    blocks = planes.unfold(2, 8, 8).unfold(3, 8, 8)  # (B, 3, h, w, 8, 8)
    dct = _dct_matrix(images.device, images.dtype)
    coefficients = dct @ blocks @ dct.T
    luma_table, chroma_table = _quality_tables(quality, images.device, images.dtype)
    table = torch.stack([luma_table, chroma_table, chroma_table]).view(1, 3, 1, 1, 8, 8)
    scaled = coefficients / table
    rounded = scaled + (torch.round(scaled) - scaled).detach()
    blocks = dct.T @ (rounded * table) @ dct
    planes = blocks.permute(0, 1, 2, 4, 3, 5).reshape(batch, 3, full_h, full_w)
    y, cb, cr = planes[:, 0] + 128, planes[:, 1], planes[:, 2]
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1)
    return (rgb / 255).clamp(0, 1)[..., :height, :width]


def h264_step(qp: float) -> float:
    """H.264's quantiser step at ``qp`` (8-bit units): 0.625 * 2^(qp / 6), doubling every 6."""
    return 0.625 * 2 ** (qp / 6)


def _dct4_matrix(device, dtype) -> torch.Tensor:
    index = torch.arange(4, device=device, dtype=dtype)
    matrix = torch.cos((2 * index[None, :] + 1) * index[:, None] * math.pi / 8)
    matrix[0] *= 1 / math.sqrt(2)
    return matrix * math.sqrt(2 / 4)


def h264_like(images: torch.Tensor, qp: float, deadzone: float = 1 / 6,
              prediction: torch.Tensor | None = None) -> torch.Tensor:
    """A differentiable stand-in for what libx264 does to a frame at ``qp`` (CRF 23 codes a
    360p talking head at QP about 22-30): BT.601 YCbCr, chroma subsampled 4:2:0 (2x2 mean,
    bilinear back up, as a 4:2:0 encode and an RGB decode do), 4x4 orthonormal DCT of every
    plane (H.264's block size) with a flat step ``h264_step(qp)`` on luma and
    ``h264_step(qp - 1)`` on chroma (H.264's chroma QP table stays at or below luma's), and a
    dead-zone rounding ``sign(c) floor(|c| / step + deadzone)`` (x264's inter rounding offset
    1/6: small coefficients go to zero) with a straight-through gradient; back to RGB.

    With ``prediction`` (an inter frame), only the residual ``images - prediction`` is
    quantised and added back to the prediction, as a P or B frame codes it: a change that
    the prediction (e.g. the clean frame, the encoder's motion-compensated reference)
    lacks survives only where its 4x4 coefficients outgrow the dead zone.

    Args:
        images: ``(B, 3, H, W)`` in [0, 1].
        prediction: ``(B, 3, H, W)`` in [0, 1] or ``None`` (an intra frame).
    """
    if prediction is not None:
        middle = 128 / 255  # the residual is coded around mid grey: 0 stays exactly 0
        residual = h264_like(images - prediction + middle, qp, deadzone) - middle
        return (prediction + residual).clamp(0, 1)
    batch, _, height, width = images.shape
    pad_h, pad_w = (-height) % 8, (-width) % 8
    padded = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") * 255
    r, g, b = padded.unbind(1)
    y = LUMA_BT601[0] * r + LUMA_BT601[1] * g + LUMA_BT601[2] * b
    chroma = torch.stack([-0.168736 * r - 0.331264 * g + 0.5 * b,
                          0.5 * r - 0.418688 * g - 0.081312 * b], dim=1)
    chroma = F.avg_pool2d(chroma, 2)
    dct = _dct4_matrix(images.device, images.dtype)

    def quantise(planes: torch.Tensor, step: float) -> torch.Tensor:
        count, channels, full_h, full_w = planes.shape
        blocks = planes.unfold(2, 4, 4).unfold(3, 4, 4)
        scaled = dct @ blocks @ dct.T / step
        rounded = torch.sign(scaled) * torch.floor(scaled.abs() + deadzone)
        rounded = scaled + (rounded - scaled).detach()
        blocks = dct.T @ (rounded * step) @ dct
        return blocks.permute(0, 1, 2, 4, 3, 5).reshape(count, channels, full_h, full_w)

    y = quantise((y - 128).unsqueeze(1), h264_step(qp))[:, 0] + 128
    chroma = quantise(chroma, h264_step(qp - 1))
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    cb, cr = chroma.unbind(1)
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], dim=1)
    return (rgb / 255).clamp(0, 1)[..., :height, :width]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class Objective:
    """Losses against the face pipeline (see the module docstring).

    Args:
        pipeline: a :class:`~vdf_stream.models.mesh.FacePipeline` (with segmentation).
        weights, transformations: see :class:`ObjectiveWeights`, :class:`Transformations`.
    """

    def __init__(self, pipeline, weights: ObjectiveWeights | None = None,
                 transformations: Transformations | None = None, surrogates: dict | None = None):
        self.pipeline = pipeline
        self.weights = weights or ObjectiveWeights()
        self.transformations = transformations or Transformations()
        self.surrogates = dict(surrogates or {})
        # direction="auto": the unit (2,) vector, in the frame's axes, along which the
        # landmark readers together saw the face move at the latest step; kept from frame to
        # frame, so that the push keeps one direction along a stream. None until a step ran.
        self.consensus: torch.Tensor | None = None
        missing = set(self.weights.surrogates) - set(self.surrogates)
        if missing:
            raise ValueError(f"weights for surrogates that were not given: {sorted(missing)}")

    @torch.no_grad()
    def reference(self, frames: torch.Tensor, regions: RegionOfInterest | None = None,
                  found: torch.Tensor | None = None) -> Reference:
        """Read clean frames ``(B, 3, H, W)`` in [0, 1] (regions from the detector unless
        given)."""
        if regions is None:
            regions, found, _ = self.pipeline.regions(frames)
        if found is None:
            found = torch.ones(frames.shape[0], dtype=torch.bool, device=frames.device)
        landmarks, _ = self.pipeline.mesh(frames, regions)
        rotation = pose.fit_canonical(landmarks, canonical=self.pipeline.canonical).rotation
        mask = None
        if self.weights.parsing:
            height, width = frames.shape[-2:]
            person = self.pipeline.segment(frames)[:, 0] > 0
            oval = polygon_mask(landmarks[:, list(FACE_OVAL), :2], height, width)
            mask = (person & oval & found.view(-1, 1, 1)).unsqueeze(1).to(frames.dtype)
        corners = OUTER_EYE_CORNERS
        eye = (landmarks[:, corners[0], :2] - landmarks[:, corners[1], :2]).norm(dim=-1)
        readings = {name: model.reference(frames, regions, found)
                    for name, model in self.surrogates.items()
                    if self.weights.surrogates.get(name, 0.0)}
        return Reference(regions, found, landmarks, rotation, mask, eye.clamp_min(1.0),
                         readings)

    def transform(self, images: torch.Tensor, regions: RegionOfInterest,
                  generator: torch.Generator | None, transformations: Transformations | None = None,
                  clean: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, RegionOfInterest, float]:
        """One random transformation: ``(images, regions in them, scale)``; ``clean``, the
        unprotected frames, is the prediction of the H.264-like inter frame."""
        t = transformations or self.transformations
        clean = images.detach() if clean is None else clean
        if generator is None:
            return images, regions, 1.0
        scale = _uniform(generator, t.scale_min, 1.0)
        center, size, angle = regions.center, regions.size, regions.angle
        if t.region_jitter > 0:
            shift = (torch.rand(len(regions), 2, generator=generator) * 2 - 1) * t.region_jitter
            grow = 1 + (torch.rand(len(regions), generator=generator) * 2 - 1) * t.region_jitter
            center = center + shift.to(center) * size[:, None]
            size = size * grow.to(size)
        if scale < 0.999:
            height, width = images.shape[-2:]
            size_out = (max(16, round(height * scale)), max(16, round(width * scale)))
            images = F.interpolate(images, size=size_out, mode="bilinear", align_corners=False,
                                   antialias=True)
            clean = F.interpolate(clean, size=size_out, mode="bilinear", align_corners=False,
                                  antialias=True)
            scale = size_out[1] / width
        else:
            scale = 1.0
        regions = RegionOfInterest(center * scale, size * scale, angle)
        if float(torch.rand((), generator=generator)) < t.blur_probability:
            sigma = _uniform(generator, 0.3, t.blur_sigma_max)
            images, clean = gaussian_blur2d(images, sigma), gaussian_blur2d(clean, sigma)
        if float(torch.rand((), generator=generator)) < t.h264_probability:
            if float(torch.rand((), generator=generator)) < t.h264_inter_probability:
                # an inter frame predicted from the clean frame (the reference the encoder
                # holds when the previous frames carry another change); same scale
                prediction = clean if clean.shape[-2:] == images.shape[-2:] else F.interpolate(
                    clean, size=images.shape[-2:], mode="bilinear", align_corners=False,
                    antialias=True)
                qp = _uniform(generator, t.h264_inter_qp_min, t.h264_inter_qp_max)
                images = h264_like(images, qp, prediction=prediction)
            else:
                images = h264_like(images, _uniform(generator, t.h264_qp_min, t.h264_qp_max))
        elif float(torch.rand((), generator=generator)) < t.jpeg_probability:
            quality = round(_uniform(generator, t.jpeg_quality_min, t.jpeg_quality_max))
            images = jpeg_like(images, quality)
        return images, regions, scale

    def loss(self, protected: torch.Tensor, clean: torch.Tensor, reference: Reference,
             eps: float, generator: torch.Generator | None) -> tuple[torch.Tensor, StepReading]:
        """The loss of protected frames (differentiable) and what the step read."""
        terms, reading = self.terms(protected, clean, reference, eps, generator)
        return self.weighted(terms, protected), reading

    def weighted(self, terms: dict[str, torch.Tensor], like: torch.Tensor,
                 names=None) -> torch.Tensor:
        """``sum(weight * term)`` over ``names`` (default: every term present)."""
        total = like.new_zeros(())
        for name, value in terms.items():
            if names is None or name in names:
                total = total + self.weights.of(name) * value
        return total

    def terms(self, protected: torch.Tensor, clean: torch.Tensor, reference: Reference,
              eps: float, generator: torch.Generator | None, frame_pixels: int | None = None,
              outside: torch.Tensor | None = None
              ) -> tuple[dict[str, torch.Tensor], StepReading]:
        """Each active term of the loss (differentiable, unweighted) and what the step read.

        ``frame_pixels``: when ``protected`` and ``clean`` are a window of the frames, the
        frames' pixel count, so that the fidelity term keeps its weight per pixel;
        ``outside``: the fidelity term's sum over the rest of the frames
        (:func:`~vdf_stream.protection.perturb.frame_term_outside`). With ``weights.ghost``, the
        networks read with noise on their features (the readings too)."""
        with feature_noise(self.ghost_networks(), self.weights.ghost, generator):
            return self._terms(protected, clean, reference, eps, generator, frame_pixels,
                               outside)

    def ghost_networks(self) -> list:
        """The networks the steps read, that ``weights.ghost`` makes ghosts of."""
        if not self.weights.ghost:
            return []
        w = self.weights
        networks = [self.pipeline.landmarker] if w.landmarks or w.pose else []
        return networks + [model for name, model in self.surrogates.items()
                           if w.surrogates.get(name, 0.0)]

    def _terms(self, protected, clean, reference, eps, generator, frame_pixels, outside):
        w = self.weights
        images, regions, scale = self.transform(protected, reference.regions, generator,
                                                clean=clean)
        found = reference.found.to(protected.dtype)
        count = found.sum().clamp_min(1)
        terms: dict[str, torch.Tensor] = {}
        zero = protected.new_zeros(())
        nme = pose_error = flip = score = zero
        auto = w.direction == "auto"
        direction = self.consensus if auto else w.direction
        shifts = []  # auto: each landmark reader's mean shift over the frames with a face
        if w.landmarks or w.pose:
            landmarks, _ = self.pipeline.mesh(images, regions)
            truth = reference.landmarks[..., :2] * scale
            eye = reference.eye_distance * scale
            nme = point_error(landmarks[..., :2], truth, direction) / eye
            if auto and w.landmarks:
                shifts.append(mean_shift(landmarks[..., :2], truth, eye)[reference.found])
            terms["landmarks"] = -(nme.clamp(max=w.landmark_cap) * found).sum() / count
            fit = pose.fit_canonical(landmarks, canonical=self.pipeline.canonical)
            distance = (fit.rotation - reference.rotation).square().sum(dim=(-1, -2)) / 8
            terms["pose"] = -(distance * found).sum() / count
            pose_error = pose.geodesic_angle_degrees(reference.rotation, fit.rotation.detach())
        mask = reference.face_mask
        if w.parsing:
            logits = self.pipeline.segment(images)
            if logits.shape[-2:] != mask.shape[-2:]:
                logits = F.interpolate(logits, size=mask.shape[-2:], mode="bilinear",
                                       align_corners=False)
            area = mask.sum(dim=(1, 2, 3)).clamp_min(1)
            terms["parsing"] = ((F.softplus(logits) * mask).sum(dim=(1, 2, 3)) / area).mean()
            flip = (((logits.detach() <= 0).to(mask.dtype) * mask).sum(dim=(1, 2, 3)) / area)
        if w.detection:
            score = self.pipeline.detector.face_score(images)
            terms["detection"] = (score * found).sum() / count
        surrogate_readings = {}
        for name, model in self.surrogates.items():
            if not w.surrogates.get(name, 0.0) or name not in reference.surrogates:
                continue
            # the landmark readers (not face-api's detector) follow the consensus
            steered = auto and hasattr(model, "direction")
            if steered:
                model.direction = direction
            losses, readings = model.loss(images, regions, scale, reference.surrogates[name])
            terms[name] = (losses * found).sum() / count
            if steered and "shift" in readings:
                shifts.append(readings["shift"][reference.found])
            surrogate_readings.update({f"{name}_{key}": _median(value[reference.found])
                                       for key, value in readings.items() if value.dim() == 1})
        means = [shift.mean(dim=0) for shift in shifts if len(shift)]
        if means:
            together = torch.stack(means).sum(dim=0)
            if together.norm() > 1e-6:
                self.consensus = (together / together.norm()).detach()
        if w.fidelity:
            squares = ((protected - clean) / eps).square()
            if frame_pixels is None:
                terms["fidelity"] = squares.mean()
            else:
                total = squares.sum() + (outside if outside is not None else 0.0)
                terms["fidelity"] = total / (squares.shape[0] * squares.shape[1] * frame_pixels)
        total = self.weighted(terms, protected)
        reading = StepReading(
            float(total.detach()), _median(nme), _median(pose_error), _median(flip),
            _median(score), {name: float(value.detach()) for name, value in terms.items()},
            surrogate_readings)
        return terms, reading


def _median(values: torch.Tensor) -> float:
    values = values.detach().float().reshape(-1)
    return float(values.median()) if values.numel() else 0.0


# Terms whose gradients are balanced against the mesh terms' (ObjectiveWeights.balance),
# besides every surrogate's.
BALANCED_TERMS = ("parsing", "detection")


def balanced_terms(objective: Objective, terms: dict[str, torch.Tensor]) -> list[str]:
    return [name for name in terms if name in BALANCED_TERMS or name in objective.surrogates]


def _global_norm(gradients) -> torch.Tensor:
    return torch.sqrt(sum(g.square().sum() for g in gradients))


def balanced_gradient(objective: Objective, terms: dict[str, torch.Tensor], extras: list[str],
                      tensors: list[torch.Tensor], like: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of the mesh terms (landmarks + pose) and of the fidelity term plus, for
    each term in ``extras``, its own gradient rescaled to ``weight x`` the mesh terms'
    gradient norm (to ``weight`` when the mesh terms are off).

    Why: the terms read different networks, and their raw gradients differ by orders of
    magnitude and change as the optimisation goes (the person segmenter gives way within a
    few steps and then keeps a large gradient; the mesh moves slowly). A fixed weight either
    lets one network take the whole budget or silences it; a weight on normalised
    gradients says what share of each step goes to each network. Adam's per-coordinate
    scaling then applies to the sum. Costs one backward pass per term (the networks' own
    backward passes are not repeated: each term reaches only its own network).
    """
    mesh_names = [name for name in ("landmarks", "pose") if name in terms]
    passes = [("mesh", objective.weighted(terms, like, mesh_names))] if mesh_names else []
    if "fidelity" in terms:
        passes.append(("fidelity", objective.weighted(terms, like, ["fidelity"])))
    passes += [(name, terms[name]) for name in extras]
    passes = [(name, value) for name, value in passes if value.requires_grad]
    total = None
    reference_norm = None
    for position, (name, value) in enumerate(passes):
        last = position == len(passes) - 1
        gradients = torch.autograd.grad(value, tensors, retain_graph=not last, allow_unused=True)
        gradients = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, gradients)]
        if name == "mesh":
            reference_norm = _global_norm(gradients)
            scale = 1.0
        elif name == "fidelity":
            scale = 1.0
        else:
            # without the mesh terms every balanced term gets a gradient of norm = its weight
            base = reference_norm if reference_norm is not None and reference_norm > 0 else 1.0
            scale = objective.weights.of(name) * base / _global_norm(gradients).clamp_min(1e-12)
        scaled = [g * scale for g in gradients]
        total = scaled if total is None else [a + b for a, b in zip(total, scaled)]
    if total is None:
        total = [torch.zeros_like(t) for t in tensors]
    return total


def targets_met(objective: Objective, reading: StepReading, targets: Targets) -> bool:
    """Whether the step reached the targets of every model the objective attacks (the mesh's
    NME and pose, the segmenter's parse flip, each other model's own goal: its landmark
    error, or BiSeNet's parse flip)."""
    w = objective.weights
    if w.landmarks or w.pose:
        if reading.landmark_nme < targets.landmark_nme or reading.pose_degrees < targets.pose_degrees:
            return False
    if w.parsing and reading.parse_flip < targets.parse_flip:
        return False
    for name, model in objective.surrogates.items():
        if not w.surrogates.get(name, 0.0):
            continue
        goal = getattr(model, "goal", "nme")
        target = targets.parse_flip if goal == "flip" else targets.surrogate_nme
        if reading.surrogates.get(f"{name}_{goal}", 0.0) < target:
            return False
    return True


def optimisation_window(objective: Objective, reference: Reference,
                        frame_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)``: the part of the frames the optimiser's steps need, when only
    the face mesh is attacked and the frames are read untransformed (the default): the
    rectangle of the mesh's regions, aligned to the mesh crop's anti-alias pooling so that
    the crop is the same cut from it; ``None`` (the whole frames) otherwise. Outside it
    only the frame term changes the frames; its share of the fidelity term there is
    estimated on the frame term's coarse grid (:func:`~vdf_stream.protection.perturb.frame_term_outside`)."""
    w = objective.weights
    if (w.parsing or w.detection or any(w.surrogates.values())
            or not objective.transformations.identity() or not len(reference.regions)):
        return None
    from ..models.mesh import MESH_INPUT_SIZE

    height, width = frame_size
    factor = antialias_factor(reference.regions, MESH_INPUT_SIZE, frame_size)
    x0, y0, x1, y1 = pooling_box(reference.regions, frame_size, factor, margin=2 * factor + 2)
    if x1 - x0 < 16 or y1 - y0 < 16 or (x1 - x0) * (y1 - y0) >= 0.8 * height * width:
        return None  # nothing to gain
    return x0, y0, x1, y1


class Adam:
    """Adam (Kingma and Ba, 2015) over parameter groups ``[{"params": [...], "lr": ...}]``:
    betas 0.9 and 0.999, eps 1e-8, bias-corrected, per tensor; the same arithmetic as
    ``torch.optim.Adam``'s defaults on the CPU (tested equal). Not ``torch.optim``: its
    first use imports torch's compiler stack, about 2 s of every run's start-up on the CPU,
    for five small tensors.

    :meth:`state` and ``Adam(groups, state)`` carry the moments and step counts from one
    call of :func:`optimise` to the next (live mode).
    """

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, groups: list[dict], state: list[dict] | None = None):
        self.groups = [(list(group["params"]), float(group["lr"])) for group in groups]
        count = sum(len(tensors) for tensors, _ in self.groups)
        if state is not None and len(state) != count:
            raise ValueError(f"an Adam state of {len(state)} tensors for {count} parameters")
        self._state = Adam._copy(state) if state is not None else [{} for _ in range(count)]

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        position = 0
        for tensors, lr in self.groups:
            for tensor in tensors:
                state = self._state[position]
                position += 1
                grad = tensor.grad
                if grad is None:
                    continue
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(tensor),
                                 exp_avg_sq=torch.zeros_like(tensor))
                state["step"] += 1
                step = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = lr / (1 - beta1 ** step)
                denominator = (exp_avg_sq.sqrt() / (1 - beta2 ** step) ** 0.5).add_(self.eps)
                tensor.addcdiv_(exp_avg, denominator, value=-step_size)

    def zero_grad(self) -> None:
        for tensors, _ in self.groups:
            for tensor in tensors:
                tensor.grad = None

    def state(self) -> list[dict]:
        """A copy of the moments and step counts, one dict per parameter tensor."""
        return Adam._copy(self._state)

    @staticmethod
    def _copy(state: list[dict]) -> list[dict]:
        return [{name: value.clone() if isinstance(value, torch.Tensor) else value
                 for name, value in item.items()} for item in state]


@dataclass
class OptimiseResult:
    params: PerturbParams
    steps: int
    reading: StepReading | None
    state: list | None = None  # Adam's state, to continue where this call stopped


def optimise(frames: torch.Tensor, reference: Reference, params: PerturbParams,
             objective: Objective, eps: float, steps: int, learning_rate: float = 1.0,
             generator: torch.Generator | None = None, targets: Targets | None = None,
             perturb_options: dict | None = None, state: list | None = None,
             confirm: int = 2) -> OptimiseResult:
    """Adam on ``params`` (a detached copy is optimised; the input is kept) for up to
    ``steps`` steps on clean ``frames``; stops early when ``confirm`` consecutive steps read
    all ``targets`` (:func:`targets_met`). Each of those steps still updates the
    parameters: a larger ``confirm`` spends more steps on frames that already read the
    targets, and the effect grows with them.

    ``state``: the ``state`` of an earlier result on parameters of the same shapes, to go
    on with its Adam moments (live mode publishes every few steps without restarting).

    ``learning_rate`` scales the per-group rates: spectral log-amplitude 0.02, phase 0.05
    radians, spatial ``eps / 4`` per step.
    """
    params = params.detach().requires_grad_()
    groups = [
        {"params": [params.face_amplitude, params.frame_amplitude], "lr": 0.02 * learning_rate},
        {"params": [params.face_phase, params.frame_phase], "lr": 0.05 * learning_rate},
        {"params": [params.face_spatial], "lr": eps / 4 * learning_rate},
    ]
    # with ``state``, continue a previous call's optimisation (its moments and step counts)
    # instead of restarting Adam, whose first steps are large sign-like steps
    optimiser = Adam(groups, state)
    options = dict(perturb_options or {})
    height, width = frames.shape[-2:]
    # a PSNR floor is a cap on the whole frame's change: the steps must see whole frames
    window = (None if options.get("psnr_floor") is not None
              else optimisation_window(objective, reference, (height, width)))
    # what the perturbation takes from the clean frames alone (spectra, attention, the
    # bound's levels): the same at every step
    options["prepared"] = prepare(
        frames, reference.regions, eps, reference.found, params.face_amplitude.shape[-2],
        params.grid(), window=window,
        **{name: options[name] for name in ("region_floor", "texture_floor", "texture_reference")
           if name in options})
    frame_pixels = None
    if window is not None:
        # only the face mesh reads the frames, and only inside its regions: the steps run
        # on that window of the frames (the fidelity term keeps its weight per pixel, and
        # its hold on the frame term outside the window, estimated on its coarse grid)
        x0, y0, x1, y1 = window
        frames = frames[..., y0:y1, x0:x1]
        reference = reference.shifted(x0, y0, None)  # the mask serves parsing only, off here
        frame_pixels = height * width
    reading = None
    met = 0
    taken = 0
    tensors = params.tensors()
    for _ in range(steps):
        optimiser.zero_grad()
        protected = perturb(frames, params, reference.regions, eps, face_present=reference.found,
                            **options)
        outside = None
        if window is not None and objective.weights.fidelity:
            outside = frame_term_outside(params, options["prepared"], eps,
                                         options.get("chroma", 1.0))
        terms, reading = objective.terms(protected, frames, reference, eps, generator,
                                         frame_pixels, outside)
        extras = balanced_terms(objective, terms)
        if objective.weights.balance and extras:
            for tensor, gradient in zip(tensors, balanced_gradient(objective, terms, extras,
                                                                   tensors, protected)):
                tensor.grad = gradient
        else:
            objective.weighted(terms, protected).backward()
        optimiser.step()
        taken += 1
        if targets is not None and targets_met(objective, reading, targets):
            met += 1
            if met >= confirm:
                break
        else:
            met = 0
    return OptimiseResult(params.detach(), taken, reading, optimiser.state())
