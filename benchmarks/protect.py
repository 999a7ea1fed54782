"""Speed of ``vdf-stream protect`` with the ``vdf`` filter: frames per second end to end
(decode -> vdf -> libx264 encode) and per stage, at 640x360 and 1280x720 (1920x1080 with
``--sizes``), at 1 and 2 torch threads, with parameter sharing on and off, beside a plain
transcode of the same clip in the same run.

The inputs are real clips (``single_face.mp4``) upscaled with PyAV's swscale (bicubic) and
encoded at CRF 12 into a temporary folder; ``--frames`` of them are used. Each case runs
the engine through its Python API (:class:`vdf_stream.pipeline.engine.Engine`, as ``protect``
does), and reports:

* ``fps``: frames out over the wall time from opening the input to closing the output,
  after a warm-up (``warm_up_seconds``: loading the face models and torch's lazy imports,
  paid once per process and not per frame);
* the engine's stage seconds (decode, filter, encode) and the vdf filter's own split of
  its time (``detect``: face detection of each batch, ``optimise``: descriptors, sharing
  decisions and the optimiser, ``apply``: the perturbation);
* the filter's sharing summary: keyframes, reuse rate, optimiser steps per frame;
* ``sharing_speedup``: fps with sharing over fps without, per size (at the same options;
  efficacy is not measured here, see benchmarks/tradeoff.py and docs/filter.md);
* ``transcode``: the same clip through ``ffmpeg -c:v libx264 -preset medium -crf 18`` (the
  command-line tool, when installed: its wall time from start to exit) and through this
  engine with the ``null`` filter (decode -> encode, no protection); each case's
  ``speed_vs_transcode`` is its fps over ffmpeg's (the engine's when ffmpeg is missing).

Speed is measured, never asserted. JSON (figures, configuration, library versions,
machine) goes under ``benchmarks/results/`` unless ``--output`` says otherwise.

    python benchmarks/protect.py                 # 640x360 and 1280x720, 1 and 2 threads
    python benchmarks/protect.py --quick         # 640x360, 3 frames, 2 steps (smoke test)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = ((640, 360), (1280, 720))


def make_clip(source: Path, target: Path, width: int, height: int, frames: int) -> Path:
    """The first ``frames`` frames of ``source`` scaled to ``width x height`` (CRF 12)."""
    import av

    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream_in = reader.streams.video[0]
        rate = stream_in.average_rate or 30
        stream = writer.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        stream.codec_context.time_base = 1 / rate
        count = 0
        for frame in reader.decode(stream_in):
            scaled = frame.reformat(width=width, height=height, format="yuv420p",
                                    interpolation="BICUBIC")
            scaled.pts = count
            scaled.time_base = 1 / rate
            for packet in stream.encode(scaled):
                writer.mux(packet)
            count += 1
            if count >= frames:
                break
        for packet in stream.encode(None):
            writer.mux(packet)
    return target


def ffmpeg_transcode(clip: Path, output: Path, threads: int) -> dict | None:
    """``ffmpeg -c:v libx264 -preset medium -crf 18`` of ``clip`` (video only): frames per
    second over the command's wall time; ``None`` without ffmpeg on the PATH."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        return None
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-threads", str(threads), "-i", str(clip),
                    "-an", "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-threads",
                    str(threads), str(output)], check=True)
    seconds = time.perf_counter() - started
    return {"tool": "ffmpeg", "threads": threads, "seconds": round(seconds, 3)}


def warm_up(device: str) -> float:
    """Load the face models (cached per process), so that the cases time the stream, not
    the start-up. Returns the seconds."""
    from vdf_stream.pipeline.engine import resolve_device
    from vdf_stream.models.mesh import FacePipeline

    started = time.perf_counter()
    FacePipeline(device=resolve_device(device), segmentation=True)
    return round(time.perf_counter() - started, 3)


def run_case(clip: Path, output: Path, graph: str, device: str) -> dict:
    import torch

    from vdf_stream.pipeline.engine import Engine, resolve_device
    from vdf_stream.pipeline.filter import build_filters
    from vdf_stream.media.sinks import EncodeOptions, open_sink
    from vdf_stream.media.sources import open_source

    engine_device = resolve_device(device)
    filters = build_filters(graph)
    options = EncodeOptions(codec="libx264", crf=18.0, preset="medium", copy_audio=False)
    started = time.perf_counter()
    with open_source(str(clip)) as source:
        engine = Engine(source, filters, lambda info: open_sink(str(output), info, options),
                        device=engine_device, copy_streams=False)
        stats = engine.run()
    seconds = time.perf_counter() - started
    vdf = next((f for f in filters if f.name == "vdf"), None)
    result = {
        "graph": graph,
        "frames": stats.frames_out,
        "seconds": round(seconds, 3),
        "fps": round(stats.frames_out / seconds, 3) if seconds else None,
        "stage_seconds": {name: round(getattr(stats.stage_seconds, name), 3)
                          for name in ("decode", "filter", "encode")},
        "vdf": vdf.summary() if vdf is not None else None,
    }
    if engine_device.type == "cuda":
        result["cuda_max_memory_bytes"] = torch.cuda.max_memory_allocated(engine_device)
        result["nvml"] = _nvml(engine_device)
    return result


def _nvml(device) -> dict | None:
    try:
        import pynvml
    except ImportError:
        return None
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
    rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    return {"gpu_utilisation_percent": rates.gpu, "memory_used_bytes": memory.used}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="640x360 only, 3 frames, 2 steps: a smoke test")
    parser.add_argument("--frames", type=int, default=72,
                        help="frames of the clip (default 72: all of single_face.mp4)")
    parser.add_argument("--steps", type=int, default=None,
                        help="keyframe steps (default: the filter's preset)")
    parser.add_argument("--sizes", nargs="+", default=None, help="e.g. 640x360 1280x720")
    parser.add_argument("--share", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="torch threads of each case (default: 1 and 2 on a CPU, "
                             "protect's default on a GPU)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    import torch

    from vdf_stream.pipeline.engine import torch_threads
    from vdf_stream.resources import keep_freed_memory

    keep_freed_memory()  # as protect runs

    from vdf_stream import assets
    from vdf_stream import environment

    sizes = [tuple(int(v) for v in text.split("x")) for text in args.sizes] if args.sizes else SIZES
    frames, steps = args.frames, args.steps
    threads = args.threads or ([torch_threads(0)] if args.device.startswith("cuda") else [1, 2])
    if args.quick:
        sizes, frames, steps, threads = [(640, 360)], 3, 2, args.threads or [1]
    source = assets.fetch("single_face.mp4", progress=False)
    warm_up_seconds = warm_up(args.device)
    cases = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for width, height in sizes:
            clip = make_clip(source, folder / f"in_{width}x{height}.mp4", width, height, frames)
            for count in threads:
                torch.set_num_threads(count)
                baseline = ffmpeg_transcode(clip, folder / "ffmpeg.mp4", count)
                engine = run_case(clip, folder / "null.mp4", "null", args.device)
                transcode = {"ffmpeg": baseline, "engine_null": {
                    key: engine[key] for key in ("seconds", "fps", "stage_seconds")}}
                if baseline is not None:
                    baseline["fps"] = round(engine["frames"] / baseline["seconds"], 3)
                reference = (baseline or engine)["fps"]
                by_share = {}
                for share in args.share:
                    graph = (f"vdf=share={share}:quiet=1"
                             + (f":steps={steps}" if steps is not None else ""))
                    result = run_case(clip, folder / f"out_{width}x{height}_{share}.mp4",
                                      graph, args.device)
                    result.update(size=f"{width}x{height}", share=share, threads=count,
                                  transcode=transcode,
                                  speed_vs_transcode=round(result["fps"] / reference, 4))
                    cases.append(result)
                    by_share[share] = result
                    print(f"{width}x{height} {count} thread(s) share={share}: {result['fps']} "
                          f"fps ({result['speed_vs_transcode']}x the transcode's "
                          f"{reference} fps), stages {result['stage_seconds']}, "
                          f"vdf {result['vdf']}", flush=True)
                if "on" in by_share and "off" in by_share and by_share["off"]["fps"]:
                    by_share["on"]["sharing_speedup"] = round(
                        by_share["on"]["fps"] / by_share["off"]["fps"], 3)
    report = {
        "configuration": {"quick": args.quick, "frames": frames, "steps": steps,
                          "sizes": [f"{w}x{h}" for w, h in sizes], "share": args.share,
                          "device": args.device, "warm_up_seconds": warm_up_seconds,
                          "threads": threads,
                          "source": "single_face.mp4 upscaled (bicubic, CRF 12)",
                          "encoder": "libx264 CRF 18 medium"},
        "cases": cases,
        "versions": environment.library_versions(),
        "machine": environment.machine_description(),
    }
    path = Path(args.output) if args.output else (
        Path(__file__).parent / "results" / f"protect_{environment.machine_tag()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
