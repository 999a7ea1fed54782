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
(:mod:`~vdf_stream.evaluation.pictures`: JPEG, the original / protected pairs as lossless
PNG), plots are inline SVG (:mod:`~vdf_stream.evaluation.charts`, no plotting library), and
the style sheet ``report.css`` and the few lines of ``report.js`` that switch the pairs on a
click, package data beside this module, are inlined. The verdicts are in
:mod:`~vdf_stream.evaluation.verdicts` (the efficacy answer is
:mod:`~vdf_stream.evaluation.criteria`'s rule), the sections below them in
:mod:`~vdf_stream.evaluation.sections`, how each metric is named and formatted in
:mod:`~vdf_stream.evaluation.presentation`.

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
-> ``{"unit", "description"}``, used for metrics the report does not describe) and
``parser_note``. Every key may be missing and every number
may be ``None`` or NaN: those are shown as "—". Metric names the report does not know are
shown by their raw name; ``pose_error`` is read as ``pose_error_degrees``.

``views``, objects with ``index``, ``original`` and ``protected`` (``(H, W, 3)`` uint8 RGB),
``original_reading`` and ``protected_reading`` (dicts with optional ``landmarks``
``(N, 2)`` frame pixels, ``box`` ``(x0, y0, x1, y1)``, ``mask`` ``(H, W)`` in [0, 1]),
``metrics`` (name -> value) and optionally ``visibility_map`` (``(H, W, 3)`` uint8 RGB:
ColorVideoVDP's picture of where a viewer would see the change) and ``jod`` (the frame's
JOD as a still image at its native size).
"""

from __future__ import annotations

import datetime
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from . import pictures
from .charts import line_plot
from .presentation import (DESCRIBED, EFFICACY_ORDER, FIDELITY_ORDER, KEY_FIGURES, METRICS,
                           MISSING, VISIBILITY_PARTS, as_dict, as_list, as_number, canonical,
                           escape, is_infinite, metric_for, ordered)
from .sections import (inputs_table, jod_card, jod_plots, key_figure, key_value_table,
                       robustness_section, summary_table, transfer_section, verdict_html,
                       visibility_section)
from .verdicts import efficacy_verdict, fidelity_verdict, robustness_verdict
from .. import __version__
from ..errors import OutputError

__all__ = ["write_report"]


@lru_cache(maxsize=None)
def package_text(name: str) -> str:
    """A text file shipped beside this module (``report.css``, ``report.js``)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _page(result: dict, views: list) -> str:
    config = as_dict(result.get("config"))
    versions = as_dict(result.get("versions"))
    machine = as_dict(result.get("machine"))
    inputs = as_dict(result.get("inputs"))
    fidelity = canonical(result.get("fidelity"))
    efficacy = canonical(result.get("efficacy"))
    per_frame = canonical(result.get("per_frame"))
    frames = as_list(result.get("frames"))
    parser = result.get("parser")
    parser = str(parser) if parser else None
    if parser and result.get("parser_note"):
        parser = f"{parser}: {result['parser_note']}"
    robustness = [{**entry, "efficacy": canonical(entry.get("efficacy")),
                   "floor": canonical(entry.get("floor"))}
                  for entry in as_list(result.get("robustness")) if isinstance(entry, dict)]
    timing = as_dict(result.get("timing"))
    notes = [str(note) for note in as_list(result.get("notes"))]
    visibility = as_dict(result.get("visibility"))

    original_name = Path(str(as_dict(inputs.get("original")).get("path") or "original")).name
    protected_name = Path(str(as_dict(inputs.get("protected")).get("path") or "protected")).name
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    version = versions.get("vdf-stream") or versions.get("vdf_stream") or __version__

    verdicts = [fidelity_verdict(fidelity, visibility), efficacy_verdict(efficacy),
                robustness_verdict(robustness)]
    sections = {"fidelity": fidelity, "efficacy": efficacy}
    cards = []
    if visibility:  # the video JOD leads; PSNR and SSIM follow the efficacy figures
        cards += [jod_card(visibility, name, label, key)
                  for name, label, key in VISIBILITY_PARTS]
        names = sorted(KEY_FIGURES, key=lambda name: METRICS[name].kind == "fidelity")
    else:
        names = list(KEY_FIGURES)
    for name in names:
        section = sections[METRICS[name].kind]
        cards.append(key_figure(name, section.get(name), parser,
                                 secondary=bool(visibility) and METRICS[name].kind == "fidelity"))

    seconds, per_frame_seconds = as_number(timing.get("seconds")), as_number(
        timing.get("seconds_per_frame"))
    evaluated = (f"{len(frames)} frames evaluated" + (
        f" (frames {int(min(frames))}\u2013{int(max(frames))})"
        if frames and all(as_number(frame) is not None for frame in frames) else "")
        if frames else "evaluated frames not listed")
    timing_text = (f"; evaluation took {seconds:.1f} s" if seconds is not None else "") + (
        f" ({per_frame_seconds:.3f} s per frame)" if per_frame_seconds is not None else "")

    body = [f"<h1>Protection report</h1>"
            f'<p class="subtitle">{escape(protected_name)} compared with {escape(original_name)} '
            f"\u00b7 {escape(evaluated)}{escape(timing_text)}</p>"]
    if notes:
        body.append('<div class="notes"><b>Notes</b><ul>'
                    + "".join(f"<li>{escape(note)}</li>" for note in notes) + "</ul></div>")
    body.append('<section id="verdict"><div class="verdicts">'
                + "".join(verdict_html(verdict) for verdict in verdicts) + "</div>"
                "<p class=\"legend\">The verdicts use rules of thumb (shown beside each "
                "figure), not guarantees: they say whether the measured face readings are "
                "off by enough to spoil the usual talking-face deepfake preprocessing.</p>"
                "</section>")
    body.append('<section id="figures"><h2>Key figures</h2>'
                f'<div class="figures">{"".join(cards)}</div></section>')
    body.append('<section id="visibility"><h2>Does it still look the same?</h2>'
                f"{visibility_section(visibility, fidelity)}</section>")
    body.append('<section id="all"><h2>All measurements</h2>'
                "<h3>Efficacy: are the face readings broken?</h3>"
                f"{summary_table(efficacy, EFFICACY_ORDER)}<p>Fidelity: see "
                '<a href="#visibility">Does it still look the same?</a> above.</p></section>')

    plots = jod_plots(visibility)
    for name in ordered(per_frame, FIDELITY_ORDER + EFFICACY_ORDER):
        metric = metric_for(name)
        summary = fidelity.get(name) if name in fidelity else efficacy.get(name)
        values = per_frame.get(name)
        values = list(values) if isinstance(values, (list, tuple, np.ndarray)) else []
        svg = line_plot(name, values, frames, summary)
        if svg is not None:
            content = svg
        elif values and all(is_infinite(value) for value in values):
            content = "<p>\u221e on every frame (identical frames)</p>"
        else:
            content = f"<p>{MISSING} no value measured</p>"
        explain = ("" if name in KEY_FIGURES  # explained among the key figures
                   else f'<p class="explain">{escape(metric.explanation)}</p>')
        plots.append(f'<div class="chart"><h3>{escape(metric.label)}</h3>{explain}{content}</div>')
    body.append('<section id="per-frame"><h2>Frame by frame</h2>'
                "<p>Each metric over the evaluated frames (the video JOD over the frames it "
                "measured). Dashed red lines are thresholds; "
                "\u00d7 on the axis marks a frame with no reading, \u221e at the top an "
                "infinite value (identical frames).</p>"
                + (f'<div class="plots">{"".join(plots)}</div>' if plots
                   else f"<p>{MISSING} no per-frame values</p>") + "</section>")
    body.append('<section id="robustness"><h2>Robustness: after re-encoding, resizing and '
                f"cleaning</h2>{robustness_section(robustness, efficacy)}</section>")

    transfer = as_dict(result.get("transfer"))
    if transfer:
        body.append('<section id="transfer"><h2>Transfer: face models of other families</h2>'
                    f"{transfer_section(transfer, frames)}</section>")

    if views:
        amplification = pictures.amplification_for(views)
        view_html = "".join(pictures.view_section(view, amplification) for view in views)
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
                "</summary>" + inputs_table(inputs)
                + (f"<h3>Parser</h3><p>{escape(parser)}</p>" if parser else "")
                + key_value_table("Configuration", config)
                + key_value_table("Versions", versions)
                + key_value_table("Machine", machine)
                + key_value_table("Timing", timing) + "</details>")
    body.append(f"<footer>Written by vdf-stream {escape(version)} on {created}.</footer>")
    title = f"Protection report: {protected_name}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>\n{package_text('report.css')}</style>"
            f"</head><body><main>{''.join(body)}</main>"
            + (f"<script>\n{package_text('report.js')}</script>" if views else "")
            + "</body></html>\n")


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
    result = as_dict(result)
    token = DESCRIBED.set(as_dict(result.get("metrics")))
    try:
        page = _page(result, list(views or []))
    finally:
        DESCRIBED.reset(token)
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
