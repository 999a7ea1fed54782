"""How the evaluation report names, explains, formats and judges each metric.

:data:`METRICS` is the report's registry: a label, a plain-words explanation, a unit, how
many digits, and for the efficacy metrics the threshold and statistic of
:mod:`vdf_stream.evaluation.criteria` (the one definition of when a face reading counts as
broken). Around it, small tolerant accessors (any key may be missing, any number ``None``
or NaN, shown as :data:`MISSING`) and the formatting the page's text, tables and charts
share.
"""

from __future__ import annotations

import contextvars
import html
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from . import criteria

MISSING = "\u2014"  # em dash: a value that is missing, None or NaN


@dataclass(frozen=True)
class Metric:
    """How one metric is named, formatted, explained and judged on the page.

    ``threshold`` is a rule of thumb (not a guarantee) for the verdicts: for a fidelity
    metric the value at or above which viewers see no difference, for an efficacy metric
    the value at or above which that face reading counts as broken. ``statistic`` is the
    summary field the headline uses ("median" or "mean"). ``digits`` None: four
    significant digits.
    """

    label: str
    explanation: str
    unit: str = ""
    digits: int | None = 3
    percent: bool = False
    statistic: str = "median"
    threshold: float | None = None
    kind: str = "other"  # "fidelity", "efficacy" or "other"


ALIASES = {"pose_error": "pose_error_degrees"}  # the evaluator's name -> the report's


def report_name(name: str) -> str:
    """The report's name of an evaluator metric (``pose_error`` -> ``pose_error_degrees``)."""
    return ALIASES.get(name, name)


def _criterion(name: str) -> dict:
    """The threshold and statistic :mod:`~vdf_stream.evaluation.criteria` gives ``name``."""
    criterion = criteria.BY_NAME[name]
    return {"threshold": criterion.threshold, "statistic": criterion.statistic}


METRICS: dict[str, Metric] = {
    "psnr": Metric(
        "PSNR", "Peak signal-to-noise ratio between each original frame and its protected "
        "version. Higher means closer: from about 40 dB on, viewers see no difference; "
        "35\u201340 dB is hard to see.", unit="dB", digits=1, threshold=40.0,
        kind="fidelity"),
    "ssim": Metric(
        "SSIM", "Structural similarity of the protected frame to the original (1 means "
        "identical). From about 0.98 on, edges, textures and shading look the same.",
        digits=4, threshold=0.98, kind="fidelity"),
    "max_abs_difference": Metric(
        "Largest pixel change", "The largest change of any pixel value (on the 0\u2013255 "
        "scale) in the frame. The protection bounds it; a few levels are invisible.",
        digits=1, kind="fidelity"),
    "temporal_flicker": Metric(
        "Temporal flicker", "How much the added change varies from one frame to the next, "
        "compared with how much the picture itself changes. Low values mean no shimmer when "
        "the video plays.", digits=2, kind="fidelity"),
    "landmark_nme": Metric(
        "Landmark shift (NME)", "How far the face points found on the protected frame lie "
        "from those found on the original, as a share of the distance between the outer "
        f"eye corners. From about {criteria.LANDMARK_NME:.2f} on, the 3-D face fit a deepfake is "
        "built on goes wrong.", digits=3, **_criterion("landmark_nme"), kind="efficacy"),
    "pose_error_degrees": Metric(
        "Head-pose error", "The angle between the head orientation measured on the "
        "protected frame and on the original. The deepfake uses it as its camera pose: "
        f"from about {criteria.POSE_ERROR_DEGREES:g}\u00b0 on, it learns the head from the "
        "wrong viewpoints.", unit="\u00b0", digits=1, **_criterion("pose_error"),
        kind="efficacy"),
    "parse_flip": Metric(
        "Parse flip", "The share of the original's face and head pixels that the face "
        "parser no longer labels as face or head. Wrong masks spoil the head, torso and "
        "background images the deepfake trains on.", percent=True, **_criterion("parse_flip"),
        kind="efficacy"),
    "detection_loss": Metric(
        "Detection loss", "The share of frames where a face is found in the original but "
        "not in the protected video. Deepfake preprocessing drops those frames.",
        percent=True, **_criterion("detection_loss"), kind="efficacy"),
    "presence": Metric(
        "Mesh presence", "The face-mesh model's confidence (0 to 1) that the protected "
        "frame shows a face. Below about 0.5 the mesh gives the face up.", digits=3,
        kind="efficacy"),
    # eval --transfer: face readers of other families, each with its own detection
    "mtcnn_nme": Metric(
        "MTCNN landmark shift (NME)", "How far the 5 points MTCNN finds (eye centres, nose "
        "tip, mouth corners) on the protected frame lie from those on the original, as a "
        "share of the original's eye-centre distance. MTCNN is a face detector of another "
        "family than the models the protection is usually optimised against.", digits=3,
        threshold=criteria.TRANSFER_THRESHOLDS["mtcnn_nme"], kind="transfer"),
    "mtcnn_faces_lost": Metric(
        "MTCNN faces lost", "The share of frames where MTCNN finds a face in the original "
        "but none in the protected video.", percent=True, statistic="mean",
        threshold=criteria.TRANSFER_THRESHOLDS["mtcnn_faces_lost"], kind="transfer"),
    "faceapi68_nme": Metric(
        "face-api landmark shift (NME)", "How far face-api's 68 points, read in the box "
        "MTCNN finds, lie on the protected frame from those on the original, as a share of "
        "the original's outer-eye-corner distance.", digits=3,
        threshold=criteria.TRANSFER_THRESHOLDS["faceapi68_nme"], kind="transfer"),
    "faceapi68tiny_nme": Metric(
        "face-api tiny landmark shift (NME)", "The same with face-api's second, smaller "
        "68-point network (its own weights), read in the same MTCNN box.", digits=3,
        threshold=criteria.TRANSFER_THRESHOLDS["faceapi68tiny_nme"], kind="transfer"),
    "faceapidet_faces_lost": Metric(
        "face-api detector faces lost", "The share of frames where face-api's tiny face "
        "detector finds a face in the original but none in the protected video: face-api's "
        "own pipeline reads no landmarks there.", percent=True, statistic="mean",
        threshold=criteria.TRANSFER_THRESHOLDS["faceapidet_faces_lost"], kind="transfer"),
    "faceapidet_box_shift": Metric(
        "face-api detector box shift", "How far the corners of the box face-api's tiny face "
        "detector finds lie on the protected frame from those on the original, as a share "
        "of the original box's diagonal (frames where it finds a face in both).", digits=3,
        threshold=criteria.TRANSFER_THRESHOLDS["faceapidet_box_shift"], kind="transfer"),
    "fan_nme": Metric(
        "FAN landmark shift (NME)", "How far FAN's 68 points lie on the protected frame from "
        "those on the original, read as ER-NeRF and its kin read them (face-alignment's "
        "2DFAN-4 in the crop of S3FD's first face), as a share of the original's "
        "outer-eye-corner distance. Their 3DMM fit turns these points into the head poses "
        "the generator is trained on.", digits=3,
        threshold=criteria.TRANSFER_THRESHOLDS["fan_nme"], kind="transfer"),
    "fan_faces_lost": Metric(
        "S3FD faces lost", "The share of frames where S3FD, the detector FAN crops from, "
        "finds a face in the original but none in the protected video: the pipelines drop "
        "those frames.", percent=True, statistic="mean",
        threshold=criteria.TRANSFER_THRESHOLDS["fan_faces_lost"], kind="transfer"),
}

KEY_FIGURES = ("psnr", "ssim", "landmark_nme", "pose_error_degrees", "parse_flip",
               "detection_loss")
FIDELITY_ORDER = ("psnr", "ssim", "max_abs_difference", "temporal_flicker")
EFFICACY_ORDER = ("landmark_nme", "pose_error_degrees", "parse_flip", "detection_loss",
                  "presence")
TRANSFER_ORDER = ("fan_nme", "fan_faces_lost", "mtcnn_nme", "mtcnn_faces_lost",
                  "faceapi68_nme", "faceapi68tiny_nme",
                  "faceapidet_faces_lost", "faceapidet_box_shift")
ROBUSTNESS_ALWAYS = ("landmark_nme", "pose_error_degrees")
# the criteria of "Is my video protected?", in the report's names
CRITERIA = tuple(report_name(criterion.name) for criterion in criteria.CRITERIA)

# Visibility (ColorVideoVDP, JOD: 10 = no visible difference). The rule the page applies is
# the one the result carries; these are used only for numbers it lacks.
# the rule is the measurement's (one home: evaluation/visibility.py)
from .visibility import RULE as VISIBILITY_RULE  # noqa: E402
JOD = Metric(
    "Video JOD", "ColorVideoVDP's prediction of how different the protected video looks "
    "from the original, in just-objectionable differences (JOD): 10 means no visible "
    "difference; one JOD lower means 75 % of viewers would pick the original in a "
    "side-by-side comparison.", digits=2, threshold=VISIBILITY_RULE["native_jod"],
    kind="visibility")
VISIBILITY_PARTS = (("native", "native size", "native_jod"),
                    ("full_screen", "full screen", "full_screen_jod"))


def as_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, None, NaN, infinite, not a number)."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


# What the result says about metrics the report does not know (its "metrics" entry), for
# the page being written.
DESCRIBED: contextvars.ContextVar[dict] = contextvars.ContextVar("described", default={})


def metric_for(name: str) -> Metric:
    known = METRICS.get(name)
    if known is not None:
        return known
    description = as_dict(DESCRIBED.get().get(name))
    explanation = description.get("description")
    unit = description.get("unit")
    return Metric(str(name), str(explanation) if explanation else
                  "A metric this report does not describe; shown as measured.",
                  unit=str(unit) if isinstance(unit, str) else "", digits=None)


def canonical(section: Any) -> dict:
    """A dict keyed by metric name with the evaluator's aliases renamed (an entry already
    under the report's name wins)."""
    section = as_dict(section)
    renamed = {ALIASES.get(name, name): value for name, value in section.items()
               if name not in ALIASES}
    for alias, name in ALIASES.items():
        if alias in section and name not in renamed:
            renamed[name] = section[alias]
    return renamed


def is_infinite(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) and math.isinf(value)


def format_value(value: Any, metric: Metric, unit: bool = True) -> str:
    """A metric value as text: percent for shares, the metric's digits, its unit."""
    if is_infinite(value):
        return ("\u221e" if value > 0 else "\u2212\u221e") + (f" {metric.unit}" if unit
                                                              and metric.unit else "")
    number = as_number(value)
    if number is None:
        return MISSING
    if metric.percent:
        text = f"{number * 100:.1f}"
        return f"{text} %" if unit else text
    if metric.digits is None:
        text = f"{number:.4g}"
    else:
        text = f"{number:.{metric.digits}f}"
    text = text.replace("-", "\u2212")
    if unit and metric.unit:
        return f"{text}\u00b0" if metric.unit == "\u00b0" else f"{text} {metric.unit}"
    return text


def format_threshold(text: Any, metric: Metric) -> str:
    number = threshold_number(text)
    if number is None:
        return html.escape(str(text))
    if metric.percent:
        return f"{number * 100:g} %"
    return f"{number:g}\u00b0" if metric.unit == "\u00b0" else (
        f"{number:g} {metric.unit}".strip())


def pick(summary: Any, metric: Metric) -> tuple[float | None, str]:
    """(value, statistic it is): the metric's statistic, else the other one rather than
    nothing; an infinite value (PSNR of identical frames) is kept."""
    summary = as_dict(summary)
    other = "mean" if metric.statistic == "median" else "median"
    for statistic in (metric.statistic, other):
        value = summary.get(statistic)
        if as_number(value) is not None or is_infinite(value):
            return float(value), statistic
    return None, metric.statistic


def statistic_value(summary: Any, metric: Metric) -> float | None:
    """The finite value of :func:`pick`, or None."""
    return as_number(pick(summary, metric)[0])


def percent_text(share: Any) -> str:
    number = as_number(share)
    return MISSING if number is None else f"{number * 100:.1f} %"


def ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    names = [str(name) for name in names]
    known = [name for name in order if name in names]
    return known + sorted(name for name in names if name not in order)


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def share_items(summary: Any) -> list[tuple[str, Any, Any]]:
    """``[(direction, threshold, share)]`` of a summary: its ``share_above`` dict
    (threshold text -> share) and flat ``share_above_T`` / ``share_below_T`` keys."""
    summary = as_dict(summary)
    items = [("above", threshold, share)
             for threshold, share in as_dict(summary.get("share_above")).items()]
    for key, share in summary.items():
        for direction in ("above", "below"):
            prefix = f"share_{direction}_"
            if isinstance(key, str) and key.startswith(prefix) and len(key) > len(prefix):
                items.append((direction, key[len(prefix):], share))
    return items


def threshold_number(text: Any) -> float | None:
    try:
        return as_number(float(text))
    except (TypeError, ValueError):
        return None


def thresholds_of(summary: Any, metric: Metric) -> list[float]:
    values = [number for _, text, _ in share_items(summary)
              if (number := threshold_number(text)) is not None]
    if metric.threshold is not None:
        values.append(metric.threshold)
    unique: list[float] = []
    for value in sorted(values):
        if not any(abs(value - seen) <= 1e-9 * max(1.0, abs(seen)) for seen in unique):
            unique.append(value)
    return unique


def jod_text(value: Any) -> str:
    return format_value(value, JOD)


def degradation_label(entry: dict) -> str:
    if isinstance(entry.get("label"), str) and entry["label"]:
        return entry["label"]
    name = str(entry.get("degradation") or "unnamed")
    params = as_dict(entry.get("params"))
    if not params:
        return name
    inner = ", ".join(f"{key}={value}" for key, value in params.items())
    return f"{name} ({inner})"
