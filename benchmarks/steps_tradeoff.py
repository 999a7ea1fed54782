"""File mode's speed against its efficacy, by the optimiser's step budget: what fewer steps
would buy, measured rather than assumed.

For each variant of the ``vdf`` filter's options (the default first), ``vdf-stream
protect`` runs on ``single_face.mp4`` (72 frames, 640x360) as a user runs it (the session
builder, libx264 CRF 18 medium, 1 torch thread: protect's default on 2 cores), timed from
opening the input to the finalised output; then ``vdf-stream eval`` (no visibility) reads
original and output with the face pipeline. The same clip through ``ffmpeg -c:v libx264
-preset medium -crf 18`` is timed in the same run, so each variant's speed is also a share
of a plain transcode's.

    python benchmarks/steps_tradeoff.py
    python benchmarks/steps_tradeoff.py --variants "" "refine_steps=5" --frames 24

JSON under ``benchmarks/results/`` unless ``--output`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("", "refine_steps=5", "refine_steps=3", "tau_refine=0.97", "steps=20")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        help="vdf options of each variant ('' = the defaults)")
    parser.add_argument("--frames", type=int, default=None,
                        help="evaluate at most N frames (default: all)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from protect import ffmpeg_transcode  # the transcode baseline of benchmarks/protect.py
    from vdf_stream import assets, environment
    from vdf_stream.evaluation.evaluate import EvalOptions, evaluate
    from vdf_stream.pipeline.session import Session, SessionSpec

    clip = assets.fetch("single_face.mp4", progress=False)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        transcode = ffmpeg_transcode(clip, folder / "ffmpeg.mp4", 1)
        for variant in args.variants:
            output = folder / f"out_{len(rows)}.mp4"
            vf = "vdf=quiet=1" + (f":{variant}" if variant else "")
            started = time.perf_counter()
            with Session(SessionSpec(input=str(clip), output=str(output), vf=vf,
                                     torch_threads=1, device="cpu")) as session:
                stats = session.run()
            seconds = time.perf_counter() - started
            vdf = next(f for f in session.filters if f.name == "vdf")
            result, _ = evaluate(str(clip), str(output),
                                 EvalOptions(frames=args.frames, device="cpu",
                                             visibility=False))
            efficacy = {name: round(result["efficacy"][name]["median"], 4)
                        for name in ("landmark_nme", "pose_error", "parse_flip")}
            row = {"variant": variant or "default", "seconds": round(seconds, 2),
                   "fps": round(stats.frames_out / seconds, 2),
                   "optimiser_steps": vdf.summary()["optimiser_steps"],
                   "efficacy_median": efficacy,
                   "psnr_median": round(result["fidelity"]["psnr"]["median"], 2)}
            if transcode is not None:
                row["speed_vs_transcode"] = round(
                    stats.frames_out / seconds / (stats.frames_out / transcode["seconds"]), 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = {"benchmark": "steps_tradeoff", "clip": "single_face.mp4",
              "command": "python benchmarks/steps_tradeoff.py", "transcode": transcode,
              "torch_threads": 1, "rows": rows, "commit": environment.git_commit(),
              "date": time.strftime("%Y-%m-%d"), "versions": environment.library_versions(),
              "machine": environment.machine_description(), "torch": torch.__version__}
    path = args.output or (Path(__file__).parent / "results"
                           / f"steps_tradeoff_{environment.machine_tag()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
