"""share=on vs share=off of the vdf filter: optimiser steps and efficacy after a real libx264
round trip, on the first frames of a real clip (consecutive frames, so the encoder's inter
prediction sees what a published video gives it).

    python benchmarks/sharing_efficacy.py --frames 8 --options "" --json out.json

Both runs use the same filter options (``--options``, the filter's syntax, e.g.
``strength=high``) except ``share``; the protected frames are encoded at ``--crf`` and read
with ``vdf-stream eval``'s ``FaceReader`` / ``compare`` (medians over the frames).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def run_filter(options_text: str, data: torch.Tensor):
    from vdf_stream.pipeline.filter import build_filters
    from vdf_stream.media.frames import Frames, VideoInfo

    (vdf,) = build_filters(f"vdf={options_text}")
    height, width = data.shape[-2:]
    vdf.setup(VideoInfo(width, height, Fraction(1, 30), Fraction(30)), torch.device("cpu"))
    outputs = []
    started = time.perf_counter()
    for index in range(data.shape[0]):
        batch = Frames(data[index:index + 1], "rgbf32", [index], [index], Fraction(1, 30))
        outputs.append(vdf.process(batch).data)
    seconds = time.perf_counter() - started
    vdf.close()
    return vdf, torch.cat(outputs), seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default="single_face.mp4")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--options", default="")
    parser.add_argument("--crf", type=float, default=23)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from tradeoff import load_frames, measure
    from vdf_stream import assets
    from vdf_stream import environment
    from vdf_stream.evaluation import readers

    clip = str(assets.fetch(args.clip, progress=False)) if "/" not in args.clip else args.clip
    frames, info = load_frames(clip, args.frames, 1)
    original_u8 = torch.round(frames * 255).to(torch.uint8)
    reader = readers.FaceReader(torch.device("cpu"), "selfie+mesh")
    rows = []
    for share in ("on", "off"):
        options = ":".join(filter(None, [args.options, f"share={1 if share == 'on' else 0}",
                                         "quiet=1"]))
        vdf, protected, seconds = run_filter(options, frames)
        row = {"share": share, "options": options, "steps": vdf.stats.steps,
               "keyframes": vdf.stats.keyframes, "reuse_rate": vdf.stats.reuse_rate,
               "seconds": seconds, **measure(original_u8, protected, reader, info, args.crf)}
        row.pop("per_frame", None)
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"clip": args.clip, "frames": args.frames, "crf": args.crf, "rows": rows,
              "versions": environment.library_versions(), "machine": environment.machine_description()}
    path = Path(args.json) if args.json else (
        Path(__file__).parent / "results" / f"sharing_{environment.machine_tag()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
