"""When a face reading counts as broken, and the answer those judgements give to "Is my
video protected?". Defined here once; the HTML report and the ``vdf-stream eval`` table
both read them from this module.

The thresholds, in plain words (each measured on the published, protected video against
the original, see :mod:`vdf_stream.evaluation.metrics` for the definitions):

* **landmarks** are broken when the median landmark shift (NME) is at least **0.10** of
  the distance between the outer eye corners;
* **head pose** is broken when the median pose error is at least **5 degrees**;
* **face parsing** is broken when, in the median frame, at least **30 %** of the
  original's face and head pixels are no longer labelled face or head (parse flip 0.30);
* **face detection** is broken when the face is lost in at least **half** of the frames
  (mean detection loss 0.50);
* after a degradation (``eval --robustness``: re-encoding, scaling, JPEG, blur, denoising)
  a reading counts as broken only when it also reaches at least **2 times** its floor,
  what the degradation alone does to the unprotected original;
* face readers of other families (``eval --transfer``: MTCNN, face-api) count as moved
  when their landmark shift is at least **0.05** (half the bar above: they were not
  optimised against, and the question is whether the effect carries over at all) or when
  they lose the face in at least half of the frames, and at least 2 times their floor
  (the original re-encoded with H.264 at CRF 23).

The answer (:func:`judge`), from the criteria that were measured:

* **Yes** when every measured reading is broken;
* **Partly, k of n broken** when some are and some are not;
* **No** when none is;
* **Unknown** when none was measured (no face in the original, or no efficacy figures).

Why these values:

* NME 0.10 is the failure threshold of the face-alignment benchmarks (WFLW counts a face
  whose NME, normalised by the outer-eye-corner distance as here, exceeds 0.10 as a failed
  alignment); H.264 at CRF 23 alone moves the mesh by 0.0024.
* Pose 5 degrees: a head turned 5 degrees about its axis, about 11 cm behind the nose tip,
  moves the front of the face by about 1 cm, the same displacement as NME 0.10 on an
  outer-eye-corner distance of about 9.5 cm; the talking-face pipelines take the fitted
  pose as the camera pose of every frame, so the views they train on disagree by that
  much. H.264 at CRF 23 alone gives 0.3 degrees.
* Parse flip 30 %: a third of the head missing from the head mask puts face pixels into
  the background plate and the torso images these pipelines build, and takes them out of
  the head model's training pixels; the encoder alone flips 0.2 %.
* Detection loss 50 %: a frame without a detected face gives the preprocessing no
  landmarks (GeneFace's stops with an error); losing half of them halves what the
  generator can train on.
* The floor factor 2: below twice the floor, the degradation rather than the protection
  does most of what is measured.

These are rules of thumb for the usual talking-face preprocessing, not guarantees. Earlier
text quoted pose 10 degrees and parse flip 0.5 as the bar: those are the optimiser's
early-stop targets (:class:`vdf_stream.protection.objective.Targets`), set above the bar on
purpose so that a keyframe keeps its effect after encoding; they are not the bar for
calling a reading broken. Earlier reports also answered "Yes" when two criteria of four
were met; an answer must not contradict the lines beneath it, so "Yes" now needs every
measured criterion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# A face reading is broken at or above these values.
LANDMARK_NME = 0.10        # median landmark shift, in outer-eye-corner distances
POSE_ERROR_DEGREES = 5.0   # median head-pose error
PARSE_FLIP = 0.30          # median share of the original's face/head pixels no longer so
DETECTION_LOSS = 0.50      # mean: the share of frames whose face is lost
# Under a degradation, or for other families' readers, a value must also reach this many
# times its floor (the same reading of the unprotected original after the degradation).
FLOOR_FACTOR = 2.0
# Landmark shift at which a reader of another family counts as moved (eval --transfer).
TRANSFER_NME = 0.05


@dataclass(frozen=True)
class Criterion:
    """One face reading a deepfake needs and when it counts as broken.

    Attributes:
        name: the metric's name in the evaluator's result (its ``efficacy`` keys).
        reading: the face reading it judges, in words.
        threshold: broken at or above this value.
        statistic: the summary field judged: ``"median"`` (a typical frame, not moved by a
            few runaway frames) or ``"mean"`` (of a 0/1 metric: the share of frames).
    """

    name: str
    reading: str
    threshold: float
    statistic: str


CRITERIA: tuple[Criterion, ...] = (
    Criterion("landmark_nme", "landmarks", LANDMARK_NME, "median"),
    Criterion("pose_error", "head pose", POSE_ERROR_DEGREES, "median"),
    Criterion("parse_flip", "face parsing", PARSE_FLIP, "median"),
    Criterion("detection_loss", "face detection", DETECTION_LOSS, "mean"),
)
BY_NAME = {criterion.name: criterion for criterion in CRITERIA}

# eval --transfer: each reading of another family and the value at which it counts as moved
TRANSFER_THRESHOLDS = {"mtcnn_nme": TRANSFER_NME, "mtcnn_faces_lost": DETECTION_LOSS,
                       "faceapi68_nme": TRANSFER_NME, "faceapi68tiny_nme": TRANSFER_NME,
                       "faceapidet_faces_lost": DETECTION_LOSS,
                       "faceapidet_box_shift": TRANSFER_NME,
                       "fan_nme": TRANSFER_NME, "fan_faces_lost": DETECTION_LOSS}

# How a judgement reads for one degradation of the robustness test.
HOLDS = {"good": "holds", "fair": "partly holds", "poor": "fails", "unknown": "not measured"}


def broken(value: float, threshold: float, floor: float | None = None) -> bool:
    """Whether ``value`` reaches ``threshold`` and, when a ``floor`` is given,
    :data:`FLOOR_FACTOR` times that floor."""
    return value >= threshold and (floor is None or value >= FLOOR_FACTOR * floor)


@dataclass(frozen=True)
class Check:
    """One measured criterion: its value, its floor (``None`` without one) and the outcome."""

    criterion: Criterion
    value: float
    floor: float | None
    broken: bool


@dataclass(frozen=True)
class Judgement:
    """The measured criteria and the answer they give.

    Attributes:
        checks: one per measured criterion, in the order of :data:`CRITERIA`.
        level: ``"good"`` (every one broken), ``"fair"`` (some), ``"poor"`` (none) or
            ``"unknown"`` (none measured).
        word: ``"Yes"``, ``"Partly"``, ``"No"`` or ``"Unknown"``.
        detail: the count in words, e.g. ``"3 of 4 face readings broken"``.
    """

    checks: tuple[Check, ...]

    @property
    def broken(self) -> int:
        return sum(check.broken for check in self.checks)

    @property
    def measured(self) -> int:
        return len(self.checks)

    @property
    def level(self) -> str:
        if not self.checks:
            return "unknown"
        if self.broken == self.measured:
            return "good"
        return "fair" if self.broken else "poor"

    @property
    def word(self) -> str:
        return {"good": "Yes", "fair": "Partly", "poor": "No", "unknown": "Unknown"}[self.level]

    @property
    def detail(self) -> str:
        if not self.checks:
            return "efficacy was not measured"
        readings = "face reading" if self.measured == 1 else "face readings"
        return f"{self.broken} of {self.measured} {readings} broken"


def finite(value) -> float | None:
    """``value`` as a finite float, else ``None`` (missing, NaN, infinite, not a number)."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return None
    try:
        number = float(value)  # Python and NumPy numbers
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def summary_value(summary, statistic: str) -> float | None:
    """The finite ``statistic`` of a summary (``{"median": ..., "mean": ...}``), else the
    other of the two rather than nothing, else ``None``."""
    if not isinstance(summary, Mapping):
        return None
    other = "mean" if statistic == "median" else "median"
    for key in (statistic, other):
        value = finite(summary.get(key))
        if value is not None:
            return value
    return None


def judge(values: Mapping[str, float | None],
          floors: Mapping[str, float | None] | None = None) -> Judgement:
    """Judge the criteria from one value each (criterion name -> value or ``None``: not
    measured), and under a degradation from the floor of each."""
    checks = []
    for criterion in CRITERIA:
        value = finite(values.get(criterion.name))
        if value is None:
            continue
        floor = finite(floors.get(criterion.name)) if floors is not None else None
        checks.append(Check(criterion, value, floor,
                            broken(value, criterion.threshold, floor)))
    return Judgement(tuple(checks))


def judge_summaries(efficacy: Mapping, floor: Mapping | None = None) -> Judgement:
    """:func:`judge` of summaries as the evaluator writes them (metric name -> summary);
    ``floor`` the summaries of the floor under a degradation."""
    def values(section: Mapping) -> dict[str, float | None]:
        section = section if isinstance(section, Mapping) else {}
        return {criterion.name: summary_value(section.get(criterion.name), criterion.statistic)
                for criterion in CRITERIA}

    return judge(values(efficacy), values(floor) if floor is not None else None)


def transfer_level(value: float | None, threshold: float, floor: float | None) -> str:
    """A reading of another family: ``"good"`` moved (:func:`broken` against its floor),
    ``"fair"`` only above :data:`FLOOR_FACTOR` times its floor, ``"poor"`` not beyond the
    floor, ``"unknown"`` not measured."""
    if value is None:
        return "unknown"
    if broken(value, threshold, floor):
        return "good"
    if floor is not None and value > FLOOR_FACTOR * floor:
        return "fair"
    return "poor"
