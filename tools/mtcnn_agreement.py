"""How closely vdf-stream's MTCNN reproduces the reference outputs in tests/data/mtcnn_golden.json.

The golden file holds, for frames of the real test clips (named by clip and frame index,
never the pixels), the faces that facenet-pytorch 2.6.0's own MTCNN found: boxes, 5
landmarks and scores. This script decodes the same frames, runs
:class:`vdf_stream.models.mtcnn.MTCNN` on them, matches the faces and prints the largest
differences; ``--write`` records them in the golden file's ``agreement`` entry.

    python tools/mtcnn_agreement.py [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import av
import torch

from vdf_stream import assets
from vdf_stream.models import mtcnn

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "mtcnn_golden.json"


def decode_frames(clip: str, indices: set[int]) -> dict[int, torch.Tensor]:
    """Frames ``indices`` of a pinned clip as ``(3, H, W)`` float RGB in [0, 1]."""
    frames = {}
    with av.open(str(assets.fetch(clip, progress=False))) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in indices:
                rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))
                frames[index] = rgb.permute(2, 0, 1).float() / 255
            if index >= max(indices):
                break
    return frames


def compare(golden: dict, detector: mtcnn.MTCNN) -> dict:
    """Largest differences between the detector and the golden reference, over all frames."""
    wanted: dict[str, set[int]] = {}
    for entry in golden["frames"]:
        wanted.setdefault(entry["clip"], set()).add(entry["frame"])
    decoded = {clip: decode_frames(clip, indices) for clip, indices in wanted.items()}
    box, point, score = 0.0, 0.0, 0.0
    faces = 0
    for entry in golden["frames"]:
        (found,) = detector.detect(decoded[entry["clip"]][entry["frame"]][None])
        expected = len(entry["boxes"])
        if len(found) != expected:
            raise SystemExit(f"{entry['clip']} frame {entry['frame']}: {len(found)} faces, "
                             f"the reference found {expected}")
        if not expected:
            continue
        reference_boxes = torch.tensor(entry["boxes"])
        # Match each reference face to the nearest face found (by box centre).
        centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
        reference_centres = (reference_boxes[:, :2] + reference_boxes[:, 2:]) / 2
        order = torch.cdist(reference_centres, centres).argmin(dim=1)
        box = max(box, float((found.boxes[order] - reference_boxes).abs().max()))
        point = max(point, float((found.points[order] - torch.tensor(entry["points"])).abs().max()))
        score = max(score, float((found.scores[order] - torch.tensor(entry["scores"])).abs().max()))
        faces += expected
    return {"frames": len(golden["frames"]), "faces": faces,
            "max_box_difference_px": float(f"{box:.2g}"),
            "max_point_difference_px": float(f"{point:.2g}"),
            "max_score_difference": float(f"{score:.2g}")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true",
                        help="record the figures in the golden file's 'agreement' entry")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    golden = json.loads(GOLDEN.read_text())
    agreement = compare(golden, mtcnn.MTCNN())
    print(json.dumps(agreement, indent=1))
    if args.write:
        golden["agreement"] = {**agreement,
                               "command": "python tools/mtcnn_agreement.py --write",
                               "torch": torch.__version__.split("+")[0]}
        GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
        print(f"wrote the agreement into {GOLDEN.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
