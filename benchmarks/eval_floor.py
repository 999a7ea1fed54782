"""The floor every defense must beat: what the face pipeline suffers from the encoder alone
and from random noise of the defense's strength, and how long ``vdf-stream eval`` takes.

For each real clip, three "protected" versions are made the way a user makes them
(:func:`vdf_stream.api.protect`, libx264 CRF 23, preset medium, audio copied), in a
temporary folder:

``H.264 CRF 23 alone``
    ``--vf null``: only the re-encode;
``sign noise 4/255 + CRF 23``
    ``--vf noise=eps=4/255:kind=sign``, then the same encode;
``sign noise 8/255 + CRF 23``
    ``--vf noise=eps=8/255:kind=sign``, then the same encode.

Each is evaluated against the original clip with :func:`vdf_stream.evaluation.evaluate.evaluate`
(landmark NME, head-pose error, parse flip, detection loss; PSNR and SSIM beside them), on
``single_face.mp4`` (all 72 frames) and ``WolfgangLanger_Pexels.mp4`` (every 4th frame,
118 frames). A defense is only worth its name far above these figures.

Timing: seconds per evaluated frame of every run above (plain eval), and of one
``--robustness`` eval (13 degradations) on ``single_face.mp4`` every 6th frame.

The Markdown table goes to stdout; everything (figures, summaries, resolved configuration,
library versions, machine and load) to ``benchmarks/results/eval_floor-<machine tag>.json``.

Usage::

    python benchmarks/eval_floor.py                 # about 5 minutes on 2 idle cores
    python benchmarks/eval_floor.py --threads 1     # steadier on a shared machine
    python benchmarks/eval_floor.py --quick --output /tmp/floor.json   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS_FOLDER = REPOSITORY / "benchmarks" / "results"
SCHEMA_VERSION = 1
CRF = 23
PRESET = "medium"

CASES = (
    ("H.264 CRF 23 alone", "null"),
    ("sign noise 4/255 + CRF 23", "noise=eps=4/255:kind=sign"),
    ("sign noise 8/255 + CRF 23", "noise=eps=8/255:kind=sign"),
)
# clip name -> stride (frames 0, S, 2S, ...)
CLIPS = (("single_face.mp4", 1), ("WolfgangLanger_Pexels.mp4", 4))
ROBUSTNESS_TIMING = ("single_face.mp4", 6)
FIGURES = (("landmark_nme", "median"), ("landmark_nme", "mean"), ("pose_error", "median"),
           ("pose_error", "mean"), ("parse_flip", "median"), ("parse_flip", "mean"),
           ("detection_loss", "mean"))


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 6 frames per clip, robustness on 2 frames")
    parser.add_argument("--device", default="cpu",
                        help="where the face pipeline runs (default cpu: the figure asked for)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default 0: torch's own choice, one per core); "
                             "1 is steadier on a machine shared with other processes")
    parser.add_argument("--output", type=Path, help="JSON path (default: benchmarks/results/"
                                                    "eval_floor-<machine tag>.json)")
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    return parser.parse_args(argv)


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPOSITORY), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def run_case(original: Path, label: str, graph: str, stride: int, frames: int | None,
             device: str, folder: Path, log) -> dict:
    from vdf_stream.api import protect
    from vdf_stream.evaluation.evaluate import EvalOptions, evaluate
    from vdf_stream.media.sinks import EncodeOptions

    target = folder / f"{original.stem}-{graph.split('=')[0]}-{len(os.listdir(folder))}.mp4"
    started = time.perf_counter()
    protect(str(original), str(target), vf=graph, device=device,
            encode=EncodeOptions(crf=CRF, preset=PRESET))
    protect_seconds = time.perf_counter() - started
    log(f"  {label}: protected in {protect_seconds:.1f} s, evaluating...")
    result, _ = evaluate(str(original), str(target),
                         EvalOptions(frames=frames, stride=stride, device=device))
    log(f"  {label}: evaluated {len(result['frames'])} frames in "
        f"{result['timing']['seconds']:.1f} s")
    return {
        "case": label,
        "filter_graph": graph,
        "encode": {"codec": "libx264", "crf": CRF, "preset": PRESET},
        "protect_seconds": protect_seconds,
        "frames": result["frames"],
        "fidelity": result["fidelity"],
        "efficacy": result["efficacy"],
        "parser": result["parser"],
        "notes": result["notes"],
        "timing": result["timing"],
    }


def format_table(clips: list[dict]) -> str:
    lines = ["| clip | case | frames | PSNR dB (median) | SSIM (median) | NME median | NME mean | "
             "pose ° median | pose ° mean | parse flip median | parse flip mean | "
             "detection loss | eval s/frame |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: |"]

    def number(value, digits=4):
        return "-" if value is None else f"{value:.{digits}f}"

    for clip in clips:
        for case in clip["cases"]:
            efficacy, fidelity = case["efficacy"], case["fidelity"]
            cells = [clip["clip"], case["case"], str(len(case["frames"])),
                     number(fidelity["psnr"]["median"], 2), number(fidelity["ssim"]["median"], 4)]
            for name, statistic in FIGURES:
                digits = 2 if name == "pose_error" else 4
                value = efficacy[name][statistic]
                if name == "detection_loss" and value is not None:
                    cells.append(f"{100 * value:.1f}%")
                else:
                    cells.append(number(value, digits))
            cells.append(number(case["timing"]["seconds_per_frame"], 3))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    arguments = parse_arguments(argv)
    load_at_start = os.getloadavg()

    from vdf_stream import assets
    from vdf_stream.pipeline.engine import resolve_device
    from vdf_stream.environment import library_versions, machine_description
    from vdf_stream.evaluation.evaluate import EvalOptions, evaluate, resolve_parser

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    import torch

    if arguments.threads > 0:
        torch.set_num_threads(arguments.threads)
    device = str(resolve_device(arguments.device))
    machine = machine_description()
    machine["load_average_at_start"] = [round(value, 2) for value in load_at_start]
    busy = load_at_start[0] > 0.5 * machine["cpu_cores"]
    if busy:
        log(f"note: the machine is busy (load {load_at_start[0]:.2f} on {machine['cpu_cores']} "
            "cores): the timings are noisy and the JSON says so")
    started = time.perf_counter()
    clips = []
    with tempfile.TemporaryDirectory(prefix="vdf-eval-floor-") as temporary:
        folder = Path(temporary)
        for name, stride in CLIPS:
            original = assets.fetch(name, progress=False)
            frames = 6 if arguments.quick else None
            log(f"{name}: stride {stride}" + (f", {frames} frames" if frames else ""))
            cases = [run_case(original, label, graph, stride, frames, device, folder, log)
                     for label, graph in CASES]
            clips.append({"clip": name, "stride": stride, "cases": cases})
        name, stride = ROBUSTNESS_TIMING
        original = assets.fetch(name, progress=False)
        noisy = folder / "robustness-noise8.mp4"
        from vdf_stream.api import protect
        from vdf_stream.media.sinks import EncodeOptions

        protect(str(original), str(noisy), vf=CASES[2][1], device=device,
                encode=EncodeOptions(crf=CRF, preset=PRESET))
        log(f"{name}: --robustness timing, stride {stride}")
        robust, _ = evaluate(str(original), str(noisy), EvalOptions(
            frames=2 if arguments.quick else None, stride=stride, robustness=True,
            device=device))
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    plain = [case["timing"]["seconds_per_frame"] for clip in clips for case in clip["cases"]]
    report = {
        "benchmark": "eval_floor",
        "schema_version": SCHEMA_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "conditions": {
            "busy": busy,
            "label": ("MACHINE BUSY at the start: timings are indicative only") if busy
            else "machine quiet at the start",
            "note": arguments.note,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
        "configuration": {
            "quick": arguments.quick,
            "torch_threads": torch.get_num_threads(),
            "device": device,
            "parser": resolve_parser("auto"),
            "cases": [{"case": label, "filter_graph": graph, "codec": "libx264", "crf": CRF,
                       "preset": PRESET} for label, graph in CASES],
            "clips": [{"clip": name, "stride": stride} for name, stride in CLIPS],
            "robustness_timing": {"clip": ROBUSTNESS_TIMING[0], "stride": ROBUSTNESS_TIMING[1]},
            "comparison": "each case's file against the original clip (pipeline on the "
                          "protected file against the pipeline on the original)",
        },
        "versions": {**library_versions(), "vdf_stream_commit": git_commit()},
        "machine": machine,
        "clips": clips,
        "timing": {
            "eval_seconds_per_frame": {"median": sorted(plain)[len(plain) // 2],
                                       "min": min(plain), "max": max(plain)},
            "robustness_eval_seconds_per_frame": robust["timing"]["seconds_per_frame"],
            "robustness_frames": len(robust["frames"]),
            "robustness_stages": robust["timing"]["stages"],
        },
    }
    output = arguments.output or RESULTS_FOLDER / (
        f"eval_floor-{machine['tag']}" + ("-quick" if arguments.quick else "") + ".json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(clips))
    print()
    print(f"eval on {device} ({torch.get_num_threads()} torch threads): "
          f"{report['timing']['eval_seconds_per_frame']['median']:.3f} s per "
          f"frame (median of the runs above); with --robustness (13 degradations): "
          f"{report['timing']['robustness_eval_seconds_per_frame']:.2f} s per frame "
          f"({len(robust['frames'])} frames). Parser: {report['configuration']['parser']}."
          + (" Machine busy: timings indicative only." if busy else ""))
    log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
