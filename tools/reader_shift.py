"""Which way the face readers see a protected face move: each reader's mean point shift,
as a vector, over its own clean eye distance.

``vdf-stream eval --transfer`` reports how far each reader's points move (the NME, a
distance). This script also reports where to: for every ``--stride``-th frame, MTCNN and
face-api's two 68-point networks read the original and the protected frame on their own
(as ``eval --transfer`` does), and it prints the mean over frames of the points' mean
displacement ``(x, y)`` (right and down positive) beside the median NME. A shift whose
length is close to the NME means the reader sees the whole face move one way; a short
shift with a large NME, points scattered in several directions.

    python tools/reader_shift.py ORIGINAL PROTECTED [--stride 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def shifts(model, original: torch.Tensor, protected: torch.Tensor) -> dict:
    """``{"shift": (x, y), "nme": median}`` of one reader over the frames both readings found
    a face in, in units of the clean reading's eye distance."""
    from vdf_stream.models.surrogate import mean_shift, point_error

    found_clean, clean = model.read(original)
    found_protected, moved = model.read(protected)
    both = found_clean & found_protected
    clean, moved = clean[both], moved[both]
    eye = model.eye_distance(clean)
    return {"frames": int(both.sum()), "shift": mean_shift(moved, clean, eye).mean(dim=0).tolist(),
            "nme": float((point_error(moved, clean) / eye).median())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("original")
    parser.add_argument("protected")
    parser.add_argument("--stride", type=int, default=8, help="read frames 0, S, 2S, ...")
    args = parser.parse_args(argv)

    from vdf_stream.models.surrogate import (FaceApi68Surrogate, FaceApi68TinySurrogate,
                                             MtcnnSurrogate)

    from tradeoff import load_frames

    original, _ = load_frames(args.original, sys.maxsize, args.stride)
    protected, _ = load_frames(args.protected, sys.maxsize, args.stride)
    if original.shape != protected.shape:
        raise SystemExit(f"the videos differ in size or length: {tuple(original.shape)} "
                         f"against {tuple(protected.shape)}")
    mtcnn_model = MtcnnSurrogate()
    readers = [mtcnn_model, FaceApi68Surrogate(detector=mtcnn_model.detector),
               FaceApi68TinySurrogate(detector=mtcnn_model.detector)]
    print(f"{'reader':<16}{'frames':>7}{'shift x':>10}{'shift y':>10}{'|shift|':>10}{'NME':>8}")
    for model in readers:
        result = shifts(model, original, protected)
        x, y = result["shift"]
        print(f"{model.name:<16}{result['frames']:>7}{x:>+10.3f}{y:>+10.3f}"
              f"{(x * x + y * y) ** 0.5:>10.3f}{result['nme']:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
