"""The plain-text summary of an evaluation that ``vdf-stream eval`` prints: the inputs,
visibility, fidelity, efficacy with the answer to "Is my video protected?" (the rule of
:mod:`vdf_stream.evaluation.criteria`, the one the HTML report uses), robustness and
transfer.
"""

from __future__ import annotations

import math

import numpy as np

from . import criteria


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


ROBUSTNESS_TITLES = {"landmark_nme": "NME median", "pose_error": "pose median",
                     "parse_flip": "parse flip median", "detection_loss": "detection loss"}


def efficacy_lines(efficacy: dict, described: dict) -> list[str]:
    """The answer to "Is my video protected?" and the criterion lines beneath it
    (:func:`vdf_stream.evaluation.criteria.judge_summaries`); ``described`` is the result's
    ``metrics`` (name -> unit and description)."""
    judgement = criteria.judge_summaries(efficacy)
    lines = [f"  protected? {judgement.word}: {judgement.detail} (yes when every measured "
             "reading is broken)"]
    for check in judgement.checks:
        criterion = check.criterion
        unit = described.get(criterion.name, {}).get("unit")
        unit = f" {unit}" if unit == "degrees" else ""
        comparison = ">=" if check.broken else "<"
        lines.append(f"    {'broken' if check.broken else 'intact':<8}{criterion.reading}: "
                     f"{criterion.name} {criterion.statistic} {_number(check.value)} "
                     f"{comparison} {criterion.threshold:g}{unit}")
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
    lines.extend(efficacy_lines(result["efficacy"], result["metrics"]))
    if result["robustness"]:
        lines.append("")
        lines.append("robustness: efficacy after each degradation [its floor: the degraded "
                     "original against the original]")
        lines.append("  the protection holds where every reading is broken and at least "
                     f"{criteria.FLOOR_FACTOR:g}x its floor")
        lines.append(f"{'':26}" + "".join(f"{ROBUSTNESS_TITLES[criterion.name]:>22}"
                                          for criterion in criteria.CRITERIA) + "   protection")
        for entry in result["robustness"]:
            cells = []
            for criterion in criteria.CRITERIA:
                value = entry["efficacy"][criterion.name][criterion.statistic]
                floor = entry["floor"][criterion.name][criterion.statistic]
                cells.append(f"{_number(value)} [{_number(floor)}]")
            judgement = criteria.judge_summaries(entry["efficacy"], entry["floor"])
            lines.append(f"  {entry['label']:<24}" + "".join(f"{cell:>22}" for cell in cells)
                         + f"   {criteria.HOLDS[judgement.level]}")
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
