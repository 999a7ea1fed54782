"""Transfer of the VDF perturbation to face models it was not optimised against: the
leave-one-out matrix, each model alone against every other, and the techniques said to
raise transfer, after a real libx264 round trip.

Models: ``mesh`` (MediaPipe's face mesh and the head pose fitted to it), ``mtcnn``
(MTCNN's 5 points and its face detection), ``faceapi68`` (face-api's 68-point network on
MTCNN's box) and ``faceapi68tiny`` (face-api's tiny 68-point network, its own weights, on the
same box). Configurations are sets of them joined by ``+``: by default each alone, each
set of three (the leave-one-out sets), ``mesh+mtcnn`` (both face-api networks left out:
the leave-family-out set) and all four.

For every configuration, a few frames of each clip are optimised one by one (as
``vdf=share=off`` does: each frame its own parameters, its own reference, the same steps)
with :func:`vdf_stream.protection.objective.optimise` at the filter's default look (eps 8/255, luma
only, ``texture_floor`` 0.15, ``region_floor`` 0.5, 40 steps, learning rate 3, no
transformations, balanced gradients), applied, encoded as one sequence with libx264 at
``--crf`` and decoded (:func:`vdf_stream.evaluation.degradations.h264_roundtrip`), then every model reads
the original and the published frames **on its own**, with its own detection:

* mesh: ``vdf-stream eval``'s :class:`~vdf_stream.evaluation.readers.FaceReader` and
  :func:`~vdf_stream.evaluation.readers.compare` (landmark NME, pose error in degrees);
* MTCNN and face-api: ``eval --transfer``'s :class:`~vdf_stream.evaluation.readers.TransferReader`
  and :func:`~vdf_stream.evaluation.readers.compare_transfer` (MTCNN 5-point NME, faces MTCNN loses,
  face-api 68-point NME).

Beside them: each reading's floor (the original after the same round trip, nothing added)
and sign noise of the same eps through the same path; PSNR and SSIM of the published frames
against the originals; seconds of optimisation per keyframe.

Techniques (``--techniques``, each changing one thing against ``baseline``, run on
``--technique-configurations``):

``diversity``
    input diversity: every step reads the frame rescaled by ``U[--diversity-scale-min, 1]``
    and the face region jittered by ``--diversity-jitter`` of its side (the boxes of MTCNN
    and face-api move with it); no blur, no codec stand-in. (A pad-and-crop translation is
    the identity for these readers, which cut their input from a region that moves with the
    frame: the region jitter is what moves the input under their grids.)
``eot``
    the objective's default expectation over transformations (``vdf=robust=1``: rescale,
    blur, H.264-like and JPEG-like quantisation).
``sign_momentum``
    MI-FGSM's update instead of Adam: a velocity ``mu v + g / mean|g|`` per tensor and a step
    of the same per-group rate times its sign.
``features``
    intermediate features: for each CNN surrogate optimised against, a further balanced
    term (weight ``--feature-weight``) pushing its early feature maps away from the clean
    ones (MTCNN: O-Net's first two convolution stages; face-api: its first two dense
    blocks): ``-mean_layers |f - f_clean| / |f_clean|`` on the clean box.
``spatial``
    the parameterisation: the spatial term alone (the spectral parameters of the face crop
    and of the frame stay 0) against the dual-domain default.
``plain_sum``
    ensemble averaging: the models' losses summed with their weights instead of balanced
    gradients.
``margin``
    the surrogates' landmark terms optimised towards ``--margin-target`` (0.15) instead of
    their 0.05: their loss stops pushing once the error reaches its target in the
    optimiser's own (unencoded) reading, and the encoder then takes part of it back.

``toward_right``, ``toward_left``, ``toward_down``, ``toward_up``, ``toward_out``, ``toward_in``
    every landmark term (the mesh's and each surrogate's) pushes its points along one field
    instead of away from their clean places in any direction
    (:func:`vdf_stream.models.surrogate.point_error`): the whole face read further right,
    further down, larger, ... by every reader at once. Untargeted, each network gives way in
    its own direction and a network left out is pulled several ways at once; one shared
    direction asks the change to mean the same thing to all of them. (Measured: sideways
    helps here, on 8 frames, but not through the filter on both clips; the untargeted
    attack already takes one shared direction. docs/history.md, ``toward=``.)
``toward_auto``
    the same, along the direction in which the readers together already see the face move
    (the objective's ``consensus``, updated every step and kept from frame to frame).

``ghost``
    ghost networks (:mod:`vdf_stream.models.ghost`): at every step the convolutions of every
    network optimised against (the mesh and the surrogates) have their outputs multiplied by
    fresh noise ``1 + --ghost-strength * U(-1, 1)``, all but the heads that write the
    readings, so the change must move a family of networks around each one. (Measured: no
    gain over draws of the noise, and the mesh loses a third or more of its NME; none through
    the filter either. docs/history.md, ghost networks.)

Techniques join with ``+`` (``margin+diversity``: both changes).

    python benchmarks/transfer.py --svg docs/transfer_matrix.svg   # the matrix, 2 clips x 4 frames
    python benchmarks/transfer.py --configurations --techniques margin diversity margin+eot
    python benchmarks/transfer.py --redraw benchmarks/results/transfer_<tag>.json   # print again
    python benchmarks/transfer.py --frames 1 --steps 4 --configurations mesh mtcnn --json smoke.json

Prints the matrices (rows: optimised against; columns: measured with; ``*`` marks a
white-box cell) and writes JSON (``--json``; default
``benchmarks/results/transfer_<machine tag>.json``) and, with ``--svg``, a picture of the
matrices.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = ("mesh", "mtcnn", "faceapi68", "faceapi68tiny")
CONFIGURATIONS = ("mesh", "mtcnn", "faceapi68", "faceapi68tiny",
                  "mtcnn+faceapi68+faceapi68tiny", "mesh+faceapi68+faceapi68tiny",
                  "mesh+mtcnn+faceapi68tiny", "mesh+mtcnn+faceapi68", "mesh+mtcnn",
                  "mesh+mtcnn+faceapi68+faceapi68tiny")
CLIPS = ("single_face.mp4", "WolfgangLanger_Pexels.mp4")
# (column, model that reads it, statistic over frames)
COLUMNS = (("landmark_nme", "mesh", "median"), ("pose_error", "mesh", "median"),
           ("mtcnn_nme", "mtcnn", "median"), ("mtcnn_faces_lost", "mtcnn", "mean"),
           ("faceapi68_nme", "faceapi68", "median"),
           ("faceapi68tiny_nme", "faceapi68tiny", "median"))
FIDELITY_COLUMNS = ("psnr", "ssim")
NME_TARGET = 0.05  # the transfer target for both landmark readers
LOST_TARGET = 0.5


def _fraction(text: str) -> float:
    if "/" in text:
        numerator, denominator = text.split("/", 1)
        return float(numerator) / float(denominator)
    return float(text)


def models_of(configuration: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in configuration.split("+") if name.strip())
    unknown = [name for name in names if name not in MODELS]
    if not names or unknown:
        raise SystemExit(f"configuration {configuration!r}: join some of {', '.join(MODELS)} "
                         "with +")
    return names


# ---------------------------------------------------------------------------------------
# Intermediate features as a surrogate term


def _mtcnn_features(surrogate, images: torch.Tensor, boxes: torch.Tensor) -> list[torch.Tensor]:
    """O-Net's first two convolution stages (after PReLU) on the 48x48 crop of each box, as
    :meth:`MTCNN.refine_crops` cuts it."""
    from vdf_stream.models import alignment, mtcnn
    from vdf_stream.models.alignment import RegionOfInterest

    square = mtcnn.square_boxes(boxes)
    regions = RegionOfInterest((square[:, :2] + square[:, 2:]) / 2, square[:, 2] - square[:, 0],
                               square.new_zeros(square.shape[0]))
    onet = surrogate.detector.onet
    crops = alignment.crop(images, regions, mtcnn.ONET_SIZE)
    first = onet.prelu1(onet.conv1(mtcnn.network_input(crops)))
    second = onet.prelu2(onet.conv2(onet.pool1(first)))
    return [first, second]


def _faceapi_features(surrogate, images: torch.Tensor, boxes: torch.Tensor) -> list[torch.Tensor]:
    """face-api's first two dense blocks on its 112x112 input of each box."""
    from vdf_stream.models import faceapi

    network = surrogate.landmarker.network  # either face-api network
    crops, _ = faceapi.crop_box(images, boxes)
    x = crops - network.mean
    first = network.blocks[0](x)
    return [first, network.blocks[1](first)]


@dataclass
class FeatureReference:
    base: object                  # the wrapped surrogate's BoxReference
    features: list[torch.Tensor]  # clean feature maps


def feature_term_class():
    """:class:`FeatureTerm`, built on first use (the surrogate module imports torch models)."""
    from vdf_stream.models.surrogate import Surrogate, boxes_in_regions

    class FeatureTerm(Surrogate):
        """Early feature maps of a CNN surrogate pushed away from the clean ones, on the
        surrogate's clean box (which follows the regions as its own loss's does).
        Loss ``-mean_layers |f - f_clean| / |f_clean|`` per frame; never "reached"."""

        def __init__(self, base, features):
            super().__init__()
            self.base = base
            self.features = features
            self.name = f"{base.name}_features"

        @torch.no_grad()
        def reference(self, frames, regions, found):
            base = self.base.reference(frames, regions, found)
            return FeatureReference(base, self.features(self.base, frames, base.boxes))

        def loss(self, images, regions, scale, reference):
            base = reference.base
            boxes = boxes_in_regions(base.boxes.to(images), base.regions, regions)
            distances = []
            for now, clean in zip(self.features(self.base, images, boxes), reference.features):
                difference = (now - clean).flatten(1).norm(dim=1)
                distances.append(difference / clean.flatten(1).norm(dim=1).clamp_min(1e-6))
            distance = torch.stack(distances).mean(dim=0).to(images.dtype)
            valid = base.valid.to(images.device)
            loss = torch.where(valid, -distance, torch.zeros_like(distance))
            return loss, {"distance": distance.detach()}

        def read(self, frames):
            return self.base.read(frames)

    return FeatureTerm


# ---------------------------------------------------------------------------------------
# Optimisation


@dataclass
class Technique:
    name: str
    transformations: str = "none"      # none, diversity, eot
    update: str = "adam"               # adam, sign_momentum
    parameterisation: str = "dual"     # dual, spatial
    features: bool = False
    balance: bool = True
    margin: bool = False               # surrogates optimised towards --margin-target
    direction: str | None = None       # every reader pushed along one field
    ghost: bool = False                # fresh noise on the networks' feature maps each step


# what each technique changes against the baseline
TECHNIQUE_CHANGES = {
    "baseline": {},
    "diversity": {"transformations": "diversity"},
    "eot": {"transformations": "eot"},
    "sign_momentum": {"update": "sign_momentum"},
    "features": {"features": True},
    "spatial": {"parameterisation": "spatial"},
    "plain_sum": {"balance": False},
    "margin": {"margin": True},
    "toward_right": {"direction": "right"},
    "toward_left": {"direction": "left"},
    "toward_down": {"direction": "down"},
    "toward_up": {"direction": "up"},
    "toward_out": {"direction": "out"},
    "toward_in": {"direction": "in"},
    "toward_auto": {"direction": "auto"},
    "ghost": {"ghost": True},
}


def technique(name: str) -> Technique:
    """A technique by name; ``a+b`` applies both changes."""
    changes: dict = {}
    for part in name.split("+"):
        if part not in TECHNIQUE_CHANGES:
            raise SystemExit(f"unknown technique {part!r}; known: "
                             f"{', '.join(TECHNIQUE_CHANGES)} (join with +)")
        changes.update(TECHNIQUE_CHANGES[part])
    return Technique(name, **changes)


def optimise_variant(frames, reference, params, objective, eps: float, steps: int,
                     learning_rate: float, generator, perturb_options: dict,
                     update: str, parameterisation: str, momentum: float):
    """The loop of :func:`vdf_stream.protection.objective.optimise` (same per-group rates, same
    balanced gradients) with another update (``sign_momentum``) or the spatial term alone
    (``parameterisation="spatial"``: the spectral parameters stay as given, zero)."""
    from vdf_stream.protection.objective import balanced_gradient, balanced_terms
    from vdf_stream.protection.perturb import perturb

    params = params.detach()
    rates = {"face_amplitude": 0.02, "frame_amplitude": 0.02, "face_phase": 0.05,
             "frame_phase": 0.05, "face_spatial": eps / 4}
    names = ["face_spatial"] if parameterisation == "spatial" else list(rates)
    tensors = [getattr(params, name).requires_grad_() for name in names]
    groups = [{"params": [tensor], "lr": rates[name] * learning_rate}
              for name, tensor in zip(names, tensors)]
    optimiser = torch.optim.Adam(groups) if update == "adam" else None
    velocity = [torch.zeros_like(tensor) for tensor in tensors]
    for _ in range(steps):
        protected = perturb(frames, params, reference.regions, eps, face_present=reference.found,
                            **perturb_options)
        terms, _ = objective.terms(protected, frames, reference, eps, generator)
        extras = balanced_terms(objective, terms)
        if objective.weights.balance and extras:
            gradients = balanced_gradient(objective, terms, extras, tensors, protected)
        else:
            gradients = torch.autograd.grad(objective.weighted(terms, protected), tensors,
                                            allow_unused=True)
            gradients = [torch.zeros_like(t) if g is None else g
                         for t, g in zip(tensors, gradients)]
        if optimiser is not None:
            optimiser.zero_grad(set_to_none=True)
            for tensor, gradient in zip(tensors, gradients):
                tensor.grad = gradient
            optimiser.step()
            continue
        with torch.no_grad():
            for index, (tensor, gradient, group) in enumerate(zip(tensors, gradients, groups)):
                scale = gradient.abs().mean().clamp_min(1e-20)
                velocity[index] = momentum * velocity[index] + gradient / scale
                tensor -= group["lr"] * velocity[index].sign()
    return params.detach(), steps


class Runner:
    """Optimises, publishes and reads configurations on the frames of one clip."""

    def __init__(self, args, pipeline, surrogates: dict, feature_terms: dict,
                 surrogates_towards):
        self.args = args
        self.pipeline = pipeline
        self.surrogates = surrogates
        self.feature_terms = feature_terms
        self.surrogates_towards = surrogates_towards  # (nme target, direction) -> surrogates
        self.pools: dict = {}

    def pool(self, chosen: Technique) -> dict:
        """The surrogates as ``chosen`` optimises against them."""
        if not chosen.margin and chosen.direction is None:
            return self.surrogates
        key = (self.args.margin_target if chosen.margin else NME_TARGET, chosen.direction)
        if key not in self.pools:
            # "auto": the objective points them at every step
            self.pools[key] = self.surrogates_towards(
                key[0], None if chosen.direction == "auto" else chosen.direction)
        return self.pools[key]

    def objective(self, configuration: str, chosen: Technique):
        from vdf_stream.protection.objective import Objective, ObjectiveWeights, Transformations

        models = models_of(configuration)
        mesh = "mesh" in models
        weights = {name: 1.0 for name in models if name != "mesh"}
        pool = self.pool(chosen)
        given = {name: pool[name] for name in weights}
        if chosen.features:
            for name in list(weights):
                term = self.feature_terms[name]
                weights[term.name] = self.args.feature_weight
                given[term.name] = term
        objective_weights = ObjectiveWeights(1.0 if mesh else 0.0, 1.0 if mesh else 0.0,
                                             balance=chosen.balance, surrogates=weights,
                                             direction=chosen.direction,
                                             ghost=self.args.ghost_strength if chosen.ghost
                                             else 0.0)
        if chosen.transformations == "eot":
            transformations = Transformations()
        elif chosen.transformations == "diversity":
            transformations = Transformations(
                scale_min=self.args.diversity_scale_min, jpeg_probability=0.0,
                blur_probability=0.0, region_jitter=self.args.diversity_jitter,
                h264_probability=0.0)
        else:
            transformations = Transformations().none()
        return Objective(self.pipeline, objective_weights, transformations, given)

    def warm_up(self, frame: torch.Tensor) -> None:
        """One step against every model, untimed: the first call of each network (weights
        loaded, kernels chosen) is not charged to the first configuration."""
        steps, self.args.steps = self.args.steps, 1
        try:
            self.protect(frame, [0], "+".join(MODELS), technique("baseline"))
        finally:
            self.args.steps = steps

    def protect(self, frames: torch.Tensor, indices: list[int], configuration: str,
                chosen: Technique) -> tuple[torch.Tensor, list[float], list[float], int]:
        """``(protected frames, wall seconds per frame, process CPU seconds per frame, steps
        per frame)``."""
        from vdf_stream.protection.objective import optimise
        from vdf_stream.protection.perturb import make_params, perturb

        args = self.args
        objective = self.objective(configuration, chosen)
        options = perturb_options(args)
        outputs, seconds, cpu_seconds = [], [], []
        steps = 0
        for position, index in enumerate(indices):
            frame = frames[position:position + 1]
            started, cpu_started = time.perf_counter(), time.process_time()
            reference = objective.reference(frame)
            params = make_params(1, *frame.shape[-2:], init_scale=args.eps / 2,
                                 generator=torch.Generator().manual_seed(args.seed + index))
            generator = torch.Generator().manual_seed(args.seed + index)
            with torch.enable_grad():
                if chosen.update == "adam" and chosen.parameterisation == "dual":
                    result = optimise(frame, reference, params, objective, args.eps, args.steps,
                                      args.learning_rate, generator, perturb_options=options)
                    found, steps = result.params, result.steps
                else:
                    found, steps = optimise_variant(
                        frame, reference, params, objective, args.eps, args.steps,
                        args.learning_rate, generator, options, chosen.update,
                        chosen.parameterisation, args.momentum)
            seconds.append(time.perf_counter() - started)
            cpu_seconds.append(time.process_time() - cpu_started)
            with torch.no_grad():
                outputs.append(perturb(frame, found, reference.regions, args.eps,
                                       face_present=reference.found, **options))
        return torch.cat(outputs), seconds, cpu_seconds, steps


def perturb_options(args) -> dict:
    return {"chroma": args.chroma, "texture_floor": args.texture_floor,
            "region_floor": args.region_floor, "texture_reference": args.texture_reference}


# ---------------------------------------------------------------------------------------
# Reading


class Readers:
    """Every model's independent reading of the originals of one clip, kept, and of any
    published version of them."""

    def __init__(self, original_u8: torch.Tensor, info, crf: float, face_reader,
                 transfer_reader):
        self.original = original_u8
        self.info = info
        self.crf = crf
        self.face_reader = face_reader
        self.transfer_reader = transfer_reader
        self.clean = face_reader.read(original_u8)
        self.clean_transfer = transfer_reader.read(original_u8)

    def measure(self, protected_u8: torch.Tensor, encode: bool = True) -> dict:
        """Per-frame readings of ``protected_u8`` (after the round trip when ``encode``)."""
        from vdf_stream.evaluation import degradations, evaluate, readers
        published = (degradations.h264_roundtrip(protected_u8, self.crf, self.info) if encode
                     else protected_u8)
        values = readers.compare(self.face_reader.read(published, reference=self.clean),
                                  self.clean)
        values.update(readers.compare_transfer(
            self.transfer_reader.read(published, reference=self.clean_transfer),
            self.clean_transfer))
        none = torch.zeros(self.original.shape[0], dtype=torch.bool)
        fidelity = evaluate.fidelity(self.original, published, None, None, none)
        before = evaluate.fidelity(self.original, protected_u8, None, None, none)
        per_frame = {name: _json_list(values[name]) for name, _, _ in COLUMNS}
        per_frame.update({name: _json_list(fidelity[name]) for name in FIDELITY_COLUMNS})
        per_frame["psnr_before_encoding"] = _json_list(before["psnr"])
        per_frame["max_abs_difference_before_encoding"] = _json_list(
            before["max_abs_difference"])
        return per_frame


def _json_list(values: torch.Tensor) -> list:
    return [None if not math.isfinite(v) else round(float(v), 5) for v in values.tolist()]


def summarise(per_frame: dict) -> dict:
    """Medians (means for shares of frames) over the frames of ``per_frame``."""
    out = {}
    statistics = {name: statistic for name, _, statistic in COLUMNS}
    for name, values in per_frame.items():
        finite = [value for value in values if value is not None]
        if not finite:
            out[name] = None
            continue
        if name == "max_abs_difference_before_encoding":
            out[name] = max(finite)
        elif statistics.get(name) == "mean":
            out[name] = sum(finite) / len(finite)
        else:
            out[name] = float(torch.tensor(finite).median())
    return out


def pooled(rows_by_clip: dict[str, dict]) -> dict:
    """Per-frame values of every clip joined, and their summary."""
    joined: dict[str, list] = {}
    for row in rows_by_clip.values():
        for name, values in row["per_frame"].items():
            joined.setdefault(name, []).extend(values)
    return summarise(joined)


# ---------------------------------------------------------------------------------------
# Text and picture


def _cell(value, digits: int = 3, percent: bool = False) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{100 * value:.0f}%"
    return f"{value:.{digits}f}"


def format_matrix(title: str, rows: list[dict], key: str) -> str:
    """One matrix as text: a row per configuration, the summary ``row[key]``."""
    header = (f"{'optimised on':<38}{'mesh NME':>10}{'pose':>8}{'MTCNN NME':>11}{'lost':>7}"
              f"{'face-api':>10}{'tiny':>8}{'PSNR':>7}{'SSIM':>7}{'s/keyframe (cpu)':>18}")
    lines = [title, header]
    for row in rows:
        summary = row[key]
        cells = []
        for name, model, _ in COLUMNS:
            digits = 2 if name == "pose_error" else 3
            text = _cell(summary.get(name), digits, name == "mtcnn_faces_lost")
            mark = "*" if row["models"] and model in row["models"] else " "
            cells.append(text + mark)
        widths = (10, 8, 11, 7, 10, 8)
        seconds = row.get("seconds_per_keyframe")
        cpu = row.get("cpu_seconds_per_keyframe")
        lines.append(f"{row['label']:<38}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths))
                     + f"{_cell(summary.get('psnr'), 1):>7}{_cell(summary.get('ssim'), 3):>7}"
                     + f"{_seconds_text(seconds, cpu):>18}")
    lines.append("(* white box: the model was optimised against; medians over frames, faces "
                 "lost: share of frames; seconds of optimisation per keyframe, wall and this "
                 "process's CPU)")
    return "\n".join(lines)


def _seconds_text(seconds, cpu) -> str:
    if seconds is None:
        return "-"
    return _cell(seconds, 1) + (f" ({_cell(cpu, 1)})" if cpu is not None else "")


def _colour(value, target: float) -> str:
    """White at 0, amber at half the target, red from the target on."""
    if value is None:
        return "#eeeeee"
    level = max(0.0, min(1.0, value / target))
    low, high = (255, 255, 255), (214, 39, 40)
    mixed = [round(a + (b - a) * level) for a, b in zip(low, high)]
    return "#%02x%02x%02x" % tuple(mixed)


def write_svg(path: Path, panels: list[tuple[str, list[dict], str]], note: str,
              models: tuple[str, ...] = MODELS) -> None:
    """A heatmap per panel ``(title, rows, summary key)``, panels one under the other: rows
    optimised against, columns read with (mesh NME, MTCNN NME, MTCNN faces lost, face-api
    NME, face-api tiny NME; those of ``models``), colour = value over its target (NME 0.05,
    50% of faces lost), white-box cells hatched, leave-one-out cells framed, the optimiser's
    CPU seconds per keyframe beside."""
    columns = tuple(column for column in (
        ("landmark_nme", "mesh", "mesh NME", NME_TARGET, False),
        ("mtcnn_nme", "mtcnn", "MTCNN NME", NME_TARGET, False),
        ("mtcnn_faces_lost", "mtcnn", "MTCNN lost", LOST_TARGET, True),
        ("faceapi68_nme", "faceapi68", "face-api NME", NME_TARGET, False),
        ("faceapi68tiny_nme", "faceapi68tiny", "tiny NME", NME_TARGET, False))
        if column[1] in models)
    margin, label_width, cell_w, cell_h, cost_w = 24, 250, 96, 26, 100
    width = margin * 2 + label_width + cell_w * len(columns) + cost_w
    title_h, header_h, panel_gap = 26, 26, 24
    heights = [title_h + header_h + cell_h * len(rows) for _, rows, _ in panels]
    legend = ["Medians over frames after H.264 CRF 23 (faces lost: share of frames), each model "
              "reading on its own.",
              "Colour: value over its target (NME 0.05, 50% of faces lost), red at the target; "
              "bold: target reached;",
              "hatched: white box (the model was optimised against); framed: leave-one-out "
              "(optimised on all the others).",
              "CPU s: optimiser seconds per keyframe, one thread.", note]
    height = margin + sum(heights) + panel_gap * len(panels) + 18 * len(legend) + margin
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" '
             'font-size="12">',
             '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#000" '
             'stroke-opacity="0.2" stroke-width="2"/></pattern></defs>',
             f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    top = margin
    for (title, rows, key), panel_height in zip(panels, heights):
        left = margin
        parts.append(f'<text x="{left}" y="{top + 16}" font-size="14" font-weight="bold">'
                     f'{_escape(title)}</text>')
        header_y = top + title_h + 17
        parts.append(f'<text x="{left}" y="{header_y}" fill="#555">optimised against</text>')
        for column, (_, _, label, _, _) in enumerate(columns):
            x = left + label_width + column * cell_w + cell_w / 2
            parts.append(f'<text x="{x:.0f}" y="{header_y}" text-anchor="middle" '
                         f'font-weight="bold">{label}</text>')
        cost_x = left + label_width + cell_w * len(columns) + cost_w - 4
        parts.append(f'<text x="{cost_x}" y="{header_y}" text-anchor="end" fill="#555">'
                     'CPU s</text>')
        for line, row in enumerate(rows):
            y = top + title_h + header_h + line * cell_h
            if not row["models"] and (line == 0 or rows[line - 1]["models"]):
                parts.append(f'<line x1="{left}" x2="{width - margin}" y1="{y}" y2="{y}" '
                             'stroke="#888" stroke-dasharray="3 3"/>')
            parts.append(f'<text x="{left}" y="{y + 17}">{_escape(row["label"])}</text>')
            summary = row[key]
            for column, (name, model, _, target, percent) in enumerate(columns):
                x = left + label_width + column * cell_w
                value = summary.get(name)
                parts.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" '
                             f'fill="{_colour(value, target)}" stroke="#ffffff"/>')
                if model in row["models"]:
                    parts.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" '
                                 'fill="url(#hatch)"/>')
                if len(row["models"]) == len(models) - 1 and model not in row["models"]:
                    parts.append(f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" '
                                 f'height="{cell_h - 2}" fill="none" stroke="#111" '
                                 'stroke-width="2"/>')
                reached = value is not None and value >= target
                parts.append(f'<text x="{x + cell_w / 2:.0f}" y="{y + 17}" text-anchor="middle" '
                             f'font-weight="{"bold" if reached else "normal"}">'
                             f'{_cell(value, 3, percent)}</text>')
            cpu = row.get("cpu_seconds_per_keyframe")
            parts.append(f'<text x="{cost_x}" y="{y + 17}" text-anchor="end" fill="#555">'
                         f'{_cell(cpu, 1) if cpu is not None else ""}</text>')
        top += panel_height + panel_gap
    for line, text in enumerate(legend):
        parts.append(f'<text x="{margin}" y="{top + 14 + 18 * line}" fill="#333" '
                     f'font-size="11">{_escape(text)}</text>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n")


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------------------------------


def load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="+", default=list(CLIPS))
    parser.add_argument("--frames", type=int, default=4, help="frames per clip")
    parser.add_argument("--stride", type=int, default=16, help="frames 0, S, 2S, ...")
    parser.add_argument("--eps", default="8/255")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=3.0)
    parser.add_argument("--crf", type=float, default=23)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chroma", type=float, default=0.0)
    parser.add_argument("--texture-floor", type=float, default=0.15)
    parser.add_argument("--region-floor", type=float, default=0.5)
    parser.add_argument("--texture-reference", type=float, default=0.03)
    parser.add_argument("--configurations", nargs="*", default=list(CONFIGURATIONS),
                        help="model sets of the matrix, e.g. mesh mtcnn+faceapi68")
    parser.add_argument("--techniques", nargs="*", default=[],
                        help="techniques to compare with the baseline (" +
                        ", ".join(list(TECHNIQUE_CHANGES)[1:]) + "; a+b: both)")
    parser.add_argument("--technique-configurations", nargs="+",
                        default=["mesh+mtcnn", "mesh+faceapi68"])
    parser.add_argument("--diversity-scale-min", type=float, default=0.75)
    parser.add_argument("--diversity-jitter", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=1.0, help="sign_momentum's mu")
    parser.add_argument("--feature-weight", type=float, default=1.0)
    parser.add_argument("--ghost-strength", type=float, default=0.2,
                        help="ghost's noise on the feature maps: each output times "
                             "1 + S * U(-1, 1)")
    parser.add_argument("--margin-target", type=float, default=0.15,
                        help="margin's landmark error the surrogates are optimised towards "
                             "(their default: 0.05, the figure to reach after encoding)")
    parser.add_argument("--no-noise", action="store_true", help="skip the sign-noise row")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: best on a shared 2-core machine)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--svg", default=None, help="write the matrices as an SVG heatmap")
    parser.add_argument("--note", default="", help="a line kept in the JSON")
    parser.add_argument("--redraw", metavar="JSON", default=None,
                        help="print the matrices of a saved result (and draw --svg); no run")
    args = parser.parse_args(argv)
    if args.redraw:
        show(json.loads(Path(args.redraw).read_text()), args.svg)
        return 0
    args.eps_text = args.eps
    args.eps = _fraction(args.eps)
    for configuration in args.configurations + args.technique_configurations:
        models_of(configuration)
    for name in args.techniques:
        technique(name)

    from tradeoff import load_frames

    from vdf_stream import assets, environment
    from vdf_stream.environment import cpu_idle_fraction
    from vdf_stream.evaluation.readers import FaceReader, TransferReader
    from vdf_stream.filters.noise import bounded_noise
    from vdf_stream.models.mesh import FacePipeline
    from vdf_stream.models.surrogate import (FaceApi68Surrogate, FaceApi68TinySurrogate,
                                             MtcnnSurrogate)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    conditions = {"load_average_at_start": load_average(),
                  "cpu_idle_fraction_at_start": cpu_idle_fraction(1.0)}
    started_all = time.perf_counter()
    device = torch.device("cpu")
    pipeline = FacePipeline(segmentation=True)
    face_reader = FaceReader(device, "selfie+mesh")
    transfer_reader = TransferReader(device)

    def surrogates_towards(nme_target: float, direction: str | None = None) -> dict:
        """Every surrogate, optimised towards ``nme_target`` (along ``direction`` when
        given); face-api's networks read in the boxes of the set's MTCNN."""
        mtcnn = MtcnnSurrogate(device=device, nme_target=nme_target, direction=direction)
        return {"mtcnn": mtcnn, **{kind.name: kind(device=device, nme_target=nme_target,
                                                    detector=mtcnn.detector,
                                                    direction=direction)
                                   for kind in (FaceApi68Surrogate, FaceApi68TinySurrogate)}}

    surrogates = surrogates_towards(NME_TARGET)
    FeatureTerm = feature_term_class()
    feature_terms = {name: FeatureTerm(model, _mtcnn_features if name == "mtcnn"
                                       else _faceapi_features)
                     for name, model in surrogates.items()}
    runner = Runner(args, pipeline, surrogates, feature_terms, surrogates_towards)

    matrix_jobs = [(configuration, "baseline") for configuration in args.configurations]
    technique_jobs = [(configuration, name) for configuration in args.technique_configurations
                      for name in ["baseline"] + list(args.techniques)] if args.techniques else []
    jobs = list(dict.fromkeys(matrix_jobs + technique_jobs))

    rows: dict[tuple[str, str], dict] = {}
    references: dict[str, dict] = {"floor": {}, "noise_sign": {}}
    clips_info = {}
    for clip_name in args.clips:
        clip = str(assets.fetch(clip_name, progress=False)) if "/" not in clip_name else clip_name
        frames, info = load_frames(clip, args.frames, args.stride)
        indices = [args.stride * position for position in range(frames.shape[0])]
        original_u8 = torch.round(frames * 255).to(torch.uint8)
        readers = Readers(original_u8, info, args.crf, face_reader, transfer_reader)
        clips_info[clip_name] = {"frames": indices, "width": info.width, "height": info.height}
        print(f"{clip_name}: frames {indices}", file=sys.stderr, flush=True)
        per_frame = readers.measure(original_u8)
        references["floor"][clip_name] = {"per_frame": per_frame,
                                          "summary": summarise(per_frame)}
        if not args.no_noise:
            noisy = bounded_noise(frames, indices, args.eps, "sign", args.seed)
            noisy_u8 = torch.round(noisy.clamp(0, 1) * 255).to(torch.uint8)
            per_frame = readers.measure(noisy_u8)
            references["noise_sign"][clip_name] = {"per_frame": per_frame,
                                                   "summary": summarise(per_frame)}
        if clip_name == args.clips[0]:
            runner.warm_up(frames[:1])
        for configuration, name in jobs:
            chosen = technique(name)
            protected, seconds, cpu_seconds, steps = runner.protect(frames, indices,
                                                                    configuration, chosen)
            protected_u8 = torch.round(protected.clamp(0, 1) * 255).to(torch.uint8)
            per_frame = readers.measure(protected_u8)
            entry = rows.setdefault((configuration, name), {
                "configuration": configuration, "technique": name,
                "models": list(models_of(configuration)), "clips": {}})
            entry["clips"][clip_name] = {"per_frame": per_frame, "summary": summarise(per_frame),
                                         "seconds_per_keyframe": sum(seconds) / len(seconds),
                                         "seconds": [round(s, 3) for s in seconds],
                                         "cpu_seconds_per_keyframe":
                                             sum(cpu_seconds) / len(cpu_seconds),
                                         "cpu_seconds": [round(s, 3) for s in cpu_seconds],
                                         "steps": steps}
            summary = entry["clips"][clip_name]["summary"]
            print(json.dumps({"clip": clip_name, "configuration": configuration,
                              "technique": name, "seconds_per_keyframe":
                              round(sum(seconds) / len(seconds), 2),
                              "cpu_seconds_per_keyframe":
                                  round(sum(cpu_seconds) / len(cpu_seconds), 2),
                              **{key: None if value is None else round(value, 4)
                                 for key, value in summary.items()}}), flush=True)

    conditions["load_average_at_end"] = load_average()
    conditions["seconds"] = round(time.perf_counter() - started_all, 1)
    result = {
        "benchmark": "transfer",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "note": args.note,
        "configuration": {
            "clips": clips_info, "frames_per_clip": args.frames, "stride": args.stride,
            "eps": args.eps_text, "steps": args.steps, "learning_rate": args.learning_rate,
            "crf": args.crf, "seed": args.seed, "perturb_options": perturb_options(args),
            "configurations": args.configurations, "techniques": args.techniques,
            "technique_configurations": args.technique_configurations,
            "diversity": {"scale_min": args.diversity_scale_min,
                          "region_jitter": args.diversity_jitter},
            "momentum": args.momentum, "feature_weight": args.feature_weight,
            "margin_target": args.margin_target,
            "ghost_strength": args.ghost_strength,
            "threads": args.threads, "optimisation": "per frame (share=off), no early stop",
            "columns": {name: {"model": model, "statistic": statistic}
                        for name, model, statistic in COLUMNS},
            "targets": {"landmark_nme": NME_TARGET, "mtcnn_faces_lost": LOST_TARGET},
            "references": {
                "reading": "every model reads the original and the published frames on its "
                           "own (own detection); mesh: vdf_stream.evaluation.readers.FaceReader/compare; "
                           "MTCNN, face-api: TransferReader/compare_transfer (eval --transfer)",
                "published": f"protected frames after libx264 CRF {args.crf:g} (one sequence "
                             "per clip and configuration)",
                "floor": f"the original after the same CRF {args.crf:g} round trip, nothing "
                         "added",
                "white_box": "a cell whose model is in the configuration"},
        },
        "matrix": [{"configuration": configuration,
                    "models": rows[(configuration, "baseline")]["models"],
                    "clips": rows[(configuration, "baseline")]["clips"],
                    "pooled": pooled(rows[(configuration, "baseline")]["clips"])}
                   for configuration in args.configurations],
        "techniques": [{"configuration": configuration, "technique": name,
                        "clips": rows[(configuration, name)]["clips"],
                        "pooled": pooled(rows[(configuration, name)]["clips"])}
                       for configuration, name in technique_jobs],
        "floor": {"clips": references["floor"], "pooled": pooled(references["floor"])},
        "noise_sign": ({"clips": references["noise_sign"],
                        "pooled": pooled(references["noise_sign"])}
                       if references["noise_sign"] else None),
        "conditions": conditions,
        "versions": environment.library_versions(),
        "machine": environment.machine_description(),
    }
    path = Path(args.json) if args.json else (
        Path(__file__).parent / "results" / f"transfer_{environment.machine_tag()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    show(result, args.svg)
    print(f"wrote {path}")
    return 0


def _row(label: str, models: list, clips: dict, clip: str | None) -> dict:
    """A line of a matrix: the summary of one clip, or of every clip's frames pooled."""
    chosen = list(clips.values()) if clip is None else [clips[clip]]
    seconds = [value for item in chosen for value in item.get("seconds", [])]
    cpu = [value for item in chosen for value in item.get("cpu_seconds", [])]
    return {"label": label, "models": models,
            "summary": pooled(clips) if clip is None else clips[clip]["summary"],
            "seconds_per_keyframe": sum(seconds) / len(seconds) if seconds else None,
            "cpu_seconds_per_keyframe": sum(cpu) / len(cpu) if cpu else None}


def sections_of(result: dict) -> tuple[list, list]:
    """``(matrix sections, technique sections)``, each ``[(title, rows)]``: per clip, then
    every clip's frames pooled."""
    configuration = result["configuration"]
    clips = list(configuration["clips"])

    def rows(entries: list, clip: str | None) -> list[dict]:
        out = [_row(entry["configuration"] if entry.get("technique", "baseline") == "baseline"
                    else f"{entry['configuration']} [{entry['technique']}]",
                    list(models_of(entry["configuration"])), entry["clips"], clip)
               for entry in entries]
        for kind, label in (("noise_sign", f"sign noise {configuration['eps']}"),
                            ("floor", f"floor: CRF {configuration['crf']:g} alone")):
            if result.get(kind):
                out.append(_row(label, [], result[kind]["clips"], clip))
        return out

    def titled(prefix: str, entries: list) -> list:
        if not entries:
            return []
        return ([(f"{prefix}{clip} ({len(configuration['clips'][clip]['frames'])} frames)",
                  rows(entries, clip)) for clip in clips]
                + [(f"{prefix}all clips (frames pooled)", rows(entries, None))])

    return titled("", result["matrix"]), titled("techniques, ", result["techniques"])


def show(result: dict, svg: str | None) -> None:
    """Print the matrices of a result and, with ``svg``, draw the leave-one-out matrix."""
    matrix, techniques = sections_of(result)
    for title, rows in matrix + techniques:
        print()
        print(format_matrix(title, rows, "summary"))
    if svg and matrix:
        configuration = result["configuration"]
        note = (f"eps {configuration['eps']}, {configuration['steps']} steps, learning rate "
                f"{configuration['learning_rate']:g}, {configuration['frames_per_clip']} frames "
                f"per clip (stride {configuration['stride']}), each optimised on its own; "
                "benchmarks/transfer.py")
        models = tuple(dict.fromkeys(column["model"] for column in
                                     configuration.get("columns", {}).values())) or MODELS
        write_svg(Path(svg), [(title, rows, "summary") for title, rows in matrix], note, models)
        print(f"wrote {svg}")


if __name__ == "__main__":
    raise SystemExit(main())
