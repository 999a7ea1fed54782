"""Build docs/results.md from every benchmarks/results/*.json, so that the figures the docs
cite and the figures the benchmarks wrote cannot drift apart.

    python tools/results_page.py            # (re)writes docs/results.md
    python tools/results_page.py --check    # exit 1 when docs/results.md is out of date

One section per kind of benchmark (what it measures, the script), then one subsection per
JSON file, named by the file (``docs/results.md#visibility_eps_single_face_amd-epyc-2cpu``):
the machine, the date and commit when recorded, the conditions, the command, and a table
of the figures. The JSON files differ per benchmark; each known shape has its own table,
and a file of an unknown shape is listed generically (its scalar fields and the scalar
columns of its lists of records), so that a new benchmark shows up before it has a table
of its own. Only the standard library: the page builds without torch or the models.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"

# Commands of the files that do not record their own, as the docs gave them when the files
# were written (the transfer and visibility files' commands are rebuilt from what they
# record instead).
COMMANDS = {
    "throughput-amd-epyc-2cpu": ["python benchmarks/throughput.py"],
    "eval_floor-amd-epyc-2cpu": ["python benchmarks/eval_floor.py --threads 1"],
    "protect_amd-epyc-2cpu": ["python benchmarks/protect.py --device cpu --share on"],
    "live-amd-epyc-2cpu": ["python benchmarks/live.py --threads 1 --device cpu --loops 6 "
                           "--no-visibility"],
    "live_2threads-amd-epyc-2cpu": [
        "python benchmarks/live.py --threads 2 --device cpu --loops 6 --no-visibility "
        "--output benchmarks/results/live_2threads-amd-epyc-2cpu.json"],
    "live_short_clip-amd-epyc-2cpu": [
        "python benchmarks/live.py --threads 1 --device cpu --loops 1 --sizes 640x360 "
        "--no-visibility --output benchmarks/results/live_short_clip-amd-epyc-2cpu.json"],
    "sharing_amd-epyc-2cpu": [
        "python benchmarks/sharing_efficacy.py --frames 8 --options robust=1 "
        "--json benchmarks/results/sharing_amd-epyc-2cpu.json"],
    "tradeoff_luma_amd-epyc-2cpu": [
        "python benchmarks/tradeoff.py --frames 4 --stride 16 --eps 4/255 8/255 12/255 "
        "--steps 40 --learning-rate 3 --chroma 0 --texture-floor 0.15 "
        "--json benchmarks/results/tradeoff_luma_amd-epyc-2cpu.json"],
    "tradeoff_luma_no_eot_amd-epyc-2cpu": [
        "python benchmarks/tradeoff.py --frames 4 --stride 16 --eps 4/255 8/255 12/255 "
        "--steps 40 --learning-rate 3 --chroma 0 --texture-floor 0.15 "
        "--transformations none --no-noise "
        "--json benchmarks/results/tradeoff_luma_no_eot_amd-epyc-2cpu.json"],
}


REBUILT = ("Command (rebuilt from the settings the file records; its rows may come from "
           "several such runs):")
LABELS = {"landmark_nme": "mesh NME", "pose_error": "pose deg", "mtcnn_nme": "MTCNN NME",
          "mtcnn_faces_lost": "MTCNN faces lost", "faceapi68_nme": "face-api NME",
          "faceapi68tiny_nme": "tiny NME", "faceapidet_faces_lost": "face-api detector lost",
          "faceapidet_box_shift": "face-api detector box shift"}

# ---------------------------------------------------------------------------------------
# Formatting


def num(value, digits: int | None = None) -> str:
    """A figure as the tables show it: ``-`` for none, integers as they are, floats with
    three significant digits or so (``digits`` decimals when given)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if digits is not None:
            return f"{value:.{digits}f}"
        size = abs(value)
        if size == 0:
            return "0"
        if size >= 100:
            return f"{value:.1f}"
        if size >= 1:
            return f"{value:.2f}"
        if size >= 0.01:
            return f"{value:.3f}"
        return f"{value:.4f}"
    return cell(value)


def degrees(value) -> str:
    """An angle: two decimals under one degree (the floors), one above."""
    if value is None:
        return "-"
    return f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}"


def percent(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def cell(value) -> str:
    """Text safe inside a Markdown table cell."""
    text = str(value).replace("\n", " ").replace("|", "\\|")
    return text


def code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"``{text}``"


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["(no rows)", ""]
    lines = ["| " + " | ".join(headers) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def commands_block(commands: list[str]) -> list[str]:
    return ["```sh", *commands, "```", ""] if commands else []


def machine_text(data: dict, stem: str) -> str:
    machine = data.get("machine")
    if isinstance(machine, str):
        return machine
    if isinstance(machine, dict):
        parts = [machine.get("cpu_model") or "CPU"]
        if machine.get("cpu_cores"):
            parts.append(f"{machine['cpu_cores']} cores")
        parts.append(f"GPU {machine['gpu']}" if machine.get("gpu") else "no GPU")
        if machine.get("torch_threads"):
            parts.append(f"{machine['torch_threads']} torch thread"
                         + ("s" if machine["torch_threads"] > 1 else ""))
        tag = f" (`{machine['tag']}`)" if machine.get("tag") else ""
        return ", ".join(parts) + tag
    return f"not recorded (file tag `{stem.rsplit('_', 1)[-1]}`)"


def header(data: dict, stem: str, commands: list[str], command_note: str = "") -> list[str]:
    """The lines every file's subsection opens with."""
    lines = [f"### {stem}", "", f"File: `benchmarks/results/{stem}.json`.", ""]
    facts = [f"machine: {machine_text(data, stem)}"]
    versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
    conditions = data.get("conditions")
    date = data.get("date") or (conditions.get("date") if isinstance(conditions, dict) else None)
    if date:
        facts.append(f"date: {date}")
    if versions.get("vdf_stream_commit"):
        facts.append(f"code: commit `{versions['vdf_stream_commit']}`")
    if isinstance(conditions, str):
        facts.append(f"conditions: {conditions}")
    elif isinstance(conditions, dict):
        said = [conditions[key] for key in ("label", "note") if conditions.get(key)]
        if said:
            facts.append("conditions: " + "; ".join(said))
    if data.get("note") and isinstance(data["note"], str):
        facts.append(f"note: {data['note']}")
    lines += [f"- {fact}" for fact in facts] + [""]
    if commands:
        lines += [command_note or "Command:", ""] + commands_block(commands)
    else:
        lines += ["Command: not recorded.", ""]
    return lines


def recorded_commands(data: dict, stem: str) -> list[str]:
    for value in (data.get("commands"), data.get("command"),
                  (data.get("configuration") or {}).get("command")
                  if isinstance(data.get("configuration"), dict) else None):
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and value:
            if value[0] in ("python", "python3", "vdf-stream"):
                return [shlex.join(str(item) for item in value)]      # one argv list
            return [str(item) for item in value]
    return COMMANDS.get(stem, [])


def summary_steps(summary: str | None) -> str:
    """``optimiser steps in all, eps`` from a vdf filter's summary line."""
    if not summary:
        return "-"
    steps = re.search(r"\((\d+) in all\)", summary)
    eps = re.search(r"eps ([\d.]+/255)", summary)
    return " ".join(part for part in (steps and steps.group(1),
                                      eps and f"(eps {eps.group(1)})") if part) or "-"


# ---------------------------------------------------------------------------------------
# The kinds


@dataclass(frozen=True)
class Kind:
    key: str
    title: str
    what: str
    matches: Callable[[dict], bool]
    render: Callable[[dict, str], list[str]]


def render_visibility(data: dict, stem: str) -> list[str]:
    rows_all = []
    for clip, part in (data.get("clips") or {}).items():
        for row in part.get("rows", []):
            rows_all.append((clip, part.get("source", clip), row))
    configs = []
    for _, _, row in rows_all:
        item = f"{row['label']}={row['graph']}"
        if item not in configs and "note" not in row:
            configs.append(item)
    command = ["python benchmarks/visibility.py --clips "
               + " ".join(dict.fromkeys(clip for clip, _, _ in rows_all))
               + " --configs " + " ".join(f'"{c}"' for c in configs)
               + f" --crf {num(float(data.get('crf', 23)), 0)}"
               + f" --stride {data.get('stride', 2)}"
               + (f" --full-screen-frames {data['full_screen_frames']}"
                  if data.get("full_screen_frames") else "")
               + (f" --threads {data['threads']}" if data.get("threads") else "")
               + f" --json benchmarks/results/{stem}.json"]
    notes = sorted({row["note"] for _, _, row in rows_all if row.get("note")})
    lines = header(data, stem, command, REBUILT)
    if notes:
        lines += ["Rows not made by that command:", ""] + [f"- {n}" for n in notes] + [""]
    rows = []
    for clip, source, row in rows_all:
        rows.append([source, row["label"], code(row["graph"]), num(row.get("frames")),
                     num(row.get("jod_native"), 2), num(row.get("jod_native_frame_min"), 2),
                     num(row.get("jod_full_screen"), 2), num(row.get("psnr"), 2),
                     num(row.get("ssim"), 3), num(row.get("landmark_nme")),
                     degrees(row.get("pose_error")), num(row.get("parse_flip"))])
    return lines + table(
        ["clip", "label", "graph", "frames", "video JOD", "lowest frame JOD",
         "full-screen JOD", "PSNR dB", "SSIM", "mesh NME", "pose deg", "parse flip"], rows)


def render_eval_floor(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    rows = []
    for clip in data.get("clips", []):
        for case in clip.get("cases", []):
            fidelity, efficacy = case.get("fidelity", {}), case.get("efficacy", {})
            rows.append([f"{clip['clip']} (stride {clip.get('stride', 1)})", case["case"],
                         num(fidelity.get("psnr", {}).get("median"), 2),
                         num(fidelity.get("ssim", {}).get("median"), 3),
                         num(efficacy.get("landmark_nme", {}).get("median")),
                         num(efficacy.get("pose_error", {}).get("median"), 2),
                         num(efficacy.get("parse_flip", {}).get("median")),
                         percent(efficacy.get("detection_loss", {}).get("mean"))])
    lines += table(["clip", "case", "PSNR dB", "SSIM", "NME", "pose deg", "parse flip",
                    "detection loss"], rows)
    timing = data.get("timing") or {}
    per_frame = timing.get("eval_seconds_per_frame") or {}
    if per_frame:
        lines += [f"Eval took {num(per_frame.get('median'))} s per frame (median; "
                  f"{num(per_frame.get('min'))}-{num(per_frame.get('max'))}), "
                  f"{num(timing.get('robustness_eval_seconds_per_frame'))} s per frame "
                  "with `--robustness`.", ""]
    return lines


def _stats(part: dict | None, name: str) -> dict:
    return ((part or {}).get(name) or {}) if isinstance(part, dict) else {}


def render_eval(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    if data.get("vdf_summary"):
        lines += [f"Filter summary: `{data['vdf_summary']}`", ""]
    frames = data.get("frames") or []
    lines += [f"Frames evaluated: {len(frames)}.", ""]
    visible = data.get("visibility")
    if visible:
        rows = []
        for name, label in (("native", "native size"), ("full_screen", "full screen")):
            part = visible.get(name)
            if part:
                rows.append([label, num(part.get("jod"), 2), num(part.get("floor_jod"), 2),
                             num(len(part.get("frames", [])))])
        lines += table(["visibility", "video JOD", "codec floor JOD", "frames"], rows)
    rows = []
    for group in ("fidelity", "efficacy"):
        for name, stats in (data.get(group) or {}).items():
            rows.append([name, num(stats.get("median")), num(stats.get("mean")),
                         num(stats.get("min")), num(stats.get("max"))])
    lines += table(["metric", "median", "mean", "min", "max"], rows)
    robustness = data.get("robustness") or []
    if robustness:
        rows = [[item["label"],
                 num(_stats(item.get("efficacy"), "landmark_nme").get("median")),
                 num(_stats(item.get("floor"), "landmark_nme").get("median")),
                 num(_stats(item.get("efficacy"), "pose_error").get("median"), 1),
                 num(_stats(item.get("floor"), "pose_error").get("median"), 2)]
                for item in robustness]
        lines += ["After each degradation of the protected file (medians), beside the same "
                  "degradation of the original (floor):", ""]
        lines += table(["degradation", "NME", "NME floor", "pose deg", "pose floor deg"], rows)
    transfer = data.get("transfer")
    if transfer:
        rows = [[name, num(stats.get("median")), num(stats.get("mean")),
                 num(_stats(transfer.get("floor"), name).get("median")
                     if name.endswith("nme") else _stats(transfer.get("floor"), name).get("mean"))]
                for name, stats in (transfer.get("efficacy") or {}).items()]
        lines += [f"Readers of other families (floor: {transfer.get('floor_label', '-')}):", ""]
        lines += table(["reading", "median", "mean", "floor"], rows)
    return lines


RUN_COLUMNS = (("protect_fps", "protect fps", None), ("landmark_nme", "NME", None),
               ("pose_error", "pose deg", 1), ("parse_flip", "parse flip", None),
               ("psnr", "PSNR dB", 2), ("ssim", "SSIM", 3),
               ("ssim_share_below_0.95", "frames SSIM < 0.95", "percent"),
               ("temporal_flicker", "flicker", 2), ("frames_evaluated", "frames", None))


def render_runs(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    runs = data.get("runs") or []
    columns = [column for column in RUN_COLUMNS if any(column[0] in run for run in runs)]
    rows = []
    for run in runs:
        row = [run.get("clip", data.get("clip", "-")), code(run["graph"]),
               summary_steps(run.get("vdf_summary"))]
        for key, _, digits in columns:
            value = run.get(key)
            row.append(percent(value) if digits == "percent" else num(value, digits))
        rows.append(row)
    lines += table(["clip", "graph", "optimiser steps"] + [label for _, label, _ in columns],
                   rows)
    speed = data.get("speed")
    if isinstance(speed, dict):
        for name, part in speed.items():
            lines += [f"Speed, {name}: {part.get('what', '')}", ""]
            figures = {key: value for key, value in part.items() if key != "what"}
            lines += ["```json", json.dumps(figures, indent=1), "```", ""]
    return lines


def render_protect(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    configuration = data.get("configuration") or {}
    lines += [f"{configuration.get('frames', '?')} frames of {configuration.get('source', '?')}, "
              f"encoded with {configuration.get('encoder', '?')}; models loaded before "
              f"timing ({num(configuration.get('warm_up_seconds'))} s).", ""]
    rows = []
    for case in data.get("cases", []):
        vdf, stages = case.get("vdf") or {}, case.get("stage_seconds") or {}
        seconds = vdf.get("seconds") or {}
        transcode = case.get("transcode") or {}
        baseline = transcode.get("ffmpeg") or transcode.get("engine_null") or {}
        rows.append([case.get("size"), num(case.get("threads")), case.get("share"),
                     num(case.get("fps")), num(baseline.get("fps")),
                     num(case.get("speed_vs_transcode")),
                     f"{num(vdf.get('optimiser_steps'))} ({num(vdf.get('steps_per_frame'))})",
                     num(seconds.get("optimise")), num(seconds.get("apply")),
                     num(seconds.get("detect")),
                     f"{num(stages.get('decode'))} / {num(stages.get('encode'))}",
                     num(case.get("sharing_speedup"))])
    return lines + table(["size", "threads", "share", "fps", "transcode fps",
                          "x transcode", "optimiser steps (per frame)", "optimise s",
                          "apply s", "detect s", "decode / encode s", "sharing speed-up"],
                         rows)


def render_live(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    configuration = data.get("configuration") or {}
    lines += [f"Source: {configuration.get('source', '?')}; options "
              f"{code(json.dumps(configuration.get('options', {})))}; recording "
              f"{configuration.get('recording', '?')}; torch threads "
              f"{num(configuration.get('torch_threads'))}.", ""]
    rows = []
    for case in data.get("cases", []):
        latency = case.get("added_latency_ms") or {}
        evaluation = case.get("eval") or {}
        fidelity, efficacy = evaluation.get("fidelity") or {}, evaluation.get("efficacy") or {}
        rows.append([case.get("size"), num(case.get("capture_fps")),
                     num(case.get("delivered_fps")),
                     f"{case.get('dropped_at_capture')} of {case.get('captured')}",
                     f"{num(latency.get('p50'), 0)} / {num(latency.get('p95'), 0)}",
                     num(case.get("first_parameters_seconds")),
                     num(case.get("fallback_frames")), num(fidelity.get("psnr"), 2),
                     num(fidelity.get("ssim"), 3), num(efficacy.get("landmark_nme")),
                     num(efficacy.get("pose_error"), 1), num(efficacy.get("parse_flip"))])
    return lines + table(["size", "captured fps", "delivered fps", "dropped at capture",
                          "added latency p50 / p95 ms", "first parameters s",
                          "fallback frames", "PSNR dB", "SSIM", "NME", "pose deg",
                          "parse flip"], rows)


def render_sharing(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    lines += [f"{data.get('frames')} frames of {data.get('clip')}, encoded together at CRF "
              f"{data.get('crf')}.", ""]
    rows = [[row.get("share"), code(row.get("options", "")), num(row.get("steps")),
             num(row.get("keyframes")), percent(row.get("reuse_rate")),
             num(row.get("seconds")), num(row.get("landmark_nme")),
             num(row.get("pose_error"), 2), num(row.get("parse_flip")),
             num(row.get("psnr"), 2), num(row.get("ssim"), 3)]
            for row in data.get("rows", [])]
    return lines + table(["share", "options", "optimiser steps", "keyframes", "reuse",
                          "seconds", "NME", "pose deg", "parse flip", "PSNR dB", "SSIM"], rows)


def render_tradeoff(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    transformations = data.get("transformations") or {}
    on = any(transformations.get(key) for key in ("jpeg_probability", "blur_probability",
                                                  "h264_probability"))
    lines += [f"{data.get('frames')} frames of {data.get('clip')} ({data.get('stride')} apart), "
              f"each optimised on its own ({data.get('steps')} steps, learning rate "
              f"{num(data.get('learning_rate'))}, seed {data.get('seed')}), then libx264 CRF "
              f"{data.get('crf')}; look {code(json.dumps(data.get('perturb_options', {})))}; "
              f"weights {code(json.dumps(data.get('weights', {})))}; transformations during "
              f"optimisation: {'on' if on else 'off'}.", ""]
    rows = [[row.get("eps"), row.get("method"), num(row.get("landmark_nme")),
             num(row.get("pose_error"), 2), num(row.get("parse_flip")),
             num(row.get("psnr"), 2), num(row.get("ssim"), 3),
             num(row.get("psnr_before_encoding"), 2)]
            for row in data.get("rows", [])]
    return lines + table(["eps", "method", "NME", "pose deg", "parse flip", "PSNR dB",
                          "SSIM", "PSNR before encoding"], rows)


def render_batch(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    results = data.get("results") or {}
    rows = []
    for name, case in (results.get("scaling") or {}).items():
        for run in case.get("runs", []):
            rows.append([code(case.get("graph", name)), str(run.get("workers")),
                         num(run.get("cpus_per_task")), num(run.get("fps")),
                         num(run.get("speedup")), num(run.get("efficiency")),
                         num(run.get("fps_with_ray_start")),
                         num(run.get("unit_cpu_seconds_per_frame"))])
        plain = case.get("plain_loop")
        if plain:
            rows.append([code(case.get("graph", name)), "plain loop, no Ray",
                         num(float(plain.get("threads", 0))), num(plain.get("fps")), "-", "-",
                         "-", num(plain.get("unit_cpu_seconds_per_frame"))])
    if rows:
        lines += ["Scaling:", ""] + table(["graph", "workers", "threads each", "fps",
                                           "speed-up", "efficiency", "fps incl. Ray start",
                                           "CPU s per frame"], rows)
    split = results.get("split") or {}
    rows = []
    for name, case in (split.get("cases") or {}).items():
        evaluation = case.get("eval") or {}
        rows.append([name, str(case.get("workers")), str(case.get("segments")),
                     num(case.get("fps")), num(case.get("unit_cpu_seconds_per_frame")),
                     num(evaluation.get("landmark_nme_median")),
                     num(evaluation.get("pose_error_median"), 2),
                     num(evaluation.get("psnr_median"), 2)])
    if rows:
        lines += [f"Splitting ({split.get('clip', '?')}, segments of "
                  f"{num(split.get('split_seconds'))} s):", ""]
        lines += table(["case", "workers", "segments", "fps", "CPU s per frame",
                        "NME median", "pose deg median", "PSNR dB"], rows)
    return lines


def transfer_command(data: dict, stem: str) -> str:
    configuration = data.get("configuration") or {}
    parts = ["python benchmarks/transfer.py",
             "--clips " + " ".join(configuration.get("clips") or {}),
             "--configurations " + " ".join(configuration.get("configurations") or [])]
    techniques = configuration.get("techniques") or []
    if techniques:
        parts.append("--techniques " + " ".join(techniques))
        parts.append("--technique-configurations "
                     + " ".join(configuration.get("technique_configurations") or []))
    defaults = (("frames_per_clip", "--frames", 4), ("stride", "--stride", 16),
                ("eps", "--eps", "8/255"), ("steps", "--steps", 40),
                ("learning_rate", "--learning-rate", 3.0), ("seed", "--seed", 0),
                ("margin_target", "--margin-target", 0.15),
                ("momentum", "--momentum", 1.0), ("feature_weight", "--feature-weight", 1.0))
    for key, flag, default in defaults:
        if key in configuration and configuration[key] != default:
            parts.append(f"{flag} {configuration[key]}")
    diversity = configuration.get("diversity") or {}
    if diversity.get("scale_min", 0.75) != 0.75:
        parts.append(f"--diversity-scale-min {diversity['scale_min']}")
    if diversity.get("region_jitter", 0.05) != 0.05:
        parts.append(f"--diversity-jitter {diversity['region_jitter']}")
    if "ghost_strength" in configuration and any("ghost" in t for t in techniques):
        parts.append(f"--ghost-strength {configuration['ghost_strength']}")
    if data.get("noise_sign") is None:
        parts.append("--no-noise")
    parts.append(f"--json benchmarks/results/{stem}.json")
    return " ".join(parts)


def render_transfer(data: dict, stem: str) -> list[str]:
    configuration = data.get("configuration") or {}
    lines = header(data, stem, [transfer_command(data, stem)], REBUILT)
    clips = configuration.get("clips") or {}
    lines += [f"{configuration.get('frames_per_clip')} frames of each of "
              f"{', '.join(clips)} ({configuration.get('stride')} apart), eps "
              f"{configuration.get('eps')}, {configuration.get('steps')} steps, seed "
              f"{configuration.get('seed')}, {configuration.get('optimisation', '')}; after "
              f"libx264 CRF {configuration.get('crf')}. Medians over both clips; _italic_: "
              "the column's model was optimised against (white box).", ""]
    columns = list((configuration.get("columns") or {}).items())
    rows = []

    def add(name: str, technique: str, pooled: dict, models: list[str], clips_part: dict):
        cpu = [part.get("cpu_seconds_per_keyframe") for part in clips_part.values()
               if isinstance(part, dict) and part.get("cpu_seconds_per_keyframe") is not None]
        row = [name, technique]
        for key, spec in columns:
            value = (percent(pooled.get(key)) if key.endswith("lost")
                     else degrees(pooled.get(key)) if key == "pose_error"
                     else num(pooled.get(key)))
            row.append(f"_{value}_" if spec.get("model") in models else value)
        row += [num(pooled.get("psnr"), 2), num(pooled.get("ssim"), 3),
                num(sum(cpu) / len(cpu), 1) if cpu else "-"]
        rows.append(row)

    in_matrix = {item["configuration"] for item in data.get("matrix") or []}
    for item in data.get("matrix") or []:
        add(item["configuration"], "baseline", item.get("pooled") or {},
            item.get("models") or item["configuration"].split("+"), item.get("clips") or {})
    for item in data.get("techniques") or []:
        if item["technique"] == "baseline" and item["configuration"] in in_matrix:
            continue                      # the matrix's own row, run again beside them
        add(item["configuration"], item["technique"], item.get("pooled") or {},
            item["configuration"].split("+"), item.get("clips") or {})
    for name, label in (("noise_sign", "sign noise"), ("floor", "floor: CRF 23 alone")):
        if data.get(name):
            add(label, "-", data[name].get("pooled") or {}, [], {})
    return lines + table(["optimised against", "technique"]
                         + [LABELS.get(key, key) for key, _ in columns]
                         + ["PSNR dB", "SSIM", "CPU s per keyframe"], rows)


TRANSFER_READINGS = ("mtcnn_nme", "mtcnn_faces_lost", "faceapi68_nme", "faceapi68tiny_nme",
                     "faceapidet_faces_lost", "faceapidet_box_shift")


def render_transfer_runs(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    for key, value in data.items():
        if key in ("benchmark", "commands", "machine", "runs", "note"):
            continue
        if isinstance(value, str):
            lines.append(f"- {key}: {value}")
        elif isinstance(value, dict) and all(not isinstance(v, (dict, list))
                                             for v in value.values()):
            lines.append(f"- {key}: " + "; ".join(f"{k} {num(v)}" for k, v in value.items()))
    lines.append("")
    runs = data.get("runs") or []
    readings = [key for key in TRANSFER_READINGS
                if any(key in (run.get("transfer_median") or {}) for run in runs)]
    rows = []
    floors = {}
    for run in runs:
        transfer = run.get("transfer_median") or {}
        floors.setdefault(run.get("clip"), run.get("transfer_floor_median") or {})
        rows.append([run.get("tag", "-"), run.get("clip", "-"), code(run.get("vf", "")),
                     summary_steps(run.get("filter_summary")),
                     num(run.get("landmark_nme_median")), degrees(run.get("pose_error_median"))]
                    + [percent(transfer.get(key)) if key.endswith("lost")
                       else num(transfer.get(key)) for key in readings]
                    + [num(run.get("psnr_median"), 2), num(run.get("ssim_median"), 3),
                       num(run.get("frames_read"))])
    lines += table(["tag", "clip", "graph", "optimiser steps", "mesh NME", "pose deg"]
                   + [LABELS[key] for key in readings] + ["PSNR dB", "SSIM", "frames read"],
                   rows)
    rows = [[clip, *[percent(floor.get(key)) if key.endswith("lost") else num(floor.get(key))
                     for key in readings]] for clip, floor in floors.items()]
    lines += ["Floors (the original after CRF 23 alone, the same readers):", ""]
    lines += table(["clip"] + [LABELS[key] for key in readings], rows)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(value.get("runs"), list):
            lines += [f"{key}: {value.get('note', '')}", ""]
            sub = value["runs"]
            names = list(dict.fromkeys(k for run in sub for k in run))
            lines += table(names, [[num(run.get(k)) if not isinstance(run.get(k), str)
                                    else run.get(k) for k in names] for run in sub])
    return lines


def render_throughput(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    results = data.get("results") or []
    methods = list(dict.fromkeys(m for result in results for m in result.get("methods", {})))
    rows = []
    for result in results:
        row = [result.get("clip"), result.get("preset"), num(result.get("frames"))]
        row += [num(result["methods"].get(m, {}).get("median_fps")) for m in methods]
        row += [num((result.get(key) or {}).get("engine_vs_ffmpeg_cli"))
                for key in ("fps_ratios", "paired_fps_ratios", "cpu_seconds_ratios")]
        rows.append(row)
    return lines + table(["clip", "preset", "frames"] + [f"{m} fps" for m in methods]
                         + ["engine / ffmpeg fps", "per-round", "CPU seconds"], rows)


def render_models(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    rows = [[r.get("case"), r.get("device"), r.get("dtype"), num(r.get("batch")), r.get("mode"),
             num(r.get("median_ms")), num(r.get("median_cpu_ms")),
             num(r.get("median_ms_per_frame")), r.get("error") or ""]
            for r in data.get("results", [])]
    return lines + table(["model", "device", "dtype", "batch", "mode", "median ms",
                          "median CPU ms", "ms per frame", "error"], rows)


APPLY_STAGES = ("detect", "prepare", "prepare.small", "prepare.crop", "prepare.warp",
                "prepare.attention", "prepare.bounds", "change", "bound", "apply", "total",
                "whole_frame")
OPTIMISER_STEP = ("perturb", "terms", "backward_and_update", "step")
APPLY_STAGES_BEFORE = ("detect", "prepare.small", "prepare.crop", "prepare.attention",
                       "prepare.bounds", "change.frame", "change.face", "bound", "total")


def render_apply_stages(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    cases = data.get("cases", [])
    stages = (APPLY_STAGES if any("apply" in (case.get("ms") or {}) for case in cases)
              else APPLY_STAGES_BEFORE)
    rows = []
    for case in cases:
        figures = case.get("ms") or {}
        rows.append([case.get("size"), num(case.get("threads"))]
                    + [num(figures.get(name)) for name in stages]
                    + [num(figures.get("floor_total"))])
    lines += table(["size", "threads", *stages, "floor"], rows)
    minimums = [[case.get("size"), num(case.get("threads"))]
                + [num((case.get("ms") or {}).get("minimum", {}).get(name)) for name in stages]
                for case in cases if (case.get("ms") or {}).get("minimum")]
    if minimums:
        lines += ["The fastest run of each stage (ms):", ""]
        lines += table(["size", "threads", *stages], minimums)
    steps = [[case.get("size"), num(case.get("threads"))]
             + [num((case.get("ms") or {}).get("optimiser_step", {}).get(name))
                for name in OPTIMISER_STEP]
             for case in cases if (case.get("ms") or {}).get("optimiser_step")]
    if steps:
        lines += ["One optimiser step on the face mesh's window (ms, medians):", ""]
        lines += table(["size", "threads", *OPTIMISER_STEP], steps)
    return lines


def render_steps_tradeoff(data: dict, stem: str) -> list[str]:
    lines = header(data, stem, recorded_commands(data, stem))
    transcode = data.get("transcode") or {}
    lines += [f"`vdf-stream protect` of {data.get('clip')} at {num(data.get('torch_threads'))} "
              f"torch thread(s), each variant's options added to the defaults; the same clip "
              f"through ffmpeg (libx264 medium CRF 18) took {num(transcode.get('seconds'))} s. "
              "Efficacy: medians of `vdf-stream eval` on the output as written (CRF 18).", ""]
    rows = []
    for row in data.get("rows", []):
        efficacy = row.get("efficacy_median") or {}
        rows.append([code(row.get("variant")), num(row.get("seconds")), num(row.get("fps")),
                     num(row.get("speed_vs_transcode")), num(row.get("optimiser_steps")),
                     num(efficacy.get("landmark_nme")), num(efficacy.get("pose_error"), 2),
                     num(efficacy.get("parse_flip")), num(row.get("psnr_median"), 2)])
    return lines + table(["variant", "seconds", "fps", "x transcode", "optimiser steps",
                          "NME", "pose deg", "parse flip", "PSNR dB"], rows)


def render_generic(data: dict, stem: str) -> list[str]:
    """Any shape: its scalar fields, then the scalar columns of each list of records."""
    lines = header(data, stem, recorded_commands(data, stem))
    lines += ["(No table of its own yet: its fields as they are.)", ""]
    for key, value in data.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            lines.append(f"- {key}: {num(value)}")
    lines.append("")
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            names = list(dict.fromkeys(k for record in value for k, v in record.items()
                                       if not isinstance(v, (dict, list))))
            if names:
                lines += [f"{key}:", ""]
                lines += table(names, [[num(record.get(k)) for k in names] for record in value])
    return lines


def _runs_with(data: dict, key: str) -> bool:
    runs = data.get("runs")
    return isinstance(runs, list) and bool(runs) and isinstance(runs[0], dict) and key in runs[0]


def _rows_with(data: dict, *keys: str) -> bool:
    rows = data.get("rows")
    return (isinstance(rows, list) and bool(rows) and isinstance(rows[0], dict)
            and all(key in rows[0] for key in keys))


KINDS = (
    Kind("visibility", "Visibility against efficacy (`benchmarks/visibility.py`)",
         "Each filter graph protects the clip and is published with libx264 at the CRF shown; "
         "`vdf-stream eval` then gives ColorVideoVDP's video JOD (10 = no visible difference; "
         "one JOD lower = 75% of viewers pick the original) at native size and, where "
         "measured, at full screen (1080 lines, 12 frames from the middle), with the face "
         "mesh's landmark NME (over the eye distance) and head-pose error. The graph `null` "
         "is the codec floor: the clip re-encoded alone. How to read it: "
         "[visibility.md](visibility.md).",
         lambda d: d.get("benchmark") == "visibility", render_visibility),
    Kind("eval_floor", "The floors (`benchmarks/eval_floor.py`)",
         "What encoding alone and sign noise at the protection's old budgets do to the face "
         "readers and to fidelity: the figures every protection must stand clear of.",
         lambda d: d.get("benchmark") == "eval_floor", render_eval_floor),
    Kind("eval", "`vdf-stream eval` reports",
         "The JSON `vdf-stream eval` writes, for protected files of their time: medians "
         "over the frames read, and with `--robustness` / `--transfer` the efficacy after "
         "each degradation and in readers of other families, each beside its floor.",
         lambda d: "schema" in d and "metrics" in d and "config" in d, render_eval),
    Kind("runs", "Protect, then eval, end to end (gathered by hand)",
         "`vdf-stream protect CLIP -o OUT --crf 23 --vf GRAPH`, then `vdf-stream eval`; one "
         "row per run, medians over the frames read. The budget of each run is in its "
         "optimiser column (eps of its time).",
         lambda d: _runs_with(d, "vdf_summary"), render_runs),
    Kind("tradeoff", "Budget against efficacy on single frames (`benchmarks/tradeoff.py`)",
         "A few frames optimised one by one, encoded with real libx264, read by eval's "
         "reader; sign noise of the same eps as the baseline.",
         lambda d: _rows_with(d, "method", "eps"), render_tradeoff),
    Kind("sharing", "Parameter sharing on and off (`benchmarks/sharing_efficacy.py`)",
         "The same frames with the keyframe window (share on) and every frame optimised "
         "on its own (share off): steps, time and efficacy after CRF 23.",
         lambda d: _rows_with(d, "share", "steps"), render_sharing),
    Kind("protect", "Protection speed (`benchmarks/protect.py`)",
         "The `vdf` filter end to end and per stage at three sizes, sharing on and off, "
         "after a warm-up that loads the models.",
         lambda d: isinstance(d.get("cases"), list)
         and "share" in (d.get("configuration") or {}), render_protect),
    Kind("live", "Live mode (`benchmarks/live.py`)",
         "`vdf-stream live` fed by a clip at its real pace: delivered frames, drops, added "
         "latency, and `vdf-stream eval` of the recording against the captured frames.",
         lambda d: isinstance(d.get("cases"), list)
         and "loops" in (d.get("configuration") or {}), render_live),
    Kind("batch", "Batch on Ray (`benchmarks/batch.py`)",
         "`vdf-stream batch` on a local Ray with 1, 2 and 4 workers against a plain loop, "
         "and one pass against segments.",
         lambda d: d.get("benchmark") == "batch", render_batch),
    Kind("transfer", "Transfer to readers not optimised against (`benchmarks/transfer.py`)",
         "Frames optimised one by one against a set of face readers (`targets=`), published "
         "at CRF 23, then read by every reader with its own detection: the cells of readers "
         "left out of the set are the transfer. At the budgets of their time (eps 8/255 "
         "unless shown).",
         lambda d: d.get("benchmark") == "transfer", render_transfer),
    Kind("transfer_runs", "Transfer through the filter, end to end",
         "`vdf-stream protect` with `--vf GRAPH` at CRF 23, then `vdf-stream eval --transfer`: "
         "the mesh and the readers of other families (MTCNN, face-api's two 68-point "
         "networks, its face detector), medians over the frames read.",
         lambda d: _runs_with(d, "transfer_median"), render_transfer_runs),
    Kind("throughput", "Engine throughput (`benchmarks/throughput.py`)",
         "Decode -> `null` -> encode against the ffmpeg command line and plain PyAV loops "
         "with the same settings (libx264 CRF 18, audio copied).",
         lambda d: d.get("benchmark") == "throughput", render_throughput),
    Kind("apply_stages", "The per-frame path, stage by stage (`benchmarks/apply_stages.py`)",
         "Milliseconds per frame (medians, then the fastest runs) of each stage of applying "
         "parameters already made, as live mode does for every frame: `prepare` is what the "
         "frame alone gives (live mode runs it on its prepare thread), `apply` what the "
         "parameters add (its protecting thread), `total` both and the whole frame's "
         "output, `whole_frame` the same output without the face box. `floor`: one FFT pair "
         "on the face crop and on the frame term's grid, two warps and one elementwise bound "
         "over the frame, the least that path can cost. Medians move up to two-fold between "
         "runs on this machine.",
         lambda d: d.get("benchmark") == "apply_stages", render_apply_stages),
    Kind("steps_tradeoff", "File mode's speed against its efficacy (`benchmarks/steps_tradeoff.py`)",
         "What fewer optimiser steps would buy: each variant's time, its share of a plain "
         "transcode's speed, and the efficacy it keeps.",
         lambda d: d.get("benchmark") == "steps_tradeoff", render_steps_tradeoff),
    Kind("models", "Face model speed (`benchmarks/models.py`)",
         "Forward and forward + backward times of the face models and the face pipeline.",
         lambda d: d.get("benchmark") == "models", render_models),
)
GENERIC = Kind("generic", "Other results",
               "Files of a shape this page has no table for yet.",
               lambda d: True, render_generic)


def kind_of(data) -> Kind:
    if isinstance(data, dict):
        for kind in KINDS:
            if kind.matches(data):
                return kind
    return GENERIC


# ---------------------------------------------------------------------------------------
# The page


def build_page(results: Path = RESULTS) -> str:
    files = sorted(results.glob("*.json"))
    grouped: dict[str, list[tuple[str, dict]]] = {}
    for path in files:
        data = json.loads(path.read_text())
        kind = kind_of(data)
        grouped.setdefault(kind.key, []).append((path.stem, data if isinstance(data, dict)
                                                 else {"value": data}))
    kinds = [kind for kind in (*KINDS, GENERIC) if kind.key in grouped]
    lines = ["# Measured results", "",
             "<!-- Generated by tools/results_page.py from benchmarks/results/*.json: do not "
             "edit by hand; run `python tools/results_page.py` after adding results. -->", "",
             "Every figure the benchmarks saved, as they saved it. Each file's figures are of "
             "the code and the defaults of their day (commit and budget shown): most "
             "efficacy runs predate the presets set by visibility "
             "([filter.md](filter.md#presets)), when the default budget was eps 8/255.", "",
             "Contents:", ""]
    for kind in kinds:
        lines.append(f"- {kind.title}: " + ", ".join(
            f"[{stem}](#{stem.lower()})" for stem, _ in grouped[kind.key]))
    lines.append("")
    for kind in kinds:
        lines += [f"## {kind.title}", "", kind.what, ""]
        for stem, data in grouped[kind.key]:
            lines += kind.render(data, stem)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the page differs from what the "
                             "results give")
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=PAGE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    page = build_page(args.results)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != page:
            print(f"{args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}"
                  " is out of date: run python tools/results_page.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(page)
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}"
          f" from {len(list(args.results.glob('*.json')))} result files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
