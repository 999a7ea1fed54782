"""Throughput of ``vdf-stream batch`` on Ray: scaling over workers, Ray's overhead against a
plain loop, and what cutting a video into segments costs in efficacy and speed.

Cases, each on a library prepared in a temporary folder from the pinned real clips:

``scaling``
    the same batch run with 1, 2 and 4 workers (``--workers``), on a local Ray started for
    each run, for two graphs:

    * ``null``: decode -> encode (libx264 CRF 18, preset medium, audio copied), copies of
      ``WolfgangLanger_Pexels.mp4`` (472 frames) and ``single_face.mp4`` (72 frames): the
      batch machinery and the codec, no protection;
    * ``vdf``: the protection at its default (medium), on short clips cut from
      ``single_face.mp4`` (the protection runs at a few frames per second on a CPU).

    Figures: frames per second over the batch (Ray's start-up excluded, and included),
    speed-up over one worker and scaling efficiency (speed-up / workers).
``plain_loop``
    the units of the one-worker batch run one after another in this process, without Ray
    (the same function, :func:`vdf_stream.batch.tasks.execute_unit`, with the same threads):
    ``ray_overhead`` is how much slower the one-worker batch is.
``split``
    ``single_face.mp4`` re-encoded with a keyframe every 24 frames (CRF 16), protected with
    the default graph in one pass and cut into 3 segments (``--split-long``), on one and on
    two workers. The sharing window of the protection restarts in each segment: the
    efficacy (landmark NME, head-pose error, from ``vdf_stream.evaluation.evaluate.evaluate``) and the
    speed of split against one pass show what that costs.

How busy the machine was is recorded (idle share before the start, load averages, the CPU
time every process took during the runs); a busy run is labelled so.

On a GPU machine, ``--device cuda --gpus-per-task 1`` runs the same cases with one worker per
GPU share (``--gpus-per-task 0.5`` puts two on each GPU); decoding and encoding stay in the
worker's own threads.

Usage::

    python benchmarks/batch.py                       # about 10 minutes on 2 cores
    python benchmarks/batch.py --quick --output /tmp/smoke.json   # about 2 minutes
    python benchmarks/batch.py --device cuda --gpus-per-task 1 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vdf_stream import environment

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS_FOLDER = REPOSITORY / "benchmarks" / "results"
SCHEMA_VERSION = 1
BUSY_IDLE_FRACTION = 0.75  # below this share of idle CPU before the start: busy
SPLIT_GOP = 24  # keyframe interval of the clip the split case cuts
SPLIT_SECONDS = 0.7  # cuts at frames 24 and 48 of a 30 fps clip: 3 segments


@dataclass(frozen=True)
class Settings:
    """What a run measures; resolved from the command line once."""

    workers: tuple[int, ...]
    copies: int
    vdf_items: int
    vdf_frames: int
    split_frames: int
    vdf_graph: str
    device: str
    gpus_per_task: float | None
    quick: bool
    repeat: int


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have used since boot (None where /proc/stat is missing)."""
    try:
        fields = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


# -------------------------------------------------------------------------------------
# Libraries


def cut_clip(source: Path, target: Path, frames: int, gop: int | None = None) -> Path:
    """The first ``frames`` frames of ``source``, re-encoded near-transparently (libx264
    CRF 16), with a keyframe every ``gop`` frames when given; no audio."""
    import av

    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream_in = reader.streams.video[0]
        rate = stream_in.average_rate
        stream = writer.add_stream("libx264", rate=rate)
        stream.width, stream.height = stream_in.codec_context.width, stream_in.codec_context.height
        stream.pix_fmt = "yuv420p"
        options = {"crf": "16", "preset": "medium"}
        if gop:
            options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
        stream.options = options
        for index, frame in enumerate(reader.decode(stream_in)):
            if index == frames:
                break
            copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), "rgb24")
            copy.pts = index
            writer.mux(stream.encode(copy.reformat(format="yuv420p")))
        writer.mux(stream.encode(None))
    return target


def null_library(folder: Path, copies: int, quick: bool) -> tuple[Path, int]:
    from vdf_stream import assets

    library = folder / "null"
    names = ["single_face.mp4"] if quick else ["WolfgangLanger_Pexels.mp4", "single_face.mp4"]
    frames = {"WolfgangLanger_Pexels.mp4": 472, "single_face.mp4": 72}
    total = 0
    for copy in range(copies):
        (library / f"copy{copy}").mkdir(parents=True)
        for name in names:
            shutil.copy(assets.fetch(name, progress=False), library / f"copy{copy}" / name)
            total += frames[name]
    return library, total


def vdf_library(folder: Path, items: int, frames: int) -> tuple[Path, int]:
    from vdf_stream import assets

    library = folder / "vdf"
    library.mkdir()
    clip = cut_clip(assets.fetch("single_face.mp4", progress=False), folder / "face.mp4", frames)
    for item in range(items):
        shutil.copy(clip, library / f"face{item}.mp4")
    return library, items * frames


# -------------------------------------------------------------------------------------
# Runs


def run_batch_case(library: Path, output: Path, protection, workers: int,
                   settings: Settings, split_seconds: float | None = None) -> dict:
    """One batch on a fresh local Ray; its start-up is timed apart."""
    import ray

    from vdf_stream.batch import BatchOptions, run_batch
    from vdf_stream.batch.cluster import start_ray

    options = BatchOptions(output, protection, split_seconds=split_seconds,
                           workers=workers, device=settings.device,
                           gpus_per_task=settings.gpus_per_task)
    cpu_before = busy_cpu_seconds()
    started = time.perf_counter()
    resources = start_ray(options)
    ray_start = time.perf_counter() - started
    try:
        result = run_batch(str(library), options)
    finally:
        ray.shutdown()
    total = time.perf_counter() - started
    cpu_after = busy_cpu_seconds()
    failed = [f"{item.key}: {item.message}" for item in result.items if item.state != "done"]
    if failed:
        raise RuntimeError("the batch did not complete: " + "; ".join(failed))
    return {
        "workers": workers,
        "cpus_per_task": resources.cpus_per_task,
        "gpus_per_task": resources.gpus_per_task,
        "device": resources.device,
        "items": len(result.items),
        "frames": result.frames,
        "ray_start_seconds": round(ray_start, 3),
        "batch_seconds": round(result.seconds, 3),
        "total_seconds": round(total, 3),
        "fps": round(result.frames / result.seconds, 3),
        "fps_with_ray_start": round(result.frames / total, 3),
        "machine_cpu_seconds": (round(cpu_after - cpu_before, 1)
                                if cpu_before is not None and cpu_after is not None else None),
        "segments": sum(item.segments for item in result.items),
        # CPU time of the units' worker processes: steadier than wall time under load
        "unit_cpu_seconds": round(sum(item.cpu_seconds for item in result.items), 2),
        "unit_cpu_seconds_per_frame": round(
            sum(item.cpu_seconds for item in result.items) / max(1, result.frames), 4),
        "outputs": {item.key: str(item.output) for item in result.items},
    }


def run_plain_loop(library: Path, output: Path, protection, settings: Settings) -> dict:
    """The units of a one-worker batch, one after another, in this process, no Ray."""
    from vdf_stream.batch.plan import WORK_FOLDER_NAME, discover
    from vdf_stream.batch.tasks import UnitSpec, execute_unit
    from vdf_stream.pipeline.engine import resolve_device

    discovery = discover(str(library), output)
    threads = environment.usable_cores()
    device = "cuda" if settings.device in ("auto", "cuda") and resolve_device(
        settings.device).type == "cuda" else "cpu"
    started = time.perf_counter()
    frames = 0
    cpu_seconds = 0.0
    for item in discovery.items:
        item.output.parent.mkdir(parents=True, exist_ok=True)
        spec = UnitSpec(key=item.key, unit=item.key, source=str(item.source),
                        target=str(item.output), segment=None, protection=protection,
                        device=device, batch_size=1, threads=threads,
                        work=str(output / WORK_FOLDER_NAME / "plain"))
        result = execute_unit(spec)
        if not result.ok:
            raise RuntimeError(f"{item.key}: {result.message}")
        frames += result.frames
        cpu_seconds += result.cpu_seconds
    seconds = time.perf_counter() - started
    shutil.rmtree(output / WORK_FOLDER_NAME, ignore_errors=True)
    return {"items": len(discovery.items), "frames": frames, "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 3), "threads": threads, "device": device,
            "unit_cpu_seconds": round(cpu_seconds, 2),
            "unit_cpu_seconds_per_frame": round(cpu_seconds / max(1, frames), 4)}


def _median_run(runs: list[dict]) -> dict:
    """The run of median batch time among repeats (the others are kept in ``rounds``)."""
    ordered = sorted(runs, key=lambda run: run["batch_seconds"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds"] = [{key: run[key] for key in ("fps", "fps_with_ray_start",
                                                   "batch_seconds", "ray_start_seconds")}
                        for run in runs]
    return chosen


def measure_scaling(name: str, library: Path, frames: int, protection, folder: Path,
                    settings: Settings) -> dict:
    """Every worker count and the plain loop in turn, ``repeat`` rounds (interleaved, so
    that background load hits them alike); the median round of each is reported."""
    measured: dict[int, list[dict]] = {workers: [] for workers in settings.workers}
    plain_runs = []
    for round_number in range(settings.repeat):
        for workers in settings.workers:
            log(f"{name}: {frames} frames on {workers} workers (round {round_number + 1})")
            run = run_batch_case(library, folder / f"{name}-w{workers}-{round_number}",
                                 protection, workers, settings)
            run.pop("outputs")
            measured[workers].append(run)
            log(f"  {run['fps']:.2f} fps ({run['batch_seconds']:.1f} s, Ray start "
                f"{run['ray_start_seconds']:.1f} s)")
        log(f"{name}: plain loop in this process (round {round_number + 1})")
        plain = run_plain_loop(library, folder / f"{name}-plain-{round_number}", protection,
                               settings)
        plain_runs.append(plain)
        log(f"  {plain['fps']:.2f} fps ({plain['seconds']:.1f} s)")
    runs = [_median_run(measured[workers]) for workers in settings.workers]
    plain = dict(sorted(plain_runs, key=lambda run: run["seconds"])[(len(plain_runs) - 1) // 2])
    plain["rounds"] = [{"fps": run["fps"], "seconds": run["seconds"]} for run in plain_runs]
    one = next((run for run in runs if run["workers"] == 1), None)
    overhead = None
    if one is not None:
        for run in runs:
            speedup = run["fps"] / one["fps"]
            run["speedup"] = round(speedup, 3)
            run["efficiency"] = round(speedup / run["workers"], 3)
            run["speedup_with_ray_start"] = round(
                run["fps_with_ray_start"] / one["fps_with_ray_start"], 3)
        overhead = {
            "batch_seconds_over_plain": round(one["batch_seconds"] / plain["seconds"], 3),
            "total_seconds_over_plain": round(one["total_seconds"] / plain["seconds"], 3),
            "extra_seconds": round(one["batch_seconds"] - plain["seconds"], 3),
            "extra_seconds_with_ray_start": round(one["total_seconds"] - plain["seconds"], 3),
        }
    return {"graph": protection.vf, "frames": frames, "runs": runs, "plain_loop": plain,
            "ray_overhead": overhead}


def measure_split(folder: Path, settings: Settings, protection) -> dict:
    """One pass against 3 segments: efficacy (eval) and speed."""
    from vdf_stream import assets
    from vdf_stream.evaluation.evaluate import EvalOptions, evaluate

    library = folder / "split"
    library.mkdir()
    clip = cut_clip(assets.fetch("single_face.mp4", progress=False), library / "face.mp4",
                    settings.split_frames, gop=SPLIT_GOP)
    # one pass and split, each on one worker (the unit has every core's threads) and on as
    # many workers as segments (one thread each): same threads, same comparison
    cases = []
    for workers in sorted({1, min(3, max(settings.workers))}):
        cases += [(f"one_pass_{workers}w", workers, None),
                  (f"split_{workers}w", workers, SPLIT_SECONDS)]
    device = "cuda" if settings.device == "cuda" else "cpu"
    results = {}
    for name, workers, split in cases:
        log(f"split: {name}")
        run = run_batch_case(library, folder / f"split-{name}", protection, workers, settings,
                             split_seconds=split)
        output = run.pop("outputs")["face.mp4"]
        evaluation, _ = evaluate(str(clip), output, EvalOptions(device=device))
        efficacy, fidelity = evaluation["efficacy"], evaluation["fidelity"]
        run["eval"] = {
            "landmark_nme_median": efficacy["landmark_nme"]["median"],
            "landmark_nme_mean": efficacy["landmark_nme"]["mean"],
            "pose_error_median": efficacy["pose_error"]["median"],
            "pose_error_mean": efficacy["pose_error"]["mean"],
            "psnr_median": fidelity["psnr"]["median"],
            "ssim_median": fidelity["ssim"]["median"],
            "frames_evaluated": len(evaluation["frames"]),
            "per_frame_landmark_nme": evaluation["per_frame"]["landmark_nme"],
        }
        results[name] = run
        log(f"  {run['fps']:.2f} fps, NME {run['eval']['landmark_nme_median']:.4f}, pose "
            f"{run['eval']['pose_error_median']:.2f} deg, {run['segments']} segments")
    for name, run in results.items():
        one = results.get(name.replace("split_", "one_pass_"))
        if name.startswith("split_") and one is not None:
            run["versus_one_pass"] = {
                "fps_ratio": round(run["fps"] / one["fps"], 3),
                "unit_cpu_seconds_ratio": round(
                    run["unit_cpu_seconds"] / one["unit_cpu_seconds"], 3),
                "landmark_nme_median_ratio": round(
                    run["eval"]["landmark_nme_median"] / one["eval"]["landmark_nme_median"], 3),
                "pose_error_median_ratio": round(
                    run["eval"]["pose_error_median"] / one["eval"]["pose_error_median"], 3),
            }
    return {"graph": protection.vf, "clip": f"single_face.mp4, first {settings.split_frames} "
                                             f"frames, keyframe every {SPLIT_GOP}, CRF 16",
            "split_seconds": SPLIT_SECONDS, "cases": results}


# -------------------------------------------------------------------------------------
# Report


def code_fingerprint() -> dict[str, str]:
    """A short SHA-256 of each Python source of the package (``vdf_stream/``, ``filters/``):
    a case during which one changed measured two versions of the code."""
    import hashlib

    return {str(path.relative_to(REPOSITORY)): hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            for folder in ("vdf_stream", "filters")
            for path in sorted((REPOSITORY / folder).rglob("*.py"))}


def conditions(measure) -> dict:
    """``measure()``'s result with the load it ran under (each case has its own, so that a
    report merged from several runs keeps every figure beside its conditions)."""
    idle = environment.cpu_idle_fraction(1.0)
    load = [round(value, 2) for value in os.getloadavg()]
    cpu_before, started = busy_cpu_seconds(), time.perf_counter()
    code_before = code_fingerprint()
    result = measure()
    code_after = code_fingerprint()
    seconds = time.perf_counter() - started
    cpu_after = busy_cpu_seconds()
    used = ((cpu_after - cpu_before) / (environment.usable_cores() * seconds)
            if cpu_before is not None and cpu_after is not None else None)
    result["conditions"] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_idle_fraction_before": idle, "load_average_before": load,
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "machine_cpu_share_used": round(used, 3) if used is not None else None,
        "busy": idle is not None and idle < BUSY_IDLE_FRACTION,
        "seconds": round(seconds, 1),
        "code_changed_during_case": sorted(
            name for name in code_before.keys() | code_after.keys()
            if code_before.get(name) != code_after.get(name))}
    return result


def format_table(report: dict) -> str:
    lines = []
    for name, scaling in report["results"]["scaling"].items():
        lines.append(f"\n{name} graph ({scaling['graph']}), {scaling['frames']} frames:")
        lines.append(f"  {'workers':>7}  {'fps':>8}  {'speed-up':>8}  {'efficiency':>10}  "
                     f"{'fps incl. Ray start':>19}  {'CPU s/frame':>11}")
        for run in scaling["runs"]:
            cpu = run.get("unit_cpu_seconds_per_frame")
            lines.append(f"  {run['workers']:>7}  {run['fps']:>8.2f}  "
                         f"{run.get('speedup', 0):>8.2f}  {run.get('efficiency', 0):>10.2f}  "
                         f"{run['fps_with_ray_start']:>19.2f}  "
                         + (f"{cpu:>11.3f}" if cpu is not None else f"{'-':>11}"))
        plain = scaling["plain_loop"]
        cpu = plain.get("unit_cpu_seconds_per_frame")
        lines.append(f"  plain loop, no Ray: {plain['fps']:.2f} fps"
                     + (f", {cpu:.3f} CPU s/frame" if cpu is not None else ""))
        overhead = scaling["ray_overhead"]
        if overhead:
            lines.append(f"  Ray, one worker, against the plain loop: "
                         f"x{overhead['batch_seconds_over_plain']:.2f} time "
                         f"(+{overhead['extra_seconds']:.1f} s; with Ray's start "
                         f"x{overhead['total_seconds_over_plain']:.2f})")
    split = report["results"].get("split")
    if split:
        lines.append(f"\nsplit ({split['graph']}, {split['clip']}):")
        lines.append(f"  {'case':<12}  {'segments':>8}  {'fps':>6}  {'CPU s/frame':>11}  "
                     f"{'NME median':>10}  {'pose median':>11}  {'PSNR':>6}")
        for name, run in split["cases"].items():
            evaluation = run["eval"]
            cpu = run.get("unit_cpu_seconds_per_frame")
            cpu_text = f"{cpu:>11.3f}" if cpu is not None else f"{'-':>11}"
            lines.append(f"  {name:<12}  {run['segments']:>8}  {run['fps']:>6.2f}  {cpu_text}  "
                         f"{evaluation['landmark_nme_median']:>10.4f}  "
                         f"{evaluation['pose_error_median']:>11.2f}  "
                         f"{evaluation['psnr_median']:>6.2f}")
    return "\n".join(lines)


def default_output(quick: bool) -> Path:
    suffix = "-quick" if quick else ""
    return RESULTS_FOLDER / f"batch-{environment.machine_tag()}{suffix}.json"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small batch, 1 and 2 workers, the protection with 4 steps")
    parser.add_argument("--workers", default=None, metavar="LIST",
                        help="worker counts to compare (default 1,2,4; quick 1,2)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of the scaling cases, interleaved; medians reported")
    parser.add_argument("--copies", type=int, default=None,
                        help="copies of the real clips in the null batch (default 4)")
    parser.add_argument("--cases", default="null,vdf,split",
                        help="which cases to run (default null,vdf,split)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--gpus-per-task", type=float, default=None,
                        help="GPUs per worker on a GPU machine (default: 1 there, else 0)")
    parser.add_argument("--output", type=Path, help="where the JSON goes (default: "
                                                    "benchmarks/results/batch-<machine>.json)")
    parser.add_argument("--note", default=None, help="a remark stored in the JSON")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the cases run in an existing report (each case "
                             "keeps its own conditions)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    idle_before = environment.cpu_idle_fraction(2.0)
    load_before = [round(value, 2) for value in os.getloadavg()]
    quick = arguments.quick
    workers = tuple(int(value) for value in
                    (arguments.workers or ("1,2" if quick else "1,2,4")).split(","))
    settings = Settings(workers=workers, copies=arguments.copies or (1 if quick else 4),
                        vdf_items=2 if quick else 4, vdf_frames=4 if quick else 8,
                        split_frames=48 if quick else 72,
                        vdf_graph="vdf=steps=4:quiet=1" if quick else "vdf=quiet=1",
                        device=arguments.device, gpus_per_task=arguments.gpus_per_task,
                        quick=quick, repeat=max(1, arguments.repeat))
    cases = set(arguments.cases.split(","))

    from vdf_stream.batch import Protection
    from vdf_stream.batch.options import DEFAULT_RETRIES
    from vdf_stream.media.sinks import EncodeOptions

    null = Protection(vf="null", encode=EncodeOptions())
    vdf = Protection(vf=settings.vdf_graph, encode=EncodeOptions())
    split_gop_note = None
    if quick:
        split_gop_note = "quick: 48 frames, the protection with 4 optimiser steps"
    started = time.perf_counter()
    cpu_before = busy_cpu_seconds()
    folder = Path(tempfile.mkdtemp(prefix="vdf-batch-benchmark-"))
    results: dict = {"scaling": {}}
    try:
        if "null" in cases:
            library, frames = null_library(folder, settings.copies, quick)
            results["scaling"]["null"] = conditions(lambda: measure_scaling(
                "null", library, frames, null, folder, settings))
        if "vdf" in cases:
            library, frames = vdf_library(folder, settings.vdf_items, settings.vdf_frames)
            results["scaling"]["vdf"] = conditions(lambda: measure_scaling(
                "vdf", library, frames, vdf, folder, settings))
        if "split" in cases:
            results["split"] = conditions(lambda: measure_split(folder, settings, vdf))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - started
    cpu_after = busy_cpu_seconds()
    cores = environment.usable_cores()
    machine = {**environment.machine_description(), "hostname": socket.gethostname(),
               "load_average_at_start": load_before,
               "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
               "cpu_idle_fraction_before_start": idle_before}
    used = (cpu_after - cpu_before) / (cores * seconds) if cpu_before and cpu_after else None
    busy = idle_before is not None and idle_before < BUSY_IDLE_FRACTION
    import ray

    report = {
        "benchmark": "batch",
        "schema_version": SCHEMA_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "conditions": {
            "busy": busy,
            "label": ("MACHINE BUSY at the start: other processes were loading the CPU; "
                      "figures are indicative only") if busy else "machine quiet at the start",
            "cpu_idle_fraction_before_start": idle_before,
            "machine_cpu_share_used_during_runs": round(used, 3) if used is not None else None,
            "note": arguments.note or split_gop_note,
            "total_seconds": round(seconds, 1),
        },
        "configuration": {
            "workers": list(settings.workers),
            "ray": "a local Ray started for each batch run (num_cpus = max(cores, workers)), "
                   "each unit asking for max(1, cores // workers) CPUs and using as many "
                   "threads; Ray runs its workers at nice 15 (its default), the plain loop "
                   "runs at this process's priority",
            "encode": "libx264, CRF 18, preset medium, yuv420p, audio copied",
            "null_batch": f"{settings.copies} copies of " + (
                "single_face.mp4" if quick else "WolfgangLanger_Pexels.mp4 and single_face.mp4"),
            "vdf_batch": f"{settings.vdf_items} clips of the first {settings.vdf_frames} frames "
                         f"of single_face.mp4 (CRF 16), graph {settings.vdf_graph}",
            "split": f"single_face.mp4, first {settings.split_frames} frames, a keyframe every "
                     f"{SPLIT_GOP}, --split-long {SPLIT_SECONDS}s, graph {settings.vdf_graph}",
            "device": settings.device,
            "gpus_per_task": settings.gpus_per_task,
            "fps": "frames protected / seconds of run_batch (Ray already started); "
                   "fps_with_ray_start adds Ray's start-up",
            "efficiency": "speed-up over one worker / workers",
            "repeat": settings.repeat,
            "statistic": "per worker count, the round of median batch time (all rounds kept)",
            "command": "python benchmarks/batch.py " + shlex.join(
                sys.argv[1:] if argv is None else argv),
            "split_seconds_constant": SPLIT_SECONDS,
            "retries": DEFAULT_RETRIES,
        },
        "versions": {**environment.library_versions(), "ray": ray.__version__},
        "machine": machine,
        "results": results,
    }
    output = arguments.output or default_output(quick)
    if arguments.merge and output.exists():
        earlier = json.loads(output.read_text())
        merged = earlier["results"]
        replaced = {name: merged.get("scaling", {}).get(name) for name in results["scaling"]}
        merged.setdefault("scaling", {}).update(results["scaling"])
        if "split" in results:
            replaced["split"] = merged.get("split")
            merged["split"] = results["split"]
        report["results"] = merged
        report["earlier_runs"] = earlier.get("earlier_runs", []) + [
            {**{key: earlier[key] for key in ("date", "conditions", "configuration")},
             "replaced_results": {name: value for name, value in replaced.items() if value}}]
        print("(merged into the earlier report: the other cases are the earlier run's)")
    print(f"vdf-stream batch on a local Ray, {machine['cpu_model']} ({cores} cores)"
          + (", BUSY machine: indicative figures" if busy else ""))
    print(format_table(report))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
