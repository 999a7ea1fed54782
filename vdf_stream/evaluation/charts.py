"""The evaluation report's charts, drawn as inline SVG (no plotting library): a line plot
of one metric over the evaluated frames, with its thresholds and an optional floor beneath,
and horizontal bars of a value beside its floor (robustness, transfer). Colours and fonts
come from the page's style sheet (``report.css``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .presentation import (MISSING, Metric, as_dict, as_number, degradation_label, escape,
                           format_threshold, format_value, is_infinite, metric_for,
                           statistic_value, thresholds_of)


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


def line_plot(name: str, values: Sequence[Any], frames: Sequence[Any],
               summary: Any, metric: Metric | None = None,
               floor: Sequence[Any] | None = None) -> str | None:
    """An SVG line plot of one metric over the frames; None when it has no finite value.

    ``metric`` overrides how ``name`` is described; ``floor`` (one value per frame, as
    ``values``) is drawn as a second, grey line underneath.
    """
    metric = metric or metric_for(name)
    scale = 100.0 if metric.percent else 1.0
    values = list(values)
    floor = list(floor) if floor is not None and len(floor) == len(values) else []
    frames = [as_number(frame) for frame in frames]
    if len(frames) == len(values) and all(frame is not None for frame in frames):
        xs = frames
    elif len(frames) == len(values) + 1 and all(frame is not None for frame in frames):
        xs = frames[1:]  # a metric between consecutive frames (flicker)
    else:
        xs = [float(index) for index in range(len(values))]
    points = [(x, as_number(value)) for x, value in zip(xs, values)]
    finite = [(x, y * scale) for x, y in points if y is not None]
    if not finite:
        return None
    infinite = {x for x, value in zip(xs, values) if is_infinite(value)}
    missing = [x for x, y in points if y is None and x not in infinite]
    lines = [value * scale for value in thresholds_of(summary, metric)]
    floor_points = [(x, as_number(value)) for x, value in zip(xs, floor)]

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
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
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
        label = format_threshold(value / scale, metric)
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
                 f'rotate(-90)" text-anchor="middle">{escape(axis_unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def robustness_chart(name: str, robustness: list, efficacy: dict) -> str | None:
    """Horizontal grouped bars: per degradation, the protected value beside its floor."""
    metric = metric_for(name)
    rows = [("as evaluated (no extra degradation)",
             statistic_value(efficacy.get(name), metric), None, False)]
    for entry in robustness:
        rows.append((degradation_label(entry),
                     statistic_value(as_dict(entry.get("efficacy")).get(name), metric),
                     statistic_value(as_dict(entry.get("floor")).get(name), metric), True))
    if all(value is None and floor is None for _, value, floor, _ in rows[1:]):
        return None
    return bar_plot(metric, rows, f"{metric.label} under degradations ({metric.statistic})")


def bar_plot(metric: Metric, rows: list, title: str) -> str:
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
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    for tick in x_ticks:
        x = px(tick)
        parts.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
                     f'y2="{axis_top}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{axis_top + 19}" '
                     f'text-anchor="middle">{_tick_text(tick, step)}</text>')
    unit = "%" if metric.percent else metric.unit
    parts.append(f'<text class="axis-label" x="{left + plot_width / 2:.1f}" '
                 f'y="{axis_top + 41}" text-anchor="middle">{escape(metric.label)}'
                 f'{" (" + escape(unit) + ")" if unit else ""}</text>')
    for row, (label, value, floor, has_floor) in enumerate(rows):
        y = top + row * row_height
        parts.append(f'<text class="bar-label" x="{left + 4}" y="{y + 17}">{escape(label)}</text>')
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
                         f'{format_value(number, metric)}</text>')
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
