"""Live protection (``vdf-stream live``): added latency p50 / p95, delivered fps and frames
dropped at capture at 640x360 and 1280x720 with a 30 fps input, and the efficacy of the live
output.

The input is a real clip (``single_face.mp4``, 640x360, 30 fps) played at its real pace by
:class:`vdf_stream.live.RealtimeCapture`, looped ``--loops`` times and scaled in the
capture thread (swscale, bicubic) to each size: a camera stand-in that delivers 30 frames a
second whatever the protector does. Each case runs :class:`vdf_stream.live.LiveProtector`
with the optimiser (in its own process on a CPU), its output a copy into memory (what a
virtual camera costs it); after the run the protected stream is encoded as ``--record``
does (H.264 CRF 18) and the captured frames that were delivered as ``--record-original``
does (lossless); then
:func:`vdf_stream.evaluation.evaluate.evaluate` measures the recording against those frames
(``vdf-stream eval ORIGINAL RECORD``, every ``--stride``-th frame): fidelity and efficacy
of what a viewer of the virtual camera received, after the encoder.

* ``added_latency_ms``: from the moment a frame was decoded by the capture thread to the
  moment every output had it (the wait in the one-slot buffer included; the camera's own
  latency and the virtual camera's are not);
* ``delivered_fps``, ``dropped_at_capture``: what reached the outputs, what the one-slot
  buffer replaced because the protector was busy;
* ``fallback_frames``, ``first_parameters_seconds``: frames protected before the first
  optimised set, and when it came.

Speed is measured, never asserted. JSON (figures, configuration, library versions, machine)
goes to ``benchmarks/results/live-<machine tag>.json`` unless ``--output`` says otherwise.

    python benchmarks/live.py              # 640x360 and 1280x720, 3 loops (7.2 s each)
    python benchmarks/live.py --quick      # 320x180, one loop, 2 steps, 2 frames evaluated
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = ((640, 360), (1280, 720))


def _environment():
    from vdf_stream import environment

    return environment.library_versions, environment.machine_description, environment.machine_tag


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run_case(clip: Path, folder: Path, size: tuple[int, int], loops: int, options, device,
             stride: int, eval_frames: int | None, quick: bool = False,
             visibility: bool = True, threads: int = 0) -> dict:
    from vdf_stream import live
    from vdf_stream.evaluation.evaluate import EvalOptions, evaluate

    width, height = size
    capture = live.RealtimeCapture(str(clip), size=size, loops=loops)
    record = folder / f"live_{width}x{height}.mp4"
    original = folder / f"original_{width}x{height}.mp4"
    # What a virtual camera costs the protector: a copy of each frame. The frames are kept
    # in memory and encoded after the run (as --record and --record-original encode them),
    # so that the figures are the protector's and not two encoders' beside it.
    kept = []
    outputs = [live.CallbackOutput(  # the frame without what was prepared from it
        lambda pixels, frame: kept.append((pixels, replace(frame, prepared=None))),
        name="memory")]
    load_before = _load()
    protector = live.LiveProtector(capture, outputs, options, device=device, threads=threads)
    stats = protector.run()
    result = {"size": f"{width}x{height}", "input_fps": float(capture.info.frame_rate or 0),
              "torch_threads": protector.threads,
              "load_before": load_before, "load_after": _load(), **stats.summary()}
    recordings = [live.RecordOutput(str(record), capture.info),
                  live.OriginalOutput(live.RecordOutput(str(original), capture.info, crf=0))]
    for pixels, frame in kept:
        for recording in recordings:
            recording.write(pixels, frame)
    for recording in recordings:
        recording.close()
    kept.clear()
    started = time.perf_counter()
    # the quick run (a smoke test) leaves visibility out: ColorVideoVDP at full screen and the
    # codec floor take minutes on a CPU, and benchmarks/visibility.py measures it
    evaluation, _ = evaluate(str(original), str(record),
                             EvalOptions(frames=eval_frames, stride=stride, device=str(device),
                                         visibility=visibility and not quick))
    result["eval_seconds"] = round(time.perf_counter() - started, 1)
    result["eval"] = {
        "frames": len(evaluation["frames"]),
        "fidelity": {name: round(evaluation["fidelity"][name]["median"], 4)
                     for name in ("psnr", "ssim", "max_abs_difference")},
        "efficacy": {name: round(evaluation["efficacy"][name]["median"], 4)
                     for name in ("landmark_nme", "pose_error", "parse_flip", "detection_loss")},
        "efficacy_mean": {name: round(evaluation["efficacy"][name]["mean"], 4)
                          for name in ("landmark_nme", "pose_error")},
    }
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="320x180, one loop, 2 keyframe steps, 2 frames evaluated: a smoke test")
    parser.add_argument("--sizes", nargs="+", default=None, help="e.g. 640x360 1280x720")
    parser.add_argument("--loops", type=int, default=3, help="plays of the 2.4 s clip (default 3)")
    parser.add_argument("--strength", default="medium", choices=("low", "medium", "high"))
    parser.add_argument("--stride", type=int, default=4, help="evaluate every N-th delivered frame")
    parser.add_argument("--eval-frames", type=int, default=None, help="at most N evaluated frames")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: half the cores, as vdf-stream live)")
    parser.add_argument("--confirm", type=int, default=None,
                        help="the optimiser's early-stop confirmation (default: the vdf filter's)")
    parser.add_argument("--no-visibility", action="store_true",
                        help="leave ColorVideoVDP out of the evaluation (minutes on a CPU; "
                             "benchmarks/visibility.py measures it)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    from vdf_stream import assets, live
    from vdf_stream.pipeline.engine import resolve_device

    sizes = [tuple(int(v) for v in text.split("x")) for text in args.sizes] if args.sizes else SIZES
    loops, stride, eval_frames = args.loops, args.stride, args.eval_frames
    options = live.LiveOptions(strength=args.strength)
    if args.quick:
        sizes, loops, stride, eval_frames = [(320, 180)], 1, 8, 2
        options = live.LiveOptions(strength=args.strength, steps=2, publish_steps=1)
    if args.confirm is not None:
        options.confirm = args.confirm
    device = resolve_device(args.device)
    clip = assets.fetch("single_face.mp4", progress=False)
    cases = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            result = run_case(clip, Path(folder), size, loops, options, device, stride, eval_frames,
                              args.quick, visibility=not args.no_visibility,
                              threads=args.threads or 0)
            cases.append(result)
            print(f"{result['size']}: delivered {result['delivered_fps']} fps of "
                  f"{result['capture_fps']} captured ({result['dropped_at_capture']} dropped), "
                  f"added latency p50 {result['added_latency_ms']['p50']} ms p95 "
                  f"{result['added_latency_ms']['p95']} ms, first parameters after "
                  f"{result['first_parameters_seconds']} s; eval {result['eval']}", flush=True)
    versions, machine, tag = _environment()
    report = {
        "configuration": {
            "quick": args.quick, "sizes": [f"{w}x{h}" for w, h in sizes], "loops": loops,
            "source": "single_face.mp4 (640x360, 30 fps) played at its real pace, scaled "
                      "in the capture thread (bicubic)",
            "options": {name: getattr(options, name) for name in options.__dataclass_fields__},
            "device": str(device), "torch_threads": cases[0]["torch_threads"] if cases else None,
            "recording": "kept in memory during the run; then libx264 CRF 18 veryfast "
                         "(protected), CRF 0 (captured frames)",
            "eval": {"stride": stride, "frames": eval_frames,
                     "visibility": not (args.no_visibility or args.quick),
                     "what": "vdf-stream eval of the recording against the captured frames"},
            "latency": "capture thread decoded the frame -> every output had it",
        },
        "cases": cases,
        "versions": versions(),
        "machine": machine(),
    }
    report["versions"]["pyvirtualcam"] = _version("pyvirtualcam")
    path = Path(args.output) if args.output else (
        Path(__file__).parent / "results" / f"live-{tag()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return 0


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
