"""``vdf-stream eval``: how visible a protection is, and how much it misleads the face
preprocessing of talking-face generators, as a library.

:func:`evaluate` pairs the frames of an ORIGINAL and a PROTECTED video by index and measures

* **visibility** (first, unless turned off): ColorVideoVDP's JOD of the whole video at its
  native size and of a run of frames at full screen, per frame, beside the codec floor (the
  original re-encoded with the protected file's settings): :mod:`.visibility`;
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
  (:class:`~vdf_stream.evaluation.readers.TransferReader`), protected against original,
  beside the floor of H.264 CRF 23 applied to the original alone.

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

How the face readers read a frame, lost faces included, and which mask parse flip uses:
:mod:`vdf_stream.evaluation.readers`. Frames where the clean original has no face are left
out of every efficacy figure (``None`` in JSON) and counted as ``missing``.

Frames are decoded once, in lockstep (:mod:`vdf_stream.evaluation.pairing`), and evaluated
in chunks (bounded memory whatever the length of the video); a second pass decodes the few
frames shown in a report (:mod:`vdf_stream.evaluation.views`). The degradations are in
:mod:`vdf_stream.evaluation.degradations`, the text table in
:mod:`vdf_stream.evaluation.table`, the HTML page in :mod:`vdf_stream.evaluation.report`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import metrics
from .degradations import Degradation, Degrader, degradations
from .pairing import Pair, PairedFrames, check_path, count_video_packets, describe_input
from .readers import (PIPELINE_BATCH, TRANSFER_DESCRIPTIONS, TRANSFER_METRICS, FaceReader,
                      TransferReader, compare, compare_transfer)
from .views import FrameView, collect_views
from ..environment import library_versions, machine_description
from ..errors import InputError, UsageError
from ..visibility import FULL_SCREEN_FRAMES

PARSERS = ("auto", "bisenet", "selfie+mesh")
CHUNK_FRAMES = 32
TRANSFER_FLOOR_CRF = 23  # eval --transfer: the floor is the original at H.264 CRF 23

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
    "transfer.efficacy": "MTCNN, face-api and, with its weights, FAN in S3FD's crop (each "
                         "with its own detection) on PROTECTED against the same on ORIGINAL; "
                         "read in the original's box where the detector finds no face",
    "transfer.floor": "the same on H.264 CRF 23 of ORIGINAL against ORIGINAL",
}


# ---------------------------------------------------------------------------------------
# Options


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
        transfer: also read with MTCNN and face-api's 68-point network
            (:class:`~vdf_stream.evaluation.readers.TransferReader`).
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
        from .visibility import VisibilityOptions

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


# ---------------------------------------------------------------------------------------
# Per-frame values


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


class Series:
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


def summarize_transfer(series: Series, names) -> dict:
    """Summaries of the transfer metrics ``names``, with the thresholds of the metric each
    one uses."""
    return {name: metrics.summarize_metric(TRANSFER_METRICS[name], series.get(name))
            for name in names}


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
        self.main = Series()
        self.robust = [{"efficacy": Series(), "floor": Series(), "versus_clean": Series()}
                       for _ in chosen]
        self.transfer = transfer
        self.transfer_floor = transfer_floor
        self.transferred = {"efficacy": Series(), "floor": Series()}
        self.evaluated: list[int] = []
        self.found_original: list[bool] = []
        self.seconds = {"fidelity": 0.0, "reading": 0.0, "robustness": 0.0, "transfer": 0.0}

    def _advance(self, frames: int) -> None:
        if self.progress is not None:
            self.progress(frames / (1 + len(self.chosen)))

    def process(self, chunk: list[Pair]) -> None:
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
    check_path(original, "ORIGINAL")
    check_path(protected, "PROTECTED")
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
        inputs = {"original": describe_input(original, source_original, packets_o),
                  "protected": describe_input(protected, source_protected, packets_p)}
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
        pairs = PairedFrames(source_original, source_protected, (original, protected),
                              options.allow_length_mismatch)
        chunk: list[Pair] = []
        previous = (None, None)
        selected = 0
        try:
            for index, pixels_o, pixels_p in pairs:
                if index % options.stride == 0:
                    chunk.append(Pair(index, pixels_o, pixels_p, *previous))
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
    if transfer is not None and transfer.fan_missing is not None:
        notes.append("--transfer: FAN, the landmark reader of ER-NeRF and its kin, was not "
                     f"read. {transfer.fan_missing}")
    visible = None
    if options.visibility:
        from . import visibility

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
            "efficacy": summarize_transfer(measurements.transferred["efficacy"],
                                           transfer.metrics),
            "floor": summarize_transfer(measurements.transferred["floor"], transfer.metrics),
            "floor_label": transfer_floor.label,
            "per_frame": measurements.transferred["efficacy"].lists(transfer.metrics),
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
