"""The verdicts the evaluation report opens with: does it still look the same (visibility,
else PSNR and SSIM), is my video protected (the rule of
:mod:`vdf_stream.evaluation.criteria`), does the protection survive re-encoding and editing.
Each gives a level (``good``, ``fair``, ``poor``, ``unknown``), an answer and the lines
beneath it, which the answer never contradicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import criteria
from .presentation import (METRICS, VISIBILITY_PARTS, VISIBILITY_RULE, as_dict,
                           as_list, as_number, degradation_label, format_threshold,
                           format_value, jod_text, pick, report_name, statistic_value)
from .visibility import FAIR_JOD


@dataclass
class Verdict:
    question: str
    level: str  # "good", "fair", "poor", "unknown"
    answer: str
    lines: list[str]


NOT_MEASURED = ("visibility not measured; PSNR and SSIM do not see low-frequency changes on "
                "skin or flicker")


def fidelity_verdict(fidelity: dict, visibility: dict | None = None) -> Verdict:
    """Decided by visibility (ColorVideoVDP's JOD beside the codec floor) when it was
    measured at native size; by PSNR and SSIM otherwise."""
    question = "Does it still look the same?"
    visibility = as_dict(visibility)
    if as_number(visibility_part(visibility, "native").get("jod")) is not None:
        return visibility_verdict(question, visibility, fidelity)
    checks = []
    lines = [NOT_MEASURED]
    for name, fair in (("psnr", 35.0), ("ssim", 0.95)):
        metric = METRICS[name]
        value, statistic = pick(fidelity.get(name), metric)
        if value is None:
            continue
        level = "good" if value >= metric.threshold else ("fair" if value >= fair else "poor")
        checks.append(level)
        lines.append(f"{statistic} {metric.label} {format_value(value, metric)} "
                     f"(\u2265 {format_threshold(metric.threshold, metric)} looks identical)")
    if not checks:
        return Verdict(question, "unknown", "Unknown: fidelity was not measured", lines)
    level = "poor" if "poor" in checks else ("fair" if "fair" in checks else "good")
    answer = {"good": "Yes \u2014 the change is invisible",
              "fair": "Almost \u2014 differences may show on close inspection",
              "poor": "No \u2014 the change is likely visible"}[level]
    return Verdict(question, level, answer, lines)


def visibility_part(visibility: dict, name: str) -> dict:
    """One measurement of the visibility result ("native" or "full_screen"); {} if absent."""
    return as_dict(as_dict(visibility).get(name))


def visibility_rule(visibility: dict) -> dict[str, float]:
    """The rule's numbers as the result gives them, the usual ones where it gives none."""
    given = as_dict(as_dict(visibility).get("rule"))
    return {key: value if (value := as_number(given.get(key))) is not None else default
            for key, default in VISIBILITY_RULE.items()}


def size_text(size: Any) -> str | None:
    size = as_list(size)
    if len(size) == 2 and all(as_number(value) for value in size):
        return f"{int(size[0])}\u00d7{int(size[1])}"
    return None


def jod_check(part: dict, threshold: float, margin: float) -> bool | None:
    """Whether one measurement looks the same: its JOD at least ``threshold`` and at most
    ``margin`` below its codec floor (when the floor is known); None when not measured."""
    jod, floor = as_number(part.get("jod")), as_number(part.get("floor_jod"))
    if jod is None:
        return None
    return jod >= threshold and (floor is None or floor - jod <= margin)


def visibility_level(visibility: dict) -> str:
    """"good" (looks the same by the rule), "fair" (native JOD at least :data:`FAIR_JOD`),
    "poor", or "unknown" (no native JOD)."""
    rule = visibility_rule(visibility)
    native = as_number(visibility_part(visibility, "native").get("jod"))
    if native is None:
        return "unknown"
    checks = [jod_check(visibility_part(visibility, name), rule[key], rule["floor_margin"])
              for name, _, key in VISIBILITY_PARTS]
    if all(check is not False for check in checks):
        return "good"
    return "fair" if native >= FAIR_JOD else "poor"


def visibility_verdict(question: str, visibility: dict, fidelity: dict) -> Verdict:
    rule = visibility_rule(visibility)
    level = visibility_level(visibility)
    lines = []
    for name, label, key in VISIBILITY_PARTS:
        part = visibility_part(visibility, name)
        check = jod_check(part, rule[key], rule["floor_margin"])
        size = size_text(part.get("size"))
        where = f"{label} ({size})" if size and name == "full_screen" else label
        if check is None:
            lines.append(f"{label}: not measured")
            continue
        mark = "\u2713" if check else "\u2717"
        lines.append(f"{mark} video JOD {jod_text(part.get('jod'))} at {where} (codec floor "
                     f"{jod_text(part.get('floor_jod'))}; \u2265 {rule[key]:g} and within "
                     f"{rule['floor_margin']:g} of the floor looks the same)")
    secondary = []
    for name in ("psnr", "ssim"):
        metric_info = METRICS[name]
        value, statistic = pick(fidelity.get(name), metric_info)
        if value is not None:
            secondary.append(f"{statistic} {metric_info.label} {format_value(value, metric_info)}")
    if secondary:
        lines.append("secondary: " + ", ".join(secondary))
    own = as_dict(visibility.get("verdict")).get("level")
    if isinstance(own, str) and own in ("good", "fair", "poor") and own != level:
        lines.append(f"note: the measurement's own verdict reads differently ({own})")
    answer = {"good": "Yes \u2014 viewers should not see the change",
              "fair": "Almost \u2014 some viewers may see it",
              "poor": "No \u2014 the change is visible"}[level]
    return Verdict(question, level, answer, lines)


def judgement(efficacy: dict, floor: dict | None = None) -> criteria.Judgement:
    """:func:`vdf_stream.evaluation.criteria.judge` of summaries keyed by the report's metric
    names (``floor``: the summaries of the floor under a degradation)."""
    def values(section: dict) -> dict[str, float | None]:
        return {criterion.name: statistic_value(section.get(report_name(criterion.name)),
                                                METRICS[report_name(criterion.name)])
                for criterion in criteria.CRITERIA}

    return criteria.judge(values(as_dict(efficacy)),
                          values(as_dict(floor)) if floor is not None else None)


def criterion_line(check: criteria.Check) -> str:
    """One criterion under the answer: whether the reading is broken, its value, its bar."""
    metric = METRICS[report_name(check.criterion.name)]
    mark = "\u2713" if check.broken else "\u2717"
    return (f"{mark} {metric.label}: {metric.statistic} {format_value(check.value, metric)} "
            f"(broken from {format_threshold(check.criterion.threshold, metric)})")


def efficacy_verdict(efficacy: dict) -> Verdict:
    """"Is my video protected?": :mod:`~vdf_stream.evaluation.criteria`'s answer, a line
    per measured criterion beneath it."""
    question = "Is my video protected?"
    judged = judgement(efficacy)
    if judged.level == "unknown":
        answer = f"{judged.word}: {judged.detail}"
    else:
        answer = f"{judged.word} \u2014 {judged.detail}"
    return Verdict(question, judged.level, answer,
                   [criterion_line(check) for check in judged.checks])


def robustness_verdict(robustness: list) -> Verdict:
    """"Does the protection survive re-encoding and editing?": per degradation, whether every
    criterion is met beyond :data:`~vdf_stream.evaluation.criteria.FLOOR_FACTOR` times its
    floor."""
    question = "Does the protection survive re-encoding and editing?"
    levels = []
    lines = []
    for entry in robustness:
        level = judgement(entry.get("efficacy"), as_dict(entry.get("floor"))).level
        if level == "unknown":
            continue
        levels.append(level)
        lines.append(f"{degradation_label(entry)}: {criteria.HOLDS[level]}")
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
