"""The evaluation report: one self-contained HTML page.

``vdf-stream eval ORIGINAL PROTECTED --report DIR`` calls :func:`write_report`, which writes
``DIR/index.html`` for a person who publishes their face and asks two questions: *is my
video protected?* and *does it still look the same?* The page answers them first (verdicts
and key figures, each explained in plain words), then shows the evidence: how visible the
change is (ColorVideoVDP's JOD beside the codec floor, with PSNR and SSIM as secondary
figures), one line plot per metric over the evaluated frames, robustness under degradations
as bars beside their noise floor, with ``eval --transfer`` what face readers of other
families (MTCNN, face-api) read beside their floor, a few frames (original and protected in
the same place at 1x, switched by hovering or clicking, a 2x close-up of the face, the
amplified difference, where a viewer would see it, and the face readings drawn over them),
and the configuration, library versions and machine.

The page is a single file that works offline: pictures are embedded as base64 data URIs
(JPEG, longest side at most :data:`PICTURE_SIDE` pixels; the original / protected pairs
as lossless PNG), plots are inline SVG drawn here (no plotting library), the style sheet is
inline and a few lines of inline script switch the pairs on a click.

Inputs (what :mod:`vdf_stream.evaluation.evaluate` hands over):

``result``, a JSON-like dict: ``config``, ``versions``, ``machine`` (dicts); ``inputs``
(``original`` / ``protected``: ``path``, ``width``, ``height``, ``frames``, ``fps``);
optionally ``visibility`` (ColorVideoVDP: ``metric``, ``display``, ``display_description``,
``rule`` (``native_jod``, ``full_screen_jod``, ``floor_margin``), ``native`` and
``full_screen`` (each ``{"jod", "floor_jod", "frames", "per_frame", "floor_per_frame",
"size"}`` or ``None``), ``floor`` (``label``, ``codec``, ``crf``, ``source``), ``verdict``
and ``seconds_per_frame`` (``native``, ``full_screen``));
``fidelity`` and ``efficacy`` (metric name -> ``{"median", "mean", "share_above":
{threshold text: share}}``, or the shares as flat ``share_above_T`` / ``share_below_T``
keys); ``per_frame`` (metric name -> one value or ``None`` per
evaluated frame); ``frames`` (the evaluated frame indices); ``parser`` (which parser measured
parse flip); ``robustness`` (list of ``{"degradation", "params", "efficacy", "floor"}``,
where ``floor`` is the same metric measured on the degraded *original*: what the
degradation alone does); optionally ``transfer`` (``eval --transfer``: ``efficacy`` and
``floor``, metric name -> summary as above, ``floor_label``, ``per_frame``); ``timing``
(``seconds``, ``seconds_per_frame``); ``notes`` (list of text); optionally ``metrics`` (name
-> ``{"unit", "description"}``, used for metrics this module does not describe) and
``parser_note``. Every key may be missing and every number
may be ``None`` or NaN: those are shown as "—". Metric names this module does not know are
shown by their raw name; ``pose_error`` is read as ``pose_error_degrees``.

``views``, objects with ``index``, ``original`` and ``protected`` (``(H, W, 3)`` uint8 RGB),
``original_reading`` and ``protected_reading`` (dicts with optional ``landmarks``
``(N, 2)`` frame pixels, ``box`` ``(x0, y0, x1, y1)``, ``mask`` ``(H, W)`` in [0, 1]),
``metrics`` (name -> value) and optionally ``visibility_map`` (``(H, W, 3)`` uint8 RGB:
ColorVideoVDP's picture of where a viewer would see the change) and ``jod`` (the frame's
JOD as a still image at its native size).
"""

from __future__ import annotations

import base64
import contextvars
import datetime
import html
import io
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .. import __version__
from ..errors import OutputError

__all__ = ["write_report", "METRICS", "PICTURE_SIDE"]

PICTURE_SIDE = 640  # longest side of an embedded picture, in pixels
JPEG_QUALITY = 85
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


TRANSFER_NME = 0.05  # landmark shift of another family's reader counted as moved

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
        "eye corners. From about 0.10 on, the 3-D face fit a deepfake is built on goes "
        "wrong.", digits=3, threshold=0.10, kind="efficacy"),
    "pose_error_degrees": Metric(
        "Head-pose error", "The angle between the head orientation measured on the "
        "protected frame and on the original. The deepfake uses it as its camera pose: "
        "from about 5\u00b0 on, it learns the head from the wrong viewpoints.", unit="\u00b0",
        digits=1, threshold=5.0, kind="efficacy"),
    "parse_flip": Metric(
        "Parse flip", "The share of the original's face and head pixels that the face "
        "parser no longer labels as face or head. Wrong masks spoil the head, torso and "
        "background images the deepfake trains on.", percent=True, threshold=0.30,
        kind="efficacy"),
    "detection_loss": Metric(
        "Detection loss", "The share of frames where a face is found in the original but "
        "not in the protected video. Deepfake preprocessing drops those frames.",
        percent=True, statistic="mean", threshold=0.50, kind="efficacy"),
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
        threshold=TRANSFER_NME, kind="transfer"),
    "mtcnn_faces_lost": Metric(
        "MTCNN faces lost", "The share of frames where MTCNN finds a face in the original "
        "but none in the protected video.", percent=True, statistic="mean", threshold=0.50,
        kind="transfer"),
    "faceapi68_nme": Metric(
        "face-api landmark shift (NME)", "How far face-api's 68 points, read in the box "
        "MTCNN finds, lie on the protected frame from those on the original, as a share of "
        "the original's outer-eye-corner distance.", digits=3, threshold=TRANSFER_NME,
        kind="transfer"),
    "faceapi68tiny_nme": Metric(
        "face-api tiny landmark shift (NME)", "The same with face-api's second, smaller "
        "68-point network (its own weights), read in the same MTCNN box.", digits=3,
        threshold=TRANSFER_NME, kind="transfer"),
    "faceapidet_faces_lost": Metric(
        "face-api detector faces lost", "The share of frames where face-api's tiny face "
        "detector finds a face in the original but none in the protected video: face-api's "
        "own pipeline reads no landmarks there.", percent=True, statistic="mean",
        threshold=0.50, kind="transfer"),
    "faceapidet_box_shift": Metric(
        "face-api detector box shift", "How far the corners of the box face-api's tiny face "
        "detector finds lie on the protected frame from those on the original, as a share "
        "of the original box's diagonal (frames where it finds a face in both).", digits=3,
        threshold=TRANSFER_NME, kind="transfer"),
}

KEY_FIGURES = ("psnr", "ssim", "landmark_nme", "pose_error_degrees", "parse_flip",
               "detection_loss")
FIDELITY_ORDER = ("psnr", "ssim", "max_abs_difference", "temporal_flicker")
EFFICACY_ORDER = ("landmark_nme", "pose_error_degrees", "parse_flip", "detection_loss",
                  "presence")
TRANSFER_ORDER = ("mtcnn_nme", "mtcnn_faces_lost", "faceapi68_nme", "faceapi68tiny_nme",
                  "faceapidet_faces_lost", "faceapidet_box_shift")
CRITERIA = ("landmark_nme", "pose_error_degrees", "parse_flip", "detection_loss")
ROBUSTNESS_ALWAYS = ("landmark_nme", "pose_error_degrees")
FLOOR_FACTOR = 2.0  # under a degradation, a reading counts as broken only this far above the floor

# Colours of the readings drawn over the pictures (RGB).
MASK_COLOUR = (59, 130, 246)
BOX_COLOUR = (250, 204, 21)
ORIGINAL_POINTS = (34, 197, 94)
PROTECTED_POINTS = (244, 63, 94)

# Visibility (ColorVideoVDP, JOD: 10 = no visible difference). The rule the page applies is
# the one the result carries; these are used only for numbers it lacks.
VISIBILITY_RULE = {"native_jod": 9.5, "full_screen_jod": 9.3, "floor_margin": 0.3}
FAIR_JOD = 9.0  # under the rule but at least this at native size: some viewers may see it
JOD = Metric(
    "Video JOD", "ColorVideoVDP's prediction of how different the protected video looks "
    "from the original, in just-objectionable differences (JOD): 10 means no visible "
    "difference; one JOD lower means 75 % of viewers would pick the original in a "
    "side-by-side comparison.", digits=2, threshold=VISIBILITY_RULE["native_jod"],
    kind="visibility")
VISIBILITY_PARTS = (("native", "native size", "native_jod"),
                    ("full_screen", "full screen", "full_screen_jod"))
ZOOM = 2  # the face close-up: each frame pixel drawn as ZOOM x ZOOM screen pixels
ZOOM_SIDE = 320  # largest side of the close-up's crop, in frame pixels
AB_ROOM = 1020  # CSS pixels a frame and its close-up share side by side


# --------------------------------------------------------------------------------------
# Small, tolerant accessors and formatting


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, None, NaN, infinite, not a number)."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


ALIASES = {"pose_error": "pose_error_degrees"}  # the evaluator's name -> the report's

# What the result says about metrics this module does not know (its "metrics" entry), for
# the page being written.
_described: contextvars.ContextVar[dict] = contextvars.ContextVar("described", default={})


def _metric(name: str) -> Metric:
    known = METRICS.get(name)
    if known is not None:
        return known
    description = _dict(_described.get().get(name))
    explanation = description.get("description")
    unit = description.get("unit")
    return Metric(str(name), str(explanation) if explanation else
                  "A metric this report does not describe; shown as measured.",
                  unit=str(unit) if isinstance(unit, str) else "", digits=None)


def _canonical(section: Any) -> dict:
    """A dict keyed by metric name with the evaluator's aliases renamed (an entry already
    under the report's name wins)."""
    section = _dict(section)
    renamed = {ALIASES.get(name, name): value for name, value in section.items()
               if name not in ALIASES}
    for alias, name in ALIASES.items():
        if alias in section and name not in renamed:
            renamed[name] = section[alias]
    return renamed


def _infinite(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) and math.isinf(value)


def _format(value: Any, metric: Metric, unit: bool = True) -> str:
    """A metric value as text: percent for shares, the metric's digits, its unit."""
    if _infinite(value):
        return ("\u221e" if value > 0 else "\u2212\u221e") + (f" {metric.unit}" if unit
                                                              and metric.unit else "")
    number = _number(value)
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


def _format_threshold(text: Any, metric: Metric) -> str:
    number = _threshold_number(text)
    if number is None:
        return html.escape(str(text))
    if metric.percent:
        return f"{number * 100:g} %"
    return f"{number:g}\u00b0" if metric.unit == "\u00b0" else (
        f"{number:g} {metric.unit}".strip())


def _pick(summary: Any, metric: Metric) -> tuple[float | None, str]:
    """(value, statistic it is): the metric's statistic, else the other one rather than
    nothing; an infinite value (PSNR of identical frames) is kept."""
    summary = _dict(summary)
    other = "mean" if metric.statistic == "median" else "median"
    for statistic in (metric.statistic, other):
        value = summary.get(statistic)
        if _number(value) is not None or _infinite(value):
            return float(value), statistic
    return None, metric.statistic


def _statistic(summary: Any, metric: Metric) -> float | None:
    """The finite value of :func:`_pick`, or None."""
    return _number(_pick(summary, metric)[0])


def _percent(share: Any) -> str:
    number = _number(share)
    return MISSING if number is None else f"{number * 100:.1f} %"


def _ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    names = [str(name) for name in names]
    known = [name for name in order if name in names]
    return known + sorted(name for name in names if name not in order)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# --------------------------------------------------------------------------------------
# Verdicts


@dataclass
class Verdict:
    question: str
    level: str  # "good", "fair", "poor", "unknown"
    answer: str
    lines: list[str]


NOT_MEASURED = ("visibility not measured; PSNR and SSIM do not see low-frequency changes on "
                "skin or flicker")


def _fidelity_verdict(fidelity: dict, visibility: dict | None = None) -> Verdict:
    """Decided by visibility (ColorVideoVDP's JOD beside the codec floor) when it was
    measured at native size; by PSNR and SSIM otherwise."""
    question = "Does it still look the same?"
    visibility = _dict(visibility)
    if _number(_part(visibility, "native").get("jod")) is not None:
        return _visibility_verdict(question, visibility, fidelity)
    checks = []
    lines = [NOT_MEASURED]
    for name, fair in (("psnr", 35.0), ("ssim", 0.95)):
        metric = METRICS[name]
        value, statistic = _pick(fidelity.get(name), metric)
        if value is None:
            continue
        level = "good" if value >= metric.threshold else ("fair" if value >= fair else "poor")
        checks.append(level)
        lines.append(f"{statistic} {metric.label} {_format(value, metric)} "
                     f"(\u2265 {_format_threshold(metric.threshold, metric)} looks identical)")
    if not checks:
        return Verdict(question, "unknown", "Unknown: fidelity was not measured", lines)
    level = "poor" if "poor" in checks else ("fair" if "fair" in checks else "good")
    answer = {"good": "Yes \u2014 the change is invisible",
              "fair": "Almost \u2014 differences may show on close inspection",
              "poor": "No \u2014 the change is likely visible"}[level]
    return Verdict(question, level, answer, lines)


def _part(visibility: dict, name: str) -> dict:
    """One measurement of the visibility result ("native" or "full_screen"); {} if absent."""
    return _dict(_dict(visibility).get(name))


def _rule(visibility: dict) -> dict[str, float]:
    """The rule's numbers as the result gives them, the usual ones where it gives none."""
    given = _dict(_dict(visibility).get("rule"))
    return {key: value if (value := _number(given.get(key))) is not None else default
            for key, default in VISIBILITY_RULE.items()}


def _jod(value: Any) -> str:
    return _format(value, JOD)


def _size_text(size: Any) -> str | None:
    size = _list(size)
    if len(size) == 2 and all(_number(value) for value in size):
        return f"{int(size[0])}\u00d7{int(size[1])}"
    return None


def _jod_check(part: dict, threshold: float, margin: float) -> bool | None:
    """Whether one measurement looks the same: its JOD at least ``threshold`` and at most
    ``margin`` below its codec floor (when the floor is known); None when not measured."""
    jod, floor = _number(part.get("jod")), _number(part.get("floor_jod"))
    if jod is None:
        return None
    return jod >= threshold and (floor is None or floor - jod <= margin)


def _visibility_level(visibility: dict) -> str:
    """"good" (looks the same by the rule), "fair" (native JOD at least :data:`FAIR_JOD`),
    "poor", or "unknown" (no native JOD)."""
    rule = _rule(visibility)
    native = _number(_part(visibility, "native").get("jod"))
    if native is None:
        return "unknown"
    checks = [_jod_check(_part(visibility, name), rule[key], rule["floor_margin"])
              for name, _, key in VISIBILITY_PARTS]
    if all(check is not False for check in checks):
        return "good"
    return "fair" if native >= FAIR_JOD else "poor"


def _visibility_verdict(question: str, visibility: dict, fidelity: dict) -> Verdict:
    rule = _rule(visibility)
    level = _visibility_level(visibility)
    lines = []
    for name, label, key in VISIBILITY_PARTS:
        part = _part(visibility, name)
        check = _jod_check(part, rule[key], rule["floor_margin"])
        size = _size_text(part.get("size"))
        where = f"{label} ({size})" if size and name == "full_screen" else label
        if check is None:
            lines.append(f"{label}: not measured")
            continue
        mark = "\u2713" if check else "\u2717"
        lines.append(f"{mark} video JOD {_jod(part.get('jod'))} at {where} (codec floor "
                     f"{_jod(part.get('floor_jod'))}; \u2265 {rule[key]:g} and within "
                     f"{rule['floor_margin']:g} of the floor looks the same)")
    secondary = []
    for name in ("psnr", "ssim"):
        metric_info = METRICS[name]
        value, statistic = _pick(fidelity.get(name), metric_info)
        if value is not None:
            secondary.append(f"{statistic} {metric_info.label} {_format(value, metric_info)}")
    if secondary:
        lines.append("secondary: " + ", ".join(secondary))
    own = _dict(visibility.get("verdict")).get("level")
    if isinstance(own, str) and own in ("good", "fair", "poor") and own != level:
        lines.append(f"note: the measurement's own verdict reads differently ({own})")
    answer = {"good": "Yes \u2014 viewers should not see the change",
              "fair": "Almost \u2014 some viewers may see it",
              "poor": "No \u2014 the change is visible"}[level]
    return Verdict(question, level, answer, lines)


def _criteria(efficacy: dict, floor: dict | None = None) -> tuple[int, int, list[str]]:
    """(criteria met, criteria measured, one line each) for the face readings broken."""
    met = measured = 0
    lines = []
    for name in CRITERIA:
        metric = METRICS[name]
        value = _statistic(efficacy.get(name), metric)
        if value is None:
            continue
        measured += 1
        floor_value = _statistic(_dict(floor).get(name), metric) if floor is not None else None
        broken = value >= metric.threshold and (
            floor_value is None or value >= FLOOR_FACTOR * floor_value)
        met += broken
        mark = "\u2713" if broken else "\u2717"
        lines.append(f"{mark} {metric.label}: {metric.statistic} {_format(value, metric)} "
                     f"(broken from {_format_threshold(metric.threshold, metric)})")
    return met, measured, lines


def _efficacy_level(met: int, measured: int) -> str:
    if measured == 0:
        return "unknown"
    return "good" if met >= 2 else ("fair" if met == 1 else "poor")


def _efficacy_verdict(efficacy: dict) -> Verdict:
    question = "Is my video protected?"
    met, measured, lines = _criteria(efficacy)
    level = _efficacy_level(met, measured)
    answer = {"good": "Yes \u2014 the face readings a deepfake needs are broken",
              "fair": "Partly \u2014 only one face reading is broken",
              "poor": "No \u2014 face models still read this video correctly",
              "unknown": "Unknown: efficacy was not measured"}[level]
    return Verdict(question, level, answer, lines)


def _robustness_verdict(robustness: list) -> Verdict:
    question = "Does the protection survive re-encoding and editing?"
    levels = []
    lines = []
    for entry in robustness:
        met, measured, _ = _criteria(_dict(entry.get("efficacy")), _dict(entry.get("floor")))
        level = _efficacy_level(met, measured)
        if level == "unknown":
            continue
        levels.append(level)
        word = {"good": "holds", "fair": "partly holds", "poor": "fails"}[level]
        lines.append(f"{_degradation_label(entry)}: {word}")
    if not levels:
        return Verdict(question, "unknown", "Not measured in this run", lines)
    holds = levels.count("good")
    if holds == len(levels):
        level, answer = "good", f"Yes \u2014 under all {len(levels)} degradations tested"
    elif holds or "fair" in levels:
        level, answer = "fair", f"Partly \u2014 fully under {holds} of {len(levels)} degradations"
    else:
        level, answer = "poor", f"No \u2014 under none of the {len(levels)} degradations"
    return Verdict(question, level, answer, lines)


def _degradation_label(entry: dict) -> str:
    if isinstance(entry.get("label"), str) and entry["label"]:
        return entry["label"]
    name = str(entry.get("degradation") or "unnamed")
    params = _dict(entry.get("params"))
    if not params:
        return name
    inner = ", ".join(f"{key}={value}" for key, value in params.items())
    return f"{name} ({inner})"


# --------------------------------------------------------------------------------------
# SVG plots


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _ticks(low: float, high: float, count: int = 5) -> tuple[float, float, list[float]]:
    """A rounded range covering ``[low, high]`` and the tick values inside it."""
    if not high > low:
        pad = abs(low) * 0.05 or 1.0
        low, high = low - pad, high + pad
    step = _nice_step(high - low, count)
    start = math.floor(low / step + 1e-9) * step
    stop = math.ceil(high / step - 1e-9) * step
    ticks = []
    value = start
    while value <= stop + step * 1e-6 and len(ticks) < 50:
        ticks.append(round(value, 12))
        value += step
    return start, stop, ticks


def _tick_text(value: float, step: float) -> str:
    if abs(value) < abs(step) * 1e-6:
        value = 0.0  # never "-0.00"
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    if step > 0 and abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1
    return f"{value:.{decimals}f}".replace("-", "\u2212")


def _share_items(summary: Any) -> list[tuple[str, Any, Any]]:
    """``[(direction, threshold, share)]`` of a summary: its ``share_above`` dict
    (threshold text -> share) and flat ``share_above_T`` / ``share_below_T`` keys."""
    summary = _dict(summary)
    items = [("above", threshold, share)
             for threshold, share in _dict(summary.get("share_above")).items()]
    for key, share in summary.items():
        for direction in ("above", "below"):
            prefix = f"share_{direction}_"
            if isinstance(key, str) and key.startswith(prefix) and len(key) > len(prefix):
                items.append((direction, key[len(prefix):], share))
    return items


def _threshold_number(text: Any) -> float | None:
    try:
        return _number(float(text))
    except (TypeError, ValueError):
        return None


def _thresholds(summary: Any, metric: Metric) -> list[float]:
    values = [number for _, text, _ in _share_items(summary)
              if (number := _threshold_number(text)) is not None]
    if metric.threshold is not None:
        values.append(metric.threshold)
    unique: list[float] = []
    for value in sorted(values):
        if not any(abs(value - seen) <= 1e-9 * max(1.0, abs(seen)) for seen in unique):
            unique.append(value)
    return unique


def _line_plot(name: str, values: Sequence[Any], frames: Sequence[Any],
               summary: Any, metric: Metric | None = None,
               floor: Sequence[Any] | None = None) -> str | None:
    """An SVG line plot of one metric over the frames; None when it has no finite value.

    ``metric`` overrides how ``name`` is described; ``floor`` (one value per frame, as
    ``values``) is drawn as a second, grey line underneath.
    """
    metric = metric or _metric(name)
    scale = 100.0 if metric.percent else 1.0
    values = list(values)
    floor = list(floor) if floor is not None and len(floor) == len(values) else []
    frames = [_number(frame) for frame in frames]
    if len(frames) == len(values) and all(frame is not None for frame in frames):
        xs = frames
    elif len(frames) == len(values) + 1 and all(frame is not None for frame in frames):
        xs = frames[1:]  # a metric between consecutive frames (flicker)
    else:
        xs = [float(index) for index in range(len(values))]
    points = [(x, _number(value)) for x, value in zip(xs, values)]
    finite = [(x, y * scale) for x, y in points if y is not None]
    if not finite:
        return None
    infinite = {x for x, value in zip(xs, values) if _infinite(value)}
    missing = [x for x, y in points if y is None and x not in infinite]
    lines = [value * scale for value in _thresholds(summary, metric)]
    floor_points = [(x, _number(value)) for x, value in zip(xs, floor)]

    width, height = 600, 270
    left, right, top, bottom = 62, 58, 16, 52
    plot_width, plot_height = width - left - right, height - top - bottom
    ys = [y for _, y in finite] + lines + [y * scale for _, y in floor_points if y is not None]
    low, high = min(ys), max(ys)
    if metric.kind == "efficacy" or metric.percent:
        low = min(low, 0.0)
    y_low, y_high, y_ticks = _ticks(low, high)
    x_all = [x for x, _ in points]
    x_low, x_high, x_ticks = _ticks(min(x_all), max(x_all), 6)
    x_low, x_high = min(x_all), max(x_all)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    x_ticks = [tick for tick in x_ticks if x_low <= tick <= x_high and tick == int(tick)]

    def px(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_width

    def py(y: float) -> float:
        return top + (y_high - y) / (y_high - y_low) * plot_height

    unit = "%" if metric.percent else metric.unit
    axis_unit = {"\u00b0": "degrees", "": metric.label}.get(unit, unit)
    title = f"{metric.label} per frame" + (f" ({unit})" if unit else "")
    parts = [f'<svg class="plot" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{_e(title)}</title>"]
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    for tick in y_ticks:
        y = py(tick)
        parts.append(f'<line class="grid" x1="{left}" x2="{left + plot_width}" '
                     f'y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{_tick_text(tick, y_step)}</text>')
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    for tick in x_ticks:
        x = px(tick)
        parts.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" '
                     f'y1="{top + plot_height}" y2="{top + plot_height + 5}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{top + plot_height + 20}" '
                     f'text-anchor="middle">{_tick_text(tick, max(x_step, 1))}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" '
                 f'y2="{top + plot_height}"/>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left + plot_width}" '
                 f'y1="{top + plot_height}" y2="{top + plot_height}"/>')
    for value in lines:
        y = py(value)
        label = _format_threshold(value / scale, metric)
        parts.append(f'<line class="threshold" x1="{left}" x2="{left + plot_width}" '
                     f'y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="threshold-label" x="{left + plot_width + 5}" '
                     f'y="{y + 4:.1f}">{label}</text>')
    def polylines(series: list, kind: str) -> list[list[str]]:
        segment: list[str] = []
        segments = []
        for x, y in series:
            if y is None:
                if segment:
                    segments.append(segment)
                segment = []
            else:
                segment.append(f"{px(x):.1f},{py(y * scale):.1f}")
        if segment:
            segments.append(segment)
        for segment in segments:
            if len(segment) > 1:
                parts.append(f'<polyline class="{kind}" points="{" ".join(segment)}"/>')
            else:
                x, y = segment[0].split(",")
                parts.append(f'<circle class="{kind} single" cx="{x}" cy="{y}" r="2"/>'
                             if kind != "series" else "")
        return segments

    polylines(floor_points, "series floor")
    segments = polylines(points, "series")
    if len(finite) <= 80 or any(len(segment) == 1 for segment in segments):
        radius = 2.6 if len(finite) <= 80 else 1.6
        for x, y in finite:
            parts.append(f'<circle class="dot" cx="{px(x):.1f}" cy="{py(y):.1f}" '
                         f'r="{radius}"/>')
    for x in missing:
        parts.append(f'<text class="missing" x="{px(x):.1f}" y="{top + plot_height - 3}" '
                     f'text-anchor="middle">\u00d7</text>')
    for x in sorted(infinite):
        parts.append(f'<text class="missing" x="{px(x):.1f}" y="{top + 12}" '
                     f'text-anchor="middle">\u221e</text>')
    parts.append(f'<text class="axis-label" x="{left + plot_width / 2:.1f}" '
                 f'y="{height - 5}" text-anchor="middle">frame</text>')
    parts.append(f'<text class="axis-label" transform="translate(14 {top + plot_height / 2:.1f}) '
                 f'rotate(-90)" text-anchor="middle">{_e(axis_unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _bar_chart(name: str, robustness: list, efficacy: dict) -> str | None:
    """Horizontal grouped bars: per degradation, the protected value beside its floor."""
    metric = _metric(name)
    rows = [("as evaluated (no extra degradation)",
             _statistic(efficacy.get(name), metric), None, False)]
    for entry in robustness:
        rows.append((_degradation_label(entry),
                     _statistic(_dict(entry.get("efficacy")).get(name), metric),
                     _statistic(_dict(entry.get("floor")).get(name), metric), True))
    if all(value is None and floor is None for _, value, floor, _ in rows[1:]):
        return None
    return _bars(metric, rows, f"{metric.label} under degradations ({metric.statistic})")


def _bars(metric: Metric, rows: list, title: str) -> str:
    """Horizontal bars, per row ``(label, value, floor, has_floor)`` the value and, when
    ``has_floor``, its floor below it; the metric's threshold as a dashed line."""
    scale = 100.0 if metric.percent else 1.0
    values = [value * scale for _, value, floor, _ in rows if value is not None]
    values += [floor * scale for _, _, floor, _ in rows if floor is not None]
    if metric.threshold is not None:
        values.append(metric.threshold * scale)
    low, high = min(values + [0.0]), max(values + [0.0])
    if high == low:
        high = 1.0
    x_low, x_high, x_ticks = _ticks(low, high, 5)

    width = 600
    left, right, top = 12, 70, 8
    bar, gap, label_height, row_gap = 16, 3, 24, 12
    row_height = label_height + 2 * bar + gap + row_gap
    axis_top = top + row_height * len(rows)
    height = axis_top + 46
    plot_width = width - left - right

    def px(value: float) -> float:
        return left + (value - x_low) / (x_high - x_low) * plot_width

    parts = [f'<svg class="plot bars" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{_e(title)}</title>"]
    step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    for tick in x_ticks:
        x = px(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
                     f'y2="{axis_top}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{axis_top + 19}" '
                     f'text-anchor="middle">{_tick_text(tick, step)}</text>')
    unit = "%" if metric.percent else metric.unit
    parts.append(f'<text class="axis-label" x="{left + plot_width / 2:.1f}" '
                 f'y="{axis_top + 41}" text-anchor="middle">{_e(metric.label)}'
                 f'{" (" + _e(unit) + ")" if unit else ""}</text>')
    for row, (label, value, floor, has_floor) in enumerate(rows):
        y = top + row * row_height
        parts.append(f'<text class="bar-label" x="{left + 4}" y="{y + 17}">{_e(label)}</text>')
        bars = [("protected", value, y + label_height)]
        if has_floor:
            bars.append(("floor", floor, y + label_height + bar + gap))
        for kind, number, bar_y in bars:
            if number is None:
                parts.append(f'<text class="bar-value" x="{left + 4}" y="{bar_y + bar - 4}">'
                             f'{MISSING} not measured</text>')
                continue
            start, end = sorted((px(0.0), px(number * scale)))
            parts.append(f'<rect class="bar {kind}" x="{start:.1f}" y="{bar_y}" '
                         f'width="{max(end - start, 1.0):.1f}" height="{bar}"/>')
            parts.append(f'<text class="bar-value" x="{end + 4:.1f}" y="{bar_y + bar - 4}">'
                         f'{_format(number, metric)}</text>')
    if metric.threshold is not None:
        x = px(metric.threshold * scale)
        parts.append(f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
                     f'y2="{axis_top}"/>')
    parts.append(f'<line class="axis" x1="{px(0.0):.1f}" x2="{px(0.0):.1f}" y1="{top}" '
                 f'y2="{axis_top}"/>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left + plot_width}" y1="{axis_top}" '
                 f'y2="{axis_top}"/>')
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------------------
# Pictures


def _check_frame(frame: Any, what: str) -> np.ndarray | None:
    if frame is None:
        return None
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"{what}: expected an (H, W, 3) uint8 RGB frame, got "
                         f"{frame.shape} {frame.dtype}")
    return frame


def _display_size(width: int, height: int) -> tuple[int, int]:
    factor = min(1.0, PICTURE_SIDE / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def _shrink(frame: np.ndarray, resample=Image.LANCZOS) -> Image.Image:
    image = Image.fromarray(frame)
    size = _display_size(image.width, image.height)
    return image if size == image.size else image.resize(size, resample)


def _data_uri(image: Image.Image, lossless: bool = False) -> str:
    """The picture as a data URI: JPEG, or PNG when ``lossless``."""
    buffer = io.BytesIO()
    if lossless:
        image.convert("RGB").save(buffer, "PNG")
        kind = "png"
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
        kind = "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _picture(value: Any) -> np.ndarray | None:
    """An optional picture as ``(H, W, 3)`` uint8 RGB: grey ``(H, W)`` is repeated, an alpha
    channel dropped, floats read in [0, 1] (or [0, 255] when larger); None when unusable."""
    if value is None:
        return None
    try:
        picture = np.asarray(value)
        if picture.ndim == 2:
            picture = np.repeat(picture[..., None], 3, axis=2)
        if picture.ndim != 3 or picture.shape[2] not in (3, 4) or 0 in picture.shape[:2]:
            return None
        picture = picture[..., :3]
        if picture.dtype != np.uint8:
            picture = np.nan_to_num(picture.astype(np.float64))
            if picture.max(initial=0.0) <= 1.0:
                picture = picture * 255.0
            picture = np.clip(picture + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(picture)
    except (TypeError, ValueError):
        return None


def _face_region(reading: Any, height: int, width: int, widest: int = ZOOM_SIDE
                 ) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` in frame pixels around the reading's face points (else its box),
    with a margin, at most ``widest`` wide and :data:`ZOOM_SIDE` high, centred on the face
    and inside the frame; None without a face."""
    reading = _dict(reading)
    points = _points(reading.get("landmarks"))
    if points is not None and len(points):
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
    else:
        box = _box(reading.get("box"))
        if box is None:
            return None
        x0, y0, x1, y1 = box
    margin = 0.15 * max(x1 - x0, y1 - y0)
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    face_width, face_height = x1 - x0 + 2 * margin, y1 - y0 + 2 * margin
    # a face larger than the crop may be: its middle, in the face's proportions
    factor = min(1.0, widest / max(face_width, 1.0), ZOOM_SIDE / max(face_height, 1.0))
    crop_width = int(min(width, round(face_width * factor)))
    crop_height = int(min(height, round(face_height * factor)))
    if crop_width < 16 or crop_height < 16:
        return None
    left = int(min(max(round(centre_x - crop_width / 2), 0), width - crop_width))
    top = int(min(max(round(centre_y - crop_height / 2), 0), height - crop_height))
    return left, top, left + crop_width, top + crop_height


AB_HINT = "Hover to see the original; click to pin it, click again to switch."


def _ab_pair(original: Image.Image, protected: Image.Image, width: int, height: int,
             what: str, kind: str = "", region: str = "") -> str:
    """Original and protected stacked in the same place (the protected on show), with a
    label saying which one is shown. Hovering shows the original; a click pins the
    original, the next clicks switch (the page's script). ``width`` x ``height`` is the
    size in CSS pixels; ``region`` is extra HTML drawn over the pictures."""
    return (f'<div class="ab{(" " + kind) if kind else ""}" tabindex="0" role="button" '
            f'aria-pressed="false" aria-label="{_e(what)}: original or protected, click to '
            f'switch" title="{_e(AB_HINT)}">'
            f'<img class="ab-protected" src="{_data_uri(protected, lossless=True)}" '
            f'width="{width}" height="{height}" alt="protected {_e(what)}">'
            f'<img class="ab-original" src="{_data_uri(original, lossless=True)}" '
            f'width="{width}" height="{height}" alt="original {_e(what)}">{region}'
            '<span class="ab-label"><span class="when-protected">protected</span>'
            '<span class="when-original">original</span></span></div>')


def _ab_section(original: np.ndarray, protected: np.ndarray, reading: Any,
                index_text: str) -> str:
    """The frame's original / protected pair at 1x (shrunk to :data:`PICTURE_SIDE` when
    larger, the scale said) and a close-up of the face at :data:`ZOOM` x."""
    height, width = original.shape[:2]
    shown_original, shown_protected = _shrink(original), _shrink(protected)
    shown_width, shown_height = shown_protected.size
    # the close-up fits beside the frame where the page is wide enough
    widest = max(160, (AB_ROOM - shown_width) // ZOOM)
    region = _face_region(reading, height, width, widest)
    outline = ""
    if region is not None:
        x0, y0, x1, y1 = region
        outline = (f'<span class="ab-region" style="left:{100 * x0 / width:.2f}%;'
                   f"top:{100 * y0 / height:.2f}%;width:{100 * (x1 - x0) / width:.2f}%;"
                   f'height:{100 * (y1 - y0) / height:.2f}%"></span>')
    if (shown_width, shown_height) == (width, height):
        scale = (f"At 1\u00d7: {width}\u00d7{height}, one frame pixel per CSS pixel "
                 "(on a narrower window the browser shrinks it).")
    else:
        scale = (f"At {100 * shown_width / width:.0f} %: the {width}\u00d7{height} frame "
                 f"shrunk to {shown_width}\u00d7{shown_height} for this page"
                 + ("; the close-up beside it is at full resolution." if region else "."))
    pair = _ab_pair(shown_original, shown_protected, shown_width, shown_height,
                    f"frame {index_text}", region=outline)
    items = [f'<div class="ab-figure">{pair}<p class="ab-caption">Original and protected in '
             f"the same place. {_e(scale)} {_e(AB_HINT)}</p></div>"]
    if region is not None:
        x0, y0, x1, y1 = region
        crop_original = Image.fromarray(original[y0:y1, x0:x1])
        crop_protected = Image.fromarray(protected[y0:y1, x0:x1])
        items.append(
            '<div class="ab-figure">'
            + _ab_pair(crop_original, crop_protected, ZOOM * (x1 - x0), ZOOM * (y1 - y0),
                       f"face of frame {index_text} at {ZOOM}x", kind="zoom")
            + f'<p class="ab-caption">The face at {ZOOM}\u00d7: {x1 - x0}\u00d7{y1 - y0} '
            f"frame pixels (dashed on the left), each drawn as {ZOOM}\u00d7{ZOOM} "
            "screen pixels. Switches the same way.</p></div>")
    return f'<div class="ab-row">{"".join(items)}</div>'


def _difference(original: np.ndarray, protected: np.ndarray) -> np.ndarray:
    return np.abs(protected.astype(np.int16) - original.astype(np.int16)).astype(np.uint8)


def _amplification(views: list) -> int:
    """One factor for every difference picture: the 99.5th percentile maps to ~200."""
    levels = []
    for view in views:
        _, original, protected = _view_frames(view)
        if original is not None and protected is not None and original.shape == protected.shape:
            levels.append(float(np.percentile(_difference(original, protected), 99.5)))
    level = max(levels, default=0.0)
    if level <= 0:
        return 10
    return int(min(50, max(1, round(200 / level))))


def _points(landmarks: Any) -> np.ndarray | None:
    if landmarks is None:
        return None
    try:
        points = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if points.ndim != 2 or points.shape[1] < 2 or len(points) == 0:
        return None
    points = points[:, :2]
    return points[np.isfinite(points).all(axis=1)]


def _box(box: Any) -> tuple[float, float, float, float] | None:
    if box is None:
        return None
    try:
        values = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if values.size != 4 or not np.isfinite(values).all():
        return None
    x0, y0, x1, y1 = values.tolist()
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _draw_reading(frame: np.ndarray, reading: Any, reference: Any,
                  colour: tuple[int, int, int]) -> tuple[Image.Image, list[str]]:
    """The frame at display size with the reading's mask, box and points drawn on it.

    ``reference`` (another reading, or None) has its points drawn underneath in the
    original's colour, so that a shift shows. Returns the picture and what was drawn.
    """
    reading = _dict(reading)
    image = _shrink(frame)
    factor = image.width / frame.shape[1]
    drawn = []
    mask = reading.get("mask")
    if mask is not None:
        try:
            mask = np.asarray(mask, dtype=np.float32)
        except (TypeError, ValueError):
            mask = None
    if mask is not None and mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask is not None and mask.ndim == 2 and mask.size:
        mask = np.nan_to_num(np.clip(mask, 0.0, 1.0))
        alpha = Image.fromarray(mask).resize(image.size, Image.BILINEAR)
        alpha = np.clip(np.asarray(alpha, dtype=np.float32), 0.0, 1.0)[..., None] * 0.45
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels * (1 - alpha) + np.asarray(MASK_COLOUR, np.float32) * alpha
        image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
        drawn.append("mask")
    draw = ImageDraw.Draw(image)
    box = _box(reading.get("box"))
    if box is not None:
        line = max(2, round(image.width / 320))
        draw.rectangle([value * factor for value in box], outline=BOX_COLOUR, width=line)
        drawn.append("box")
    radius = max(1.2, image.width / 400)
    points = _points(reading.get("landmarks"))
    reference_points = _points(_dict(reference).get("landmarks")) if reference else None
    if reference_points is not None and points is not None and len(points):
        for x, y in reference_points * factor:
            draw.ellipse([x - radius * 0.8, y - radius * 0.8, x + radius * 0.8,
                          y + radius * 0.8], fill=ORIGINAL_POINTS)
    if points is not None and len(points):
        for x, y in points * factor:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
        drawn.append(f"{len(points)} points")
    return image, drawn


def _view_frames(view: Any) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """(frame index as text, original, protected) of a view, the frames checked."""
    index = _number(getattr(view, "index", None))
    index_text = str(int(index)) if index is not None else MISSING
    original = _check_frame(getattr(view, "original", None), f"view {index_text}: original")
    protected = _check_frame(getattr(view, "protected", None),
                             f"view {index_text}: protected")
    return index_text, original, protected


def _view_section(view: Any, amplification: int) -> str:
    index_text, original, protected = _view_frames(view)
    original_reading = _dict(getattr(view, "original_reading", None))
    protected_reading = _dict(getattr(view, "protected_reading", None))
    metrics = _canonical(getattr(view, "metrics", None))
    visibility_map = _picture(getattr(view, "visibility_map", None))
    frame_jod = getattr(view, "jod", None)
    why = getattr(view, "why", None)
    heading = f"Frame {index_text}" + (f" ({why})" if isinstance(why, str) and why else "")

    def figure(uri: str | None, caption: str, alt: str) -> str:
        if uri is None:
            return (f'<figure><div class="absent">not available</div>'
                    f"<figcaption>{caption}</figcaption></figure>")
        return (f'<figure><img src="{uri}" alt="{_e(alt)}" loading="lazy">'
                f"<figcaption>{caption}</figcaption></figure>")

    same = (original is not None and protected is not None
            and original.shape == protected.shape)
    if same:
        top = _ab_section(original, protected, original_reading, index_text)
    else:  # no pair to switch between: each frame on its own
        top = ('<div class="pictures two">' + "".join((
            figure(_data_uri(_shrink(original)) if original is not None else None,
                   "Original", f"original frame {index_text}"),
            figure(_data_uri(_shrink(protected)) if protected is not None else None,
                   "Protected", f"protected frame {index_text}"))) + "</div>")

    pictures = []
    if same:
        difference = _difference(original, protected)
        largest = int(difference.max())
        amplified = np.clip(difference.astype(np.int32) * amplification, 0, 255).astype(np.uint8)
        pictures.append(figure(
            _data_uri(_shrink(amplified, Image.BOX)),
            f"Difference |protected \u2212 original| \u00d7 {amplification} "
            f"(largest change {largest} of 255)",
            f"amplified difference of frame {index_text}"))
    else:
        reason = "frames missing" if original is None or protected is None else (
            f"sizes differ: {original.shape[1]}\u00d7{original.shape[0]} and "
            f"{protected.shape[1]}\u00d7{protected.shape[0]}")
        pictures.append(figure(None, f"Difference ({_e(reason)})", ""))
    if visibility_map is not None:
        pictures.append(figure(
            _data_uri(_shrink(visibility_map)),
            "Where a viewer would see the change (ColorVideoVDP), frame JOD "
            f"{_e(_jod(frame_jod))}",
            f"where a viewer would see the change in frame {index_text}"))

    readings = []
    for label, frame, reading, reference, colour in (
            ("Original", original, original_reading, None, ORIGINAL_POINTS),
            ("Protected", protected, protected_reading, original_reading, PROTECTED_POINTS)):
        if frame is None:
            readings.append(figure(None, f"{label}: what the face models read", ""))
            continue
        image, drawn = _draw_reading(frame, reading, reference, colour)
        found = "no face found" if not any(
            item.endswith("points") or item == "box" for item in drawn) else ", ".join(drawn)
        readings.append(figure(_data_uri(image),
                               f"{label}: what the face models read ({_e(found)})",
                               f"face readings on the {label.lower()} frame {index_text}"))

    caption_items = []
    if _number(frame_jod) is not None:
        caption_items.append(f"<span><b>Frame JOD</b> {_e(_jod(frame_jod))}</span>")
    for name in _ordered(metrics, FIDELITY_ORDER + EFFICACY_ORDER):
        metric = _metric(name)
        caption_items.append(f"<span><b>{_e(metric.label)}</b> "
                             f"{_e(_format(metrics[name], metric))}</span>")
    caption = " ".join(caption_items) or "<span>no metrics for this frame</span>"
    shape = original.shape if original is not None else (
        protected.shape if protected is not None else (0, 0))
    if shape[0] > shape[1]:  # portrait: the narrow pictures in one row
        grids = f'<div class="pictures five">{"".join(pictures + readings)}</div>'
    else:
        grids = (f'<div class="pictures two">{"".join(pictures)}</div>'
                 f'<div class="pictures two">{"".join(readings)}</div>')
    return (f'<section class="view"><h3>{_e(heading)}</h3>'
            f'<p class="view-metrics">{caption}</p>{top}{grids}</section>')


# --------------------------------------------------------------------------------------
# Page sections


def _verdict_html(verdict: Verdict) -> str:
    items = "".join(f"<li>{_e(line)}</li>" for line in verdict.lines)
    return (f'<div class="verdict {verdict.level}"><div class="question">'
            f"{_e(verdict.question)}</div><div class=\"answer\">{_e(verdict.answer)}</div>"
            f'{"<ul>" + items + "</ul>" if items else ""}</div>')


def _shares(summary: Any, metric: Metric, separator: str = "; ") -> str:
    """The summary's shares of frames above (or below) thresholds, as HTML."""
    return separator.join(
        f'<span class="share">{_percent(share)} of frames {direction} '
        f"{_format_threshold(threshold, metric)}</span>"
        for direction, threshold, share in _share_items(summary))


def _key_figure(name: str, summary: Any, parser: str | None, secondary: bool = False) -> str:
    """One figure's card; ``secondary`` marks a figure that does not decide the verdict."""
    metric = _metric(name)
    summary_dict = _dict(summary)
    value, statistic = _pick(summary, metric)
    status = ""
    if value is not None and metric.threshold is not None:
        passed = value >= metric.threshold
        if metric.kind == "fidelity":
            word = "looks identical" if passed else "may be visible"
        else:
            word = "broken" if passed else "still readable"
        mark = "\u2713" if passed else "\u2717"
        status = (f'<span class="status {"pass" if passed else "fail"}">'
                  f"{mark} {word}</span>")
    shares = _shares(summary, metric)
    mean = ""
    if statistic == "median" and _number(summary_dict.get("mean")) is not None:
        mean = f"mean {_format(summary_dict.get('mean'), metric)}"
    details = "; ".join(part for part in (mean, shares) if part)
    shares_html = f'<div class="shares">{details}</div>' if details else ""
    parser_line = (f'<p class="parser">Measured with: {_e(parser)}</p>'
                   if name == "parse_flip" and parser else "")
    tag = ' <span class="tag">secondary</span>' if secondary else ""
    return (f'<div class="figure-card{" secondary" if secondary else ""}">'
            f'<div class="label">{_e(metric.label)}{tag}</div>'
            f'<div class="value">{_e(_format(value, metric))}</div>'
            f'<div class="statistic">{_e(statistic)} over frames {status}</div>'
            f"{shares_html}"
            f"<p>{_e(metric.explanation)}</p>{parser_line}</div>")


def _per_frame_numbers(part: dict, key: str = "per_frame") -> list[float]:
    return [number for value in _list(part.get(key)) if (number := _number(value)) is not None]


def _jod_card(visibility: dict, name: str, label: str, key: str) -> str:
    """The key-figure card of one visibility measurement: the video JOD, its codec floor
    beside it, whether it looks the same by the rule, and the per-frame range."""
    rule = _rule(visibility)
    part = _part(visibility, name)
    jod, floor = _number(part.get("jod")), _number(part.get("floor_jod"))
    check = _jod_check(part, rule[key], rule["floor_margin"])
    status = ""
    if check is not None:
        if check:
            word = "looks the same"
        elif jod < rule[key]:
            word = f"below {rule[key]:g}: may be visible"
        else:
            word = f"{floor - jod:.2f} below the codec floor: may be visible"
        mark = "\u2713" if check else "\u2717"
        status = (f'<span class="status {"pass" if check else "fail"}">'
                  f"{mark} {_e(word)}</span>")
    per_frame = _per_frame_numbers(part)
    size = _size_text(part.get("size"))
    where = {"native": "The video as published",
             "full_screen": "The video shown full screen"}[name]
    details = []
    if per_frame:
        details.append(f"per frame: min {_jod(min(per_frame))}, median "
                       f"{_jod(float(np.median(per_frame)))}")
    count = len(_list(part.get("frames"))) or len(per_frame)
    if count:
        details.append(f"{count} frames")
    if jod is None:
        details.append("not measured in this run" if not part else "no value measured")
    floor_label = _dict(visibility.get("floor")).get("label")
    explanation = (where + (f" ({size})" if size else "") + ". 10 means "
                   "no visible difference; one JOD lower, 75 % of viewers would pick the "
                   "original. The codec floor is "
                   + (f"{floor_label}" if floor_label else
                      "the original re-encoded with the same settings")
                   + f": what publishing alone costs. Looks the same from {rule[key]:g}, "
                   f"within {rule['floor_margin']:g} of the floor.")
    return (f'<div class="figure-card lead"><div class="label">Video JOD at {_e(label)}'
            f"</div><div class=\"value\">{_e(_jod(jod))}<span class=\"floor-value\">"
            f"codec floor {_e(_jod(floor))}</span></div>"
            + (f'<div class="statistic">whole measured video {status}</div>'
               if jod is not None else "")
            + f'<div class="shares">{_e("; ".join(details)) or MISSING}</div>'
            f"<p>{_e(explanation)}</p></div>")


def _visibility_section(visibility: dict, fidelity: dict) -> str:
    """How visible the change is: the JOD table (native size, full screen) beside the codec
    floor and what was measured, then PSNR and SSIM as secondary figures."""
    secondary = ("<h3>Secondary figures: PSNR, SSIM and pixel changes</h3>"
                 "<p>PSNR and SSIM compare pixels; they do not see low-frequency changes on "
                 "skin or flicker, which viewers notice first.</p>"
                 f"{_summary_table(fidelity, FIDELITY_ORDER)}")
    if not visibility:
        return ("<p>Visibility (ColorVideoVDP's JOD beside the codec floor) was not "
                "measured in this run: the verdict above rests on PSNR and SSIM.</p>"
                + secondary)
    rule = _rule(visibility)
    floor = _dict(visibility.get("floor"))
    seconds = _dict(visibility.get("seconds_per_frame"))
    rows = []
    for name, label, key in VISIBILITY_PARTS:
        part = _part(visibility, name)
        jod, floor_jod = _number(part.get("jod")), _number(part.get("floor_jod"))
        per_frame = _per_frame_numbers(part)
        check = _jod_check(part, rule[key], rule["floor_margin"])
        level, word = {True: ("good", "yes"), False: ("poor", "no"),
                       None: ("unknown", "not measured")}[check]
        difference = (_format(floor_jod - jod, JOD) if jod is not None
                      and floor_jod is not None else MISSING)
        count = len(_list(part.get("frames"))) or len(per_frame)
        cost = _number(seconds.get(name))
        rows.append(
            f"<tr><td>{_e(label)}<div class=\"raw\">{_e(_size_text(part.get('size')) or MISSING)}"
            f'</div></td><td class="num">{_e(_jod(jod))}</td>'
            f'<td class="num">{_e(_jod(floor_jod))}</td><td class="num">{_e(difference)}</td>'
            f'<td class="num">{_e(_jod(min(per_frame)) if per_frame else MISSING)}</td>'
            f'<td class="num">{_e(_jod(float(np.median(per_frame))) if per_frame else MISSING)}'
            f'</td><td class="num">{count or MISSING}</td>'
            f'<td class="num">{f"{cost:.2f} s" if cost is not None else MISSING}</td>'
            f'<td><span class="level {level}">{word}</span></td></tr>')
    table = ('<div class="table-wrap"><table class="visibility"><thead><tr><th></th>'
             '<th class="num">protected JOD</th><th class="num">codec floor JOD</th>'
             '<th class="num">difference</th><th class="num">per-frame min</th>'
             '<th class="num">per-frame median</th><th class="num">frames</th>'
             '<th class="num">cost per frame</th><th>looks the same</th></tr></thead>'
             f'<tbody>{"".join(rows)}</tbody></table></div>'
             '<p class="legend">Protected JOD: the protected video\'s JOD as a whole; '
             "difference: codec floor \u2212 protected, what the protection costs beyond "
             "encoding; per-frame: each frame's JOD; cost: ColorVideoVDP's seconds per "
             "frame, protected and floor together.</p>")
    metric = visibility.get("metric") or "ColorVideoVDP"
    display = visibility.get("display")
    description = visibility.get("display_description")
    display_text = (f"{description} ({display})" if description and display
                    and str(display) not in str(description)
                    else str(description or display or MISSING))
    floor_text = str(floor.get("label") or MISSING) + (
        f" ({floor['source']})" if floor.get("source") else "")
    stride, segment = _number(visibility.get("stride")), _number(visibility.get("segment_frames"))
    sampling = (f"; at native size one run of {int(segment)} frames in every {int(stride)}"
                if stride and stride > 1 and segment else "")
    intro = (f"<p>{_e(metric)} predicts how different the protected video looks from the "
             "original, in JOD: 10 means no visible difference; one JOD lower means 75 % of "
             "viewers would pick the original side by side. The <b>codec floor</b> is the "
             "same prediction for the original re-encoded with the same encoder settings: "
             "what publishing alone costs, which no protection can beat. The video looks the "
             f"same when its JOD is at least {rule['native_jod']:g} at native size and "
             f"{rule['full_screen_jod']:g} at full screen, each within "
             f"{rule['floor_margin']:g} of its floor.</p>")
    facts = ('<table class="settings">'
             f"<tr><th>codec floor</th><td>{_e(floor_text)}</td></tr>"
             f"<tr><th>display model</th><td>{_e(display_text)}</td></tr>"
             f"<tr><th>metric</th><td>{_e(metric)}</td></tr>"
             "<tr><th>frames measured</th><td>" + _e(
                 ", ".join(f"{label}: {len(_list(_part(visibility, name).get('frames')))}"
                           for name, label, _ in VISIBILITY_PARTS
                           if _part(visibility, name)) or MISSING) + _e(sampling)
             + "</td></tr></table>")
    return f"{intro}{table}{facts}{secondary}"


def _jod_plots(visibility: dict) -> list[str]:
    """One chart per visibility measurement: each frame's JOD, the codec floor's beside it
    and the rule's threshold."""
    rule = _rule(visibility)
    charts = []
    for name, label, key in VISIBILITY_PARTS:
        part = _part(visibility, name)
        values = _list(part.get("per_frame"))
        if not values:
            continue
        metric = replace(JOD, threshold=rule[key])
        svg = _line_plot("jod", values, _list(part.get("frames")), None, metric=metric,
                         floor=_list(part.get("floor_per_frame")))
        size = _size_text(part.get("size"))
        content = svg if svg is not None else f"<p>{MISSING} no value measured</p>"
        charts.append(
            f'<div class="chart"><h3>Video JOD at {_e(label)}'
            + (f" ({_e(size)})" if size else "") + "</h3>"
            '<p class="explain">Each frame\'s JOD (10: no visible difference) '
            '<span class="swatch protected"></span>protected '
            '<span class="swatch floor"></span>codec floor '
            f'<span class="swatch threshold"></span>{rule[key]:g}</p>{content}</div>')
    return charts


def _summary_table(section: dict, order: Sequence[str]) -> str:
    rows = []
    for name in _ordered(section, order):
        metric = _metric(name)
        summary = _dict(section.get(name))
        rows.append(
            f"<tr><td>{_e(metric.label)}<div class=\"raw\">{_e(name)}</div></td>"
            f'<td class="num">{_e(_format(summary.get("median"), metric))}</td>'
            f'<td class="num">{_e(_format(summary.get("mean"), metric))}</td>'
            f"<td>{_shares(summary, metric, '<br>') or MISSING}</td></tr>")
    if not rows:
        return f"<p>{MISSING} not measured</p>"
    return ('<div class="table-wrap"><table><thead><tr><th>metric</th><th class="num">median'
            '</th><th class="num">mean</th><th>frames beyond thresholds</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _inputs_table(inputs: dict) -> str:
    rows = []
    for role in ("original", "protected"):
        item = _dict(inputs.get(role))
        width, height = _number(item.get("width")), _number(item.get("height"))
        size = f"{int(width)}\u00d7{int(height)}" if width and height else MISSING
        frames = _number(item.get("frames"))
        fps = _number(item.get("fps"))
        rows.append(f"<tr><th>{role}</th><td class=\"path\">{_e(item.get('path') or MISSING)}"
                    f"</td><td>{size}</td>"
                    f"<td class=\"num\">{int(frames) if frames is not None else MISSING}</td>"
                    f"<td class=\"num\">{_fps_text(fps)}</td>"
                    "</tr>")
    return ('<div class="table-wrap"><table class="inputs"><thead><tr><th></th><th>file</th>'
            '<th>size</th><th class="num">frames</th><th class="num">fps</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _fps_text(fps: float | None) -> str:
    return MISSING if fps is None else f"{fps:.3f}".rstrip("0").rstrip(".")


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        rows = []
        for key, item in value.items():
            rows.extend(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return rows or [(prefix, "{}")]
    if isinstance(value, float) and not math.isfinite(value):
        return [(prefix, MISSING if math.isnan(value) else str(value))]
    if value is None:
        return [(prefix, MISSING)]
    if isinstance(value, (list, tuple)):
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = str(value)
    else:
        text = str(value)
    return [(prefix, text)]


def _key_value_table(title: str, value: Any) -> str:
    rows = "".join(f"<tr><th>{_e(key)}</th><td>{_e(text)}</td></tr>"
                   for key, text in _flatten(_dict(value)))
    body = (f'<div class="table-wrap"><table class="settings">{rows}</table></div>'
            if rows else f"<p>{MISSING}</p>")
    return f"<h3>{_e(title)}</h3>{body}"


def _robustness_section(robustness: list, efficacy: dict) -> str:
    intro = ("<p>Each degradation is applied to the protected video and, separately, to the "
             "original. The <b>floor</b> is what the degradation alone does to the readings of "
             "the unprotected original; protection holds when the protected value stays above "
             f"the rule of thumb and at least {FLOOR_FACTOR:g}\u00d7 the floor.</p>"
             '<p class="legend"><span class="swatch protected"></span>protected '
             '<span class="swatch floor"></span>floor (original, same degradation) '
             '<span class="swatch threshold"></span>rule of thumb</p>')
    if not robustness:
        return ("<p>Robustness was not measured in this run: the figures above hold for the "
                "protected file exactly as given.</p>")
    names = set(ROBUSTNESS_ALWAYS)
    for entry in robustness:
        names.update(_dict(entry.get("efficacy")))
        names.update(_dict(entry.get("floor")))
    charts = []
    for name in _ordered(names, EFFICACY_ORDER):
        svg = _bar_chart(name, robustness, efficacy)
        metric = _metric(name)
        if svg is None:
            charts.append(f'<div class="chart"><h3>{_e(metric.label)}</h3>'
                          f"<p>{MISSING} not measured under any degradation</p></div>")
        else:
            charts.append(f'<div class="chart"><h3>{_e(metric.label)}</h3>{svg}</div>')
    rows = []
    for entry in robustness:
        met, measured, _ = _criteria(_dict(entry.get("efficacy")), _dict(entry.get("floor")))
        level = _efficacy_level(met, measured)
        word = {"good": "holds", "fair": "partly", "poor": "fails",
                "unknown": MISSING}[level]
        cells = []
        for name in CRITERIA:
            metric = METRICS[name]
            value = _statistic(_dict(entry.get("efficacy")).get(name), metric)
            floor = _statistic(_dict(entry.get("floor")).get(name), metric)
            cells.append(f'<td class="num">{_e(_format(value, metric))}'
                         f'<div class="raw">floor {_e(_format(floor, metric))}</div></td>')
        rows.append(f"<tr><td>{_e(_degradation_label(entry))}</td>{''.join(cells)}"
                    f'<td><span class="level {level}">{word}</span></td></tr>')
    header = "".join(f'<th class="num">{_e(METRICS[name].label)}</th>' for name in CRITERIA)
    table = ('<div class="table-wrap"><table><thead><tr><th>degradation</th>'
             f'{header}<th>protection</th></tr></thead><tbody>{"".join(rows)}</tbody>'
             "</table></div>")
    return f'{intro}<div class="plots">{"".join(charts)}</div>{table}'


def _transfer_section(transfer: dict, frames: list) -> str:
    """Other families' readers (``eval --transfer``): bars of each reading beside its floor,
    a table and one plot per reading over the frames."""
    efficacy = _dict(transfer.get("efficacy"))
    floor = _dict(transfer.get("floor"))
    per_frame = _dict(transfer.get("per_frame"))
    floor_label = str(transfer.get("floor_label") or "re-encoding")
    intro = ("<p>Face readers of other families read both videos on their own, each with its "
             "own face detection, as someone training a deepfake with other tools would: "
             "MTCNN (5 points and whether it finds the face) and face-api's two 68-point "
             "networks in MTCNN's box. Where MTCNN loses the face in a protected frame, they "
             "read in the original's box. The <b>floor</b> is the same reading of the "
             f"original after {_e(floor_label)} alone. A reading counts as moved when it is "
             f"above the rule of thumb and at least {FLOOR_FACTOR:g}\u00d7 its floor.</p>"
             '<p class="legend"><span class="swatch protected"></span>protected '
             f'<span class="swatch floor"></span>floor (original after {_e(floor_label)}) '
             '<span class="swatch threshold"></span>rule of thumb</p>')
    names = _ordered(set(efficacy) | set(floor), TRANSFER_ORDER)
    if not names:
        return f"{intro}<p>{MISSING} no transfer reading</p>"
    charts = []
    landmark_rows = [(_metric(name).label.replace(" landmark shift (NME)", ""),
                      _statistic(efficacy.get(name), _metric(name)),
                      _statistic(floor.get(name), _metric(name)), True)
                     for name in names if name.endswith("_nme")]
    if landmark_rows:
        metric = Metric("Landmark shift (NME)", "", digits=3, threshold=TRANSFER_NME)
        charts.append('<div class="chart"><h3>Landmark shift of the other readers</h3>'
                      + _bars(metric, landmark_rows, "Landmark shift of the other readers "
                              "(median), beside the floor") + "</div>")
    for name in names:
        if name.endswith("_nme"):
            continue
        metric = _metric(name)
        rows = [(metric.label, _statistic(efficacy.get(name), metric),
                 _statistic(floor.get(name), metric), True)]
        charts.append(f'<div class="chart"><h3>{_e(metric.label)}</h3>'
                      + _bars(metric, rows, f"{metric.label} ({metric.statistic}), beside "
                              "the floor") + "</div>")
    table_rows = []
    for name in names:
        metric = _metric(name)
        summary, floor_summary = _dict(efficacy.get(name)), _dict(floor.get(name))
        value = _statistic(summary, metric)
        floor_value = _statistic(floor_summary, metric)
        if value is None:
            level, word = "unknown", MISSING
        elif value >= metric.threshold and (floor_value is None
                                            or value >= FLOOR_FACTOR * floor_value):
            level, word = "good", "moved"
        elif floor_value is not None and value > FLOOR_FACTOR * floor_value:
            level, word = "fair", "above the floor"
        else:
            level, word = "poor", "not beyond the floor"
        table_rows.append(
            f"<tr><td>{_e(metric.label)}<div class=\"raw\">{_e(name)}</div></td>"
            f'<td class="num">{_e(_format(summary.get("median"), metric))}</td>'
            f'<td class="num">{_e(_format(summary.get("mean"), metric))}</td>'
            f'<td class="num">{_e(_format(summary.get("max"), metric))}</td>'
            f'<td class="num">{_e(_format(floor_summary.get("median"), metric))}</td>'
            f'<td class="num">{_e(_format(floor_summary.get("mean"), metric))}</td>'
            f'<td><span class="level {level}">{word}</span></td></tr>')
    table = ('<div class="table-wrap"><table><thead><tr><th>reading</th>'
             '<th class="num">median</th><th class="num">mean</th><th class="num">max</th>'
             '<th class="num">floor median</th><th class="num">floor mean</th>'
             f'<th>transfer</th></tr></thead><tbody>{"".join(table_rows)}</tbody>'
             "</table></div>")
    plots = []
    for name in names:
        values = per_frame.get(name)
        values = list(values) if isinstance(values, (list, tuple)) else []
        svg = _line_plot(name, values, frames, efficacy.get(name)) if values else None
        if svg is not None:
            metric = _metric(name)
            plots.append(f'<div class="chart"><h3>{_e(metric.label)}</h3>'
                         f'<p class="explain">{_e(metric.explanation)}</p>{svg}</div>')
    per_frame_html = ("<h3>Frame by frame</h3>" f'<div class="plots">{"".join(plots)}</div>'
                      if plots else "")
    return f'{intro}<div class="plots">{"".join(charts)}</div>{table}{per_frame_html}'


STYLE = """
:root { --fg: #1f2328; --muted: #57606a; --bg: #ffffff; --panel: #f6f8fa;
  --border: #d0d7de; --good: #1a7f37; --fair: #9a6700; --poor: #cf222e;
  --unknown: #6e7781; --accent: #0969da; --floor: #9aa4ae; --threshold: #d1242f; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--fg); background: var(--bg);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
  "Liberation Sans", "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 18px 64px; }
h1 { font-size: 1.9rem; line-height: 1.2; margin: 0 0 .3rem; }
h2 { font-size: 1.4rem; margin: 2.6rem 0 .8rem; padding-bottom: .3rem;
  border-bottom: 1px solid var(--border); }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .5rem; }
p { margin: .5rem 0; }
.subtitle { color: var(--muted); margin: 0 0 1rem; overflow-wrap: anywhere; }
.verdicts { display: grid; gap: 14px;
  grid-template-columns: repeat(auto-fit, minmax(min(100%, 300px), 1fr)); }
.verdict { background: var(--panel); border: 1px solid var(--border);
  border-left: 8px solid var(--unknown); border-radius: 8px; padding: 14px 16px; }
.verdict.good { border-left-color: var(--good); }
.verdict.fair { border-left-color: var(--fair); }
.verdict.poor { border-left-color: var(--poor); }
.verdict .question { color: var(--muted); font-weight: 600; }
.verdict .answer { font-size: 1.25rem; font-weight: 700; line-height: 1.3; margin: .2rem 0; }
.verdict.good .answer { color: var(--good); }
.verdict.fair .answer { color: var(--fair); }
.verdict.poor .answer { color: var(--poor); }
.verdict ul { margin: .4rem 0 0; padding-left: 1.1rem; font-size: .92rem; }
.notes { border: 1px solid #d4a72c; background: #fff8c5; border-radius: 8px;
  padding: 10px 16px; margin: 16px 0; }
.notes ul { margin: .3rem 0; padding-left: 1.2rem; }
.figures { display: grid; gap: 12px;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 320px), 1fr)); }
.figure-card { border: 1px solid var(--border); border-radius: 8px; padding: 12px 16px; }
.figure-card .label { font-weight: 600; }
.figure-card .value { font-size: 2rem; font-weight: 700; line-height: 1.2;
  font-variant-numeric: tabular-nums; }
.figure-card .statistic, .figure-card .shares { color: var(--muted); font-size: .88rem; }
.figure-card p { color: var(--muted); font-size: .9rem; margin: .5rem 0 0; }
.figure-card .parser { font-style: italic; }
.status { font-weight: 600; margin-left: .4rem; white-space: nowrap; }
.status.pass { color: var(--good); }
.status.fail { color: var(--poor); }
.level { font-weight: 600; }
.level.good { color: var(--good); } .level.fair { color: var(--fair); }
.level.poor { color: var(--poor); } .level.unknown { color: var(--unknown); }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums;
  font-size: .93rem; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--border);
  vertical-align: top; }
.num { text-align: right; white-space: nowrap; }
.share { white-space: nowrap; }
td.path, table.settings td { overflow-wrap: anywhere; }
table.settings th { font-weight: 500; color: var(--muted); width: 40%;
  overflow-wrap: anywhere; }
.raw { color: var(--muted); font-size: .8rem; font-family: ui-monospace, "DejaVu Sans Mono",
  monospace; }
.plots { display: grid; gap: 22px;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 460px), 1fr)); }
.chart h3 { margin: 0 0 .2rem; }
.chart p.explain { color: var(--muted); font-size: .85rem; margin: 0 0 .3rem; }
svg.plot { display: block; width: 100%; height: auto; overflow: visible; }
svg.plot text { font-family: inherit; font-size: 13px; fill: var(--fg); }
svg.plot .tick { fill: var(--muted); font-size: 12px; }
svg.plot .grid { stroke: #eaeef2; stroke-width: 1; }
svg.plot .axis { stroke: #57606a; stroke-width: 1; }
svg.plot .series { fill: none; stroke: var(--accent); stroke-width: 2;
  stroke-linejoin: round; }
svg.plot .dot { fill: var(--accent); }
svg.plot .threshold { stroke: var(--threshold); stroke-width: 1.4; stroke-dasharray: 6 4; }
svg.plot .threshold-label { fill: var(--threshold); font-size: 12px; }
svg.plot .missing { fill: var(--unknown); font-size: 13px; }
svg.plot .axis-label { fill: var(--muted); font-size: 12px; }
svg.plot .bar.protected { fill: var(--accent); }
svg.plot .bar.floor { fill: var(--floor); }
svg.plot .bar-label { font-weight: 600; }
svg.plot .bar-value { font-size: 12px; fill: var(--muted); }
.legend { color: var(--muted); font-size: .9rem; }
.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px;
  vertical-align: -2px; margin: 0 4px 0 12px; }
.swatch:first-child { margin-left: 0; }
.swatch.protected { background: var(--accent); }
.swatch.floor { background: var(--floor); }
.swatch.threshold { height: 0; border-top: 2px dashed var(--threshold); border-radius: 0;
  vertical-align: 4px; }
.swatch.mask { background: rgb(59 130 246 / .55); }
.swatch.box { border: 2px solid rgb(250 204 21); }
.swatch.original-points { background: rgb(34 197 94); border-radius: 50%; }
.swatch.protected-points { background: rgb(244 63 94); border-radius: 50%; }
.view { border: 1px solid var(--border); border-radius: 8px; padding: 12px 14px;
  margin: 16px 0; }
.view h3 { margin: 0 0 .3rem; }
.view-metrics { font-size: .9rem; color: var(--muted); }
.view-metrics span { display: inline-block; margin-right: 1rem; white-space: nowrap; }
.view-metrics b { color: var(--fg); font-weight: 600; }
.pictures { display: grid; gap: 10px; margin-top: 10px; }
.pictures.three { grid-template-columns: repeat(auto-fit, minmax(min(100%, 220px), 1fr)); }
.pictures.two { grid-template-columns: repeat(auto-fit, minmax(min(100%, 300px), 1fr)); }
.pictures.five { grid-template-columns: repeat(auto-fill, minmax(min(45%, 170px), 1fr)); }
figure { margin: 0; }
figure img { display: block; width: 100%; height: auto; border-radius: 4px;
  background: #000; }
figcaption { color: var(--muted); font-size: .85rem; margin-top: .2rem; }
.absent { display: flex; align-items: center; justify-content: center; min-height: 120px;
  background: var(--panel); border: 1px dashed var(--border); border-radius: 4px;
  color: var(--muted); }
details { border: 1px solid var(--border); border-radius: 8px; padding: 8px 14px;
  margin-top: 2rem; }
summary { cursor: pointer; font-weight: 600; font-size: 1.1rem; }
footer { color: var(--muted); font-size: .85rem; margin-top: 2rem; }
.figure-card.lead { border-color: #8c959f; border-width: 2px; }
.figure-card .floor-value { font-size: 1rem; font-weight: 600; color: var(--muted);
  margin-left: .6rem; }
.figure-card.secondary .value { font-size: 1.5rem; }
.tag { font-size: .75rem; font-weight: 600; color: var(--muted); border: 1px solid
  var(--border); border-radius: 999px; padding: 0 .45rem; margin-left: .3rem;
  vertical-align: 1px; }
svg.plot .series.floor { stroke: var(--floor); stroke-width: 2; }
svg.plot .series.floor.single { fill: var(--floor); stroke: none; }
table.visibility td:first-child { white-space: nowrap; }
.ab-row { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start;
  margin-top: 10px; }
.ab-figure { max-width: 100%; }
.ab { position: relative; display: inline-block; max-width: 100%; vertical-align: top;
  line-height: 0; cursor: pointer; user-select: none; -webkit-user-select: none;
  background: #000; }
.ab:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.ab img { display: block; max-width: 100%; height: auto; }
.ab img.ab-original { position: absolute; left: 0; top: 0; width: 100%; height: 100%;
  visibility: hidden; }
.ab.zoom img { image-rendering: crisp-edges; image-rendering: pixelated; }
.ab:not(.pinned):hover img.ab-original, .ab.show-original img.ab-original {
  visibility: visible; }
.ab-region { position: absolute; border: 2px dashed rgb(250 204 21 / .9);
  pointer-events: none; }
.ab-label { position: absolute; left: 6px; top: 6px; padding: 3px 9px; border-radius: 4px;
  font-size: .85rem; font-weight: 700; line-height: 1.2; color: #fff;
  background: rgb(207 34 46 / .88); pointer-events: none; }
.ab-label .when-original { display: none; }
.ab:not(.pinned):hover .ab-label, .ab.show-original .ab-label {
  background: rgb(26 127 55 / .92); }
.ab:not(.pinned):hover .when-original, .ab.show-original .when-original { display: inline; }
.ab:not(.pinned):hover .when-protected, .ab.show-original .when-protected { display: none; }
.ab.pinned .ab-label::after { content: " \00b7  pinned"; font-weight: 400; }
/* a caption wraps to its picture's width rather than widening it */
.ab-caption { color: var(--muted); font-size: .85rem; margin: .3rem 0 0; width: 0;
  min-width: 100%; }
@media (max-width: 600px) {
  body { font-size: 15px; }
  main { padding: 18px 12px 48px; }
  h1 { font-size: 1.5rem; }
  .figure-card .value { font-size: 1.6rem; }
  th, td { padding: 5px 6px; }
  /* plots are scaled down to the screen: larger text in their own units stays legible */
  svg.plot text, svg.plot .tick, svg.plot .axis-label, svg.plot .bar-value,
  svg.plot .threshold-label { font-size: 17px; }
}
"""

# Each original / protected pair: hovering shows the original (the style sheet); a click pins
# the original, each further click switches between the two (Enter and Space too).
SCRIPT = """
document.querySelectorAll(".ab").forEach(function (pair) {
  function flip() {
    var original = pair.classList.contains("pinned") ?
      !pair.classList.contains("show-original") : true;
    pair.classList.add("pinned");
    pair.classList.toggle("show-original", original);
    pair.setAttribute("aria-pressed", original ? "true" : "false");
  }
  pair.addEventListener("click", flip);
  pair.addEventListener("keydown", function (event) {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); flip(); }
  });
});
"""


def _page(result: dict, views: list) -> str:
    config = _dict(result.get("config"))
    versions = _dict(result.get("versions"))
    machine = _dict(result.get("machine"))
    inputs = _dict(result.get("inputs"))
    fidelity = _canonical(result.get("fidelity"))
    efficacy = _canonical(result.get("efficacy"))
    per_frame = _canonical(result.get("per_frame"))
    frames = _list(result.get("frames"))
    parser = result.get("parser")
    parser = str(parser) if parser else None
    if parser and result.get("parser_note"):
        parser = f"{parser}: {result['parser_note']}"
    robustness = [{**entry, "efficacy": _canonical(entry.get("efficacy")),
                   "floor": _canonical(entry.get("floor"))}
                  for entry in _list(result.get("robustness")) if isinstance(entry, dict)]
    timing = _dict(result.get("timing"))
    notes = [str(note) for note in _list(result.get("notes"))]
    visibility = _dict(result.get("visibility"))

    original_name = Path(str(_dict(inputs.get("original")).get("path") or "original")).name
    protected_name = Path(str(_dict(inputs.get("protected")).get("path") or "protected")).name
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    version = versions.get("vdf-stream") or versions.get("vdf_stream") or __version__

    verdicts = [_fidelity_verdict(fidelity, visibility), _efficacy_verdict(efficacy),
                _robustness_verdict(robustness)]
    sections = {"fidelity": fidelity, "efficacy": efficacy}
    cards = []
    if visibility:  # the video JOD leads; PSNR and SSIM follow the efficacy figures
        cards += [_jod_card(visibility, name, label, key)
                  for name, label, key in VISIBILITY_PARTS]
        names = sorted(KEY_FIGURES, key=lambda name: METRICS[name].kind == "fidelity")
    else:
        names = list(KEY_FIGURES)
    for name in names:
        section = sections[METRICS[name].kind]
        cards.append(_key_figure(name, section.get(name), parser,
                                 secondary=bool(visibility) and METRICS[name].kind == "fidelity"))

    seconds, per_frame_seconds = _number(timing.get("seconds")), _number(
        timing.get("seconds_per_frame"))
    evaluated = (f"{len(frames)} frames evaluated" + (
        f" (frames {int(min(frames))}\u2013{int(max(frames))})"
        if frames and all(_number(frame) is not None for frame in frames) else "")
        if frames else "evaluated frames not listed")
    timing_text = (f"; evaluation took {seconds:.1f} s" if seconds is not None else "") + (
        f" ({per_frame_seconds:.3f} s per frame)" if per_frame_seconds is not None else "")

    body = [f"<h1>Protection report</h1>"
            f'<p class="subtitle">{_e(protected_name)} compared with {_e(original_name)} '
            f"\u00b7 {_e(evaluated)}{_e(timing_text)}</p>"]
    if notes:
        body.append('<div class="notes"><b>Notes</b><ul>'
                    + "".join(f"<li>{_e(note)}</li>" for note in notes) + "</ul></div>")
    body.append('<section id="verdict"><div class="verdicts">'
                + "".join(_verdict_html(verdict) for verdict in verdicts) + "</div>"
                "<p class=\"legend\">The verdicts use rules of thumb (shown beside each "
                "figure), not guarantees: they say whether the measured face readings are "
                "off by enough to spoil the usual talking-face deepfake preprocessing.</p>"
                "</section>")
    body.append('<section id="figures"><h2>Key figures</h2>'
                f'<div class="figures">{"".join(cards)}</div></section>')
    body.append('<section id="visibility"><h2>Does it still look the same?</h2>'
                f"{_visibility_section(visibility, fidelity)}</section>")
    body.append('<section id="all"><h2>All measurements</h2>'
                "<h3>Efficacy: are the face readings broken?</h3>"
                f"{_summary_table(efficacy, EFFICACY_ORDER)}<p>Fidelity: see "
                '<a href="#visibility">Does it still look the same?</a> above.</p></section>')

    plots = _jod_plots(visibility)
    for name in _ordered(per_frame, FIDELITY_ORDER + EFFICACY_ORDER):
        metric = _metric(name)
        summary = fidelity.get(name) if name in fidelity else efficacy.get(name)
        values = per_frame.get(name)
        values = list(values) if isinstance(values, (list, tuple, np.ndarray)) else []
        svg = _line_plot(name, values, frames, summary)
        if svg is not None:
            content = svg
        elif values and all(_infinite(value) for value in values):
            content = "<p>\u221e on every frame (identical frames)</p>"
        else:
            content = f"<p>{MISSING} no value measured</p>"
        explain = ("" if name in KEY_FIGURES  # explained among the key figures
                   else f'<p class="explain">{_e(metric.explanation)}</p>')
        plots.append(f'<div class="chart"><h3>{_e(metric.label)}</h3>{explain}{content}</div>')
    body.append('<section id="per-frame"><h2>Frame by frame</h2>'
                "<p>Each metric over the evaluated frames (the video JOD over the frames it "
                "measured). Dashed red lines are thresholds; "
                "\u00d7 on the axis marks a frame with no reading, \u221e at the top an "
                "infinite value (identical frames).</p>"
                + (f'<div class="plots">{"".join(plots)}</div>' if plots
                   else f"<p>{MISSING} no per-frame values</p>") + "</section>")
    body.append('<section id="robustness"><h2>Robustness: after re-encoding, resizing and '
                f"cleaning</h2>{_robustness_section(robustness, efficacy)}</section>")

    transfer = _dict(result.get("transfer"))
    if transfer:
        body.append('<section id="transfer"><h2>Transfer: face models of other families</h2>'
                    f"{_transfer_section(transfer, frames)}</section>")

    if views:
        amplification = _amplification(views)
        view_html = "".join(_view_section(view, amplification) for view in views)
        body.append(
            '<section id="frames"><h2>Frames</h2><p>Each frame\'s original and protected '
            "versions lie in the same place, lossless, at 1\u00d7 (one frame pixel per CSS "
            "pixel) unless said otherwise, with the face at 2\u00d7 beside them: hover to see "
            "the original, click to pin it, click again to switch; the label says which one "
            "is shown. The other pictures are downscaled and JPEG-compressed for this page; "
            "the difference is computed on the full frames. Below each frame, what the face "
            "models read from it:</p>"
            '<p class="legend"><span class="swatch mask"></span>face mask '
            '<span class="swatch box"></span>face box '
            '<span class="swatch original-points"></span>points on the original '
            '<span class="swatch protected-points"></span>points on the protected</p>'
            f"{view_html}</section>")

    body.append('<details id="settings"><summary>Configuration, versions and machine'
                "</summary>" + _inputs_table(inputs)
                + (f"<h3>Parser</h3><p>{_e(parser)}</p>" if parser else "")
                + _key_value_table("Configuration", config)
                + _key_value_table("Versions", versions)
                + _key_value_table("Machine", machine)
                + _key_value_table("Timing", timing) + "</details>")
    body.append(f"<footer>Written by vdf-stream {_e(version)} on {created}.</footer>")
    title = f"Protection report: {protected_name}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head>"
            f"<body><main>{''.join(body)}</main>"
            + (f"<script>{SCRIPT}</script>" if views else "") + "</body></html>\n")


def write_report(result: dict, views: list, directory: Path) -> Path:
    """Write the self-contained evaluation page ``directory/index.html`` and return its path.

    Args:
        result: the evaluation result (see the module docstring); any key may be missing
            and any number None or NaN.
        views: frames to show, each with ``index``, ``original`` and ``protected``
            ``(H, W, 3)`` uint8 RGB, ``original_reading`` / ``protected_reading`` and
            ``metrics``; may be empty.
        directory: created if needed.

    Raises:
        ValueError: a view's frame is not an ``(H, W, 3)`` uint8 array.
        OutputError: the page cannot be written.
    """
    result = _dict(result)
    token = _described.set(_dict(result.get("metrics")))
    try:
        page = _page(result, list(views or []))
    finally:
        _described.reset(token)
    directory = Path(directory)
    path = directory / "index.html"
    partial = directory / ".index.html.partial"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        raise OutputError(f"cannot write the report to {path}: {error.strerror or error}") \
            from error
    return path
