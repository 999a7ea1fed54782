"""The sections of the evaluation report below its verdicts: the key-figure cards, how
visible the change is (ColorVideoVDP's JOD beside the codec floor, PSNR and SSIM as
secondary figures), the summary tables, robustness under degradations and transfer to face
readers of other families, and the configuration tables. Each returns HTML.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from . import criteria
from .charts import bar_plot, line_plot, robustness_chart
from .presentation import (CRITERIA, EFFICACY_ORDER, FIDELITY_ORDER, JOD, METRICS, MISSING,
                           ROBUSTNESS_ALWAYS, TRANSFER_ORDER, VISIBILITY_PARTS, Metric, as_dict,
                           as_list, as_number, degradation_label, escape, format_threshold,
                           format_value, jod_text, metric_for, ordered, percent_text, pick,
                           share_items, statistic_value)
from .verdicts import Verdict, jod_check, judgement, size_text, visibility_part, visibility_rule


def verdict_html(verdict: Verdict) -> str:
    items = "".join(f"<li>{escape(line)}</li>" for line in verdict.lines)
    return (f'<div class="verdict {verdict.level}"><div class="question">'
            f"{escape(verdict.question)}</div><div class=\"answer\">{escape(verdict.answer)}</div>"
            f'{"<ul>" + items + "</ul>" if items else ""}</div>')


def share_lines(summary: Any, metric: Metric, separator: str = "; ") -> str:
    """The summary's shares of frames above (or below) thresholds, as HTML."""
    return separator.join(
        f'<span class="share">{percent_text(share)} of frames {direction} '
        f"{format_threshold(threshold, metric)}</span>"
        for direction, threshold, share in share_items(summary))


def key_figure(name: str, summary: Any, parser: str | None, secondary: bool = False) -> str:
    """One figure's card; ``secondary`` marks a figure that does not decide the verdict."""
    metric = metric_for(name)
    summary_dict = as_dict(summary)
    value, statistic = pick(summary, metric)
    status = ""
    if value is not None and metric.threshold is not None:
        if metric.kind == "fidelity":
            passed = value >= metric.threshold
            word = "looks identical" if passed else "may be visible"
        else:
            passed = criteria.broken(value, metric.threshold)
            word = "broken" if passed else "still readable"
        mark = "\u2713" if passed else "\u2717"
        status = (f'<span class="status {"pass" if passed else "fail"}">'
                  f"{mark} {word}</span>")
    shares = share_lines(summary, metric)
    mean = ""
    if statistic == "median" and as_number(summary_dict.get("mean")) is not None:
        mean = f"mean {format_value(summary_dict.get('mean'), metric)}"
    details = "; ".join(part for part in (mean, shares) if part)
    shares_html = f'<div class="shares">{details}</div>' if details else ""
    parser_line = (f'<p class="parser">Measured with: {escape(parser)}</p>'
                   if name == "parse_flip" and parser else "")
    tag = ' <span class="tag">secondary</span>' if secondary else ""
    return (f'<div class="figure-card{" secondary" if secondary else ""}">'
            f'<div class="label">{escape(metric.label)}{tag}</div>'
            f'<div class="value">{escape(format_value(value, metric))}</div>'
            f'<div class="statistic">{escape(statistic)} over frames {status}</div>'
            f"{shares_html}"
            f"<p>{escape(metric.explanation)}</p>{parser_line}</div>")


def _per_frame_numbers(part: dict, key: str = "per_frame") -> list[float]:
    return [number for value in as_list(part.get(key)) if (number := as_number(value)) is not None]


def jod_card(visibility: dict, name: str, label: str, key: str) -> str:
    """The key-figure card of one visibility measurement: the video JOD, its codec floor
    beside it, whether it looks the same by the rule, and the per-frame range."""
    rule = visibility_rule(visibility)
    part = visibility_part(visibility, name)
    jod, floor = as_number(part.get("jod")), as_number(part.get("floor_jod"))
    check = jod_check(part, rule[key], rule["floor_margin"])
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
                  f"{mark} {escape(word)}</span>")
    per_frame = _per_frame_numbers(part)
    size = size_text(part.get("size"))
    where = {"native": "The video as published",
             "full_screen": "The video shown full screen"}[name]
    details = []
    if per_frame:
        details.append(f"per frame: min {jod_text(min(per_frame))}, median "
                       f"{jod_text(float(np.median(per_frame)))}")
    count = len(as_list(part.get("frames"))) or len(per_frame)
    if count:
        details.append(f"{count} frames")
    if jod is None:
        details.append("not measured in this run" if not part else "no value measured")
    floor_label = as_dict(visibility.get("floor")).get("label")
    explanation = (where + (f" ({size})" if size else "") + ". 10 means "
                   "no visible difference; one JOD lower, 75 % of viewers would pick the "
                   "original. The codec floor is "
                   + (f"{floor_label}" if floor_label else
                      "the original re-encoded with the same settings")
                   + f": what publishing alone costs. Looks the same from {rule[key]:g}, "
                   f"within {rule['floor_margin']:g} of the floor.")
    return (f'<div class="figure-card lead"><div class="label">Video JOD at {escape(label)}'
            f"</div><div class=\"value\">{escape(jod_text(jod))}<span class=\"floor-value\">"
            f"codec floor {escape(jod_text(floor))}</span></div>"
            + (f'<div class="statistic">whole measured video {status}</div>'
               if jod is not None else "")
            + f'<div class="shares">{escape("; ".join(details)) or MISSING}</div>'
            f"<p>{escape(explanation)}</p></div>")


def visibility_section(visibility: dict, fidelity: dict) -> str:
    """How visible the change is: the JOD table (native size, full screen) beside the codec
    floor and what was measured, then PSNR and SSIM as secondary figures."""
    secondary = ("<h3>Secondary figures: PSNR, SSIM and pixel changes</h3>"
                 "<p>PSNR and SSIM compare pixels; they do not see low-frequency changes on "
                 "skin or flicker, which viewers notice first.</p>"
                 f"{summary_table(fidelity, FIDELITY_ORDER)}")
    if not visibility:
        return ("<p>Visibility (ColorVideoVDP's JOD beside the codec floor) was not "
                "measured in this run: the verdict above rests on PSNR and SSIM.</p>"
                + secondary)
    rule = visibility_rule(visibility)
    floor = as_dict(visibility.get("floor"))
    seconds = as_dict(visibility.get("seconds_per_frame"))
    rows = []
    for name, label, key in VISIBILITY_PARTS:
        part = visibility_part(visibility, name)
        jod, floor_jod = as_number(part.get("jod")), as_number(part.get("floor_jod"))
        per_frame = _per_frame_numbers(part)
        check = jod_check(part, rule[key], rule["floor_margin"])
        level, word = {True: ("good", "yes"), False: ("poor", "no"),
                       None: ("unknown", "not measured")}[check]
        difference = (format_value(floor_jod - jod, JOD) if jod is not None
                      and floor_jod is not None else MISSING)
        count = len(as_list(part.get("frames"))) or len(per_frame)
        cost = as_number(seconds.get(name))
        lowest = jod_text(min(per_frame)) if per_frame else MISSING
        median = jod_text(float(np.median(per_frame))) if per_frame else MISSING
        rows.append(
            f"<tr><td>{escape(label)}<div class=\"raw\">"
            f"{escape(size_text(part.get('size')) or MISSING)}"
            f'</div></td><td class="num">{escape(jod_text(jod))}</td>'
            f'<td class="num">{escape(jod_text(floor_jod))}</td>'
            f'<td class="num">{escape(difference)}</td>'
            f'<td class="num">{escape(lowest)}</td>'
            f'<td class="num">{escape(median)}'
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
    stride = as_number(visibility.get("stride"))
    segment = as_number(visibility.get("segment_frames"))
    sampling = (f"; at native size one run of {int(segment)} frames in every {int(stride)}"
                if stride and stride > 1 and segment else "")
    intro = (f"<p>{escape(metric)} predicts how different the protected video looks from the "
             "original, in JOD: 10 means no visible difference; one JOD lower means 75 % of "
             "viewers would pick the original side by side. The <b>codec floor</b> is the "
             "same prediction for the original re-encoded with the same encoder settings: "
             "what publishing alone costs, which no protection can beat. The video looks the "
             f"same when its JOD is at least {rule['native_jod']:g} at native size and "
             f"{rule['full_screen_jod']:g} at full screen, each within "
             f"{rule['floor_margin']:g} of its floor.</p>")
    facts = ('<table class="settings">'
             f"<tr><th>codec floor</th><td>{escape(floor_text)}</td></tr>"
             f"<tr><th>display model</th><td>{escape(display_text)}</td></tr>"
             f"<tr><th>metric</th><td>{escape(metric)}</td></tr>"
             "<tr><th>frames measured</th><td>" + escape(
                 ", ".join(f"{label}: "
                           f"{len(as_list(visibility_part(visibility, name).get('frames')))}"
                           for name, label, _ in VISIBILITY_PARTS
                           if visibility_part(visibility, name)) or MISSING) + escape(sampling)
             + "</td></tr></table>")
    return f"{intro}{table}{facts}{secondary}"


def jod_plots(visibility: dict) -> list[str]:
    """One chart per visibility measurement: each frame's JOD, the codec floor's beside it
    and the rule's threshold."""
    rule = visibility_rule(visibility)
    charts = []
    for name, label, key in VISIBILITY_PARTS:
        part = visibility_part(visibility, name)
        values = as_list(part.get("per_frame"))
        if not values:
            continue
        metric = replace(JOD, threshold=rule[key])
        svg = line_plot("jod", values, as_list(part.get("frames")), None, metric=metric,
                         floor=as_list(part.get("floor_per_frame")))
        size = size_text(part.get("size"))
        content = svg if svg is not None else f"<p>{MISSING} no value measured</p>"
        charts.append(
            f'<div class="chart"><h3>Video JOD at {escape(label)}'
            + (f" ({escape(size)})" if size else "") + "</h3>"
            '<p class="explain">Each frame\'s JOD (10: no visible difference) '
            '<span class="swatch protected"></span>protected '
            '<span class="swatch floor"></span>codec floor '
            f'<span class="swatch threshold"></span>{rule[key]:g}</p>{content}</div>')
    return charts


def summary_table(section: dict, order: Sequence[str]) -> str:
    rows = []
    for name in ordered(section, order):
        metric = metric_for(name)
        summary = as_dict(section.get(name))
        rows.append(
            f"<tr><td>{escape(metric.label)}<div class=\"raw\">{escape(name)}</div></td>"
            f'<td class="num">{escape(format_value(summary.get("median"), metric))}</td>'
            f'<td class="num">{escape(format_value(summary.get("mean"), metric))}</td>'
            f"<td>{share_lines(summary, metric, '<br>') or MISSING}</td></tr>")
    if not rows:
        return f"<p>{MISSING} not measured</p>"
    return ('<div class="table-wrap"><table><thead><tr><th>metric</th><th class="num">median'
            '</th><th class="num">mean</th><th>frames beyond thresholds</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def inputs_table(inputs: dict) -> str:
    rows = []
    for role in ("original", "protected"):
        item = as_dict(inputs.get(role))
        width, height = as_number(item.get("width")), as_number(item.get("height"))
        size = f"{int(width)}\u00d7{int(height)}" if width and height else MISSING
        frames = as_number(item.get("frames"))
        fps = as_number(item.get("fps"))
        rows.append(f"<tr><th>{role}</th><td class=\"path\">{escape(item.get('path') or MISSING)}"
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


def key_value_table(title: str, value: Any) -> str:
    rows = "".join(f"<tr><th>{escape(key)}</th><td>{escape(text)}</td></tr>"
                   for key, text in _flatten(as_dict(value)))
    body = (f'<div class="table-wrap"><table class="settings">{rows}</table></div>'
            if rows else f"<p>{MISSING}</p>")
    return f"<h3>{escape(title)}</h3>{body}"


def robustness_section(robustness: list, efficacy: dict) -> str:
    intro = ("<p>Each degradation is applied to the protected video and, separately, to the "
             "original. The <b>floor</b> is what the degradation alone does to the readings of "
             "the unprotected original. The protection holds under a degradation when every "
             "reading of the protected video stays at or above its rule of thumb and at least "
             f"{criteria.FLOOR_FACTOR:g}\u00d7 its floor.</p>"
             '<p class="legend"><span class="swatch protected"></span>protected '
             '<span class="swatch floor"></span>floor (original, same degradation) '
             '<span class="swatch threshold"></span>rule of thumb</p>')
    if not robustness:
        return ("<p>Robustness was not measured in this run: the figures above hold for the "
                "protected file exactly as given.</p>")
    names = set(ROBUSTNESS_ALWAYS)
    for entry in robustness:
        names.update(as_dict(entry.get("efficacy")))
        names.update(as_dict(entry.get("floor")))
    charts = []
    for name in ordered(names, EFFICACY_ORDER):
        svg = robustness_chart(name, robustness, efficacy)
        metric = metric_for(name)
        if svg is None:
            charts.append(f'<div class="chart"><h3>{escape(metric.label)}</h3>'
                          f"<p>{MISSING} not measured under any degradation</p></div>")
        else:
            charts.append(f'<div class="chart"><h3>{escape(metric.label)}</h3>{svg}</div>')
    rows = []
    for entry in robustness:
        level = judgement(entry.get("efficacy"), as_dict(entry.get("floor"))).level
        word = criteria.HOLDS[level]
        cells = []
        for name in CRITERIA:
            metric = METRICS[name]
            value = statistic_value(as_dict(entry.get("efficacy")).get(name), metric)
            floor = statistic_value(as_dict(entry.get("floor")).get(name), metric)
            cells.append(f'<td class="num">{escape(format_value(value, metric))}'
                         f'<div class="raw">floor {escape(format_value(floor, metric))}</div></td>')
        rows.append(f"<tr><td>{escape(degradation_label(entry))}</td>{''.join(cells)}"
                    f'<td><span class="level {level}">{word}</span></td></tr>')
    header = "".join(f'<th class="num">{escape(METRICS[name].label)}</th>' for name in CRITERIA)
    table = ('<div class="table-wrap"><table><thead><tr><th>degradation</th>'
             f'{header}<th>protection</th></tr></thead><tbody>{"".join(rows)}</tbody>'
             "</table></div>")
    return f'{intro}<div class="plots">{"".join(charts)}</div>{table}'


TRANSFER_WORDS = {"good": "moved", "fair": "above the floor", "poor": "not beyond the floor",
                  "unknown": MISSING}


def transfer_section(transfer: dict, frames: list) -> str:
    """Other families' readers (``eval --transfer``): bars of each reading beside its floor,
    a table and one plot per reading over the frames."""
    efficacy = as_dict(transfer.get("efficacy"))
    floor = as_dict(transfer.get("floor"))
    per_frame = as_dict(transfer.get("per_frame"))
    floor_label = str(transfer.get("floor_label") or "re-encoding")
    intro = ("<p>Face readers of other families read both videos on their own, each with its "
             "own face detection, as someone training a deepfake with other tools would: "
             "MTCNN (5 points and whether it finds the face) and face-api's two 68-point "
             "networks in MTCNN's box. Where MTCNN loses the face in a protected frame, they "
             "read in the original's box. The <b>floor</b> is the same reading of the "
             f"original after {escape(floor_label)} alone. A reading counts as moved when it is "
             f"at or above the rule of thumb and at least {criteria.FLOOR_FACTOR:g}\u00d7 its "
             "floor.</p>"
             '<p class="legend"><span class="swatch protected"></span>protected '
             f'<span class="swatch floor"></span>floor (original after {escape(floor_label)}) '
             '<span class="swatch threshold"></span>rule of thumb</p>')
    names = ordered(set(efficacy) | set(floor), TRANSFER_ORDER)
    if not names:
        return f"{intro}<p>{MISSING} no transfer reading</p>"
    charts = []
    landmark_rows = [(metric_for(name).label.replace(" landmark shift (NME)", ""),
                      statistic_value(efficacy.get(name), metric_for(name)),
                      statistic_value(floor.get(name), metric_for(name)), True)
                     for name in names if name.endswith("_nme")]
    if landmark_rows:
        metric = Metric("Landmark shift (NME)", "", digits=3, threshold=criteria.TRANSFER_NME)
        charts.append('<div class="chart"><h3>Landmark shift of the other readers</h3>'
                      + bar_plot(metric, landmark_rows, "Landmark shift of the other readers "
                              "(median), beside the floor") + "</div>")
    for name in names:
        if name.endswith("_nme"):
            continue
        metric = metric_for(name)
        rows = [(metric.label, statistic_value(efficacy.get(name), metric),
                 statistic_value(floor.get(name), metric), True)]
        charts.append(f'<div class="chart"><h3>{escape(metric.label)}</h3>'
                      + bar_plot(metric, rows, f"{metric.label} ({metric.statistic}), beside "
                              "the floor") + "</div>")
    table_rows = []
    for name in names:
        metric = metric_for(name)
        summary, floor_summary = as_dict(efficacy.get(name)), as_dict(floor.get(name))
        value = statistic_value(summary, metric)
        floor_value = statistic_value(floor_summary, metric)
        level = criteria.transfer_level(value, metric.threshold, floor_value)
        word = TRANSFER_WORDS[level]
        table_rows.append(
            f"<tr><td>{escape(metric.label)}<div class=\"raw\">{escape(name)}</div></td>"
            f'<td class="num">{escape(format_value(summary.get("median"), metric))}</td>'
            f'<td class="num">{escape(format_value(summary.get("mean"), metric))}</td>'
            f'<td class="num">{escape(format_value(summary.get("max"), metric))}</td>'
            f'<td class="num">{escape(format_value(floor_summary.get("median"), metric))}</td>'
            f'<td class="num">{escape(format_value(floor_summary.get("mean"), metric))}</td>'
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
        svg = line_plot(name, values, frames, efficacy.get(name)) if values else None
        if svg is not None:
            metric = metric_for(name)
            plots.append(f'<div class="chart"><h3>{escape(metric.label)}</h3>'
                         f'<p class="explain">{escape(metric.explanation)}</p>{svg}</div>')
    per_frame_html = ("<h3>Frame by frame</h3>" f'<div class="plots">{"".join(plots)}</div>'
                      if plots else "")
    return f'{intro}<div class="plots">{"".join(charts)}</div>{table}{per_frame_html}'
