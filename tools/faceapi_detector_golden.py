"""Write tests/data/faceapi_detector_golden.json: face-api's tiny face detector on frames of
the real clips, run by the package itself in Node (the reference runtime), and how closely
vdf-stream's PyTorch port agrees.

The clips' media licence is not stated, so no pixels are stored: each image is a recipe
(clip, frame, width) and the sha256 of the image's bytes, from which the test rebuilds the
same image from the fetched clip. Two kinds of images:

- ``width`` 416: the frame sampled to 416 pixels wide by nearest neighbour in integer
  arithmetic (column ``i`` reads column ``(2 i + 1) * W // 832``, rows alike at the same
  scale): padded to a square it is the network's input as it is, with no resampling, so
  the network's raw 13x13x25 output is compared (recorded for the first two frames);
- ``width`` null: the frame at its own size, as face-api's pipeline is handed it: the
  package pads and resizes it itself, so its boxes compare the whole reading (looser: the
  port's bilinear resize is TensorFlow's, but not bit for bit).

    npm ci --prefix tools
    python tools/faceapi_detector_golden.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from vdf_stream.models import faceapi_detector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faceapi_golden import decode, run_node, write_golden  # noqa: E402  (shared with it)

TOOLS = Path(__file__).resolve().parent
GOLDEN = TOOLS.parent / "tests" / "data" / "faceapi_detector_golden.json"
# (clip, frame, whether the frame is also read at its own size)
CASES = (
    ("single_face.mp4", 0, True),
    ("WolfgangLanger_Pexels.mp4", 60, True),
    ("single_face.mp4", 36, False),
    ("single_face.mp4", 71, False),
    ("WolfgangLanger_Pexels.mp4", 240, False),
    ("WolfgangLanger_Pexels.mp4", 420, False),
)
OUTPUT_RECORDED = 2  # the first images of width 416 whose raw output is kept


def sample(frame: np.ndarray, width: int | None) -> np.ndarray:
    """The image a recipe defines (see the module docstring)."""
    if width is None:
        return np.ascontiguousarray(frame)
    source_height, source_width = frame.shape[:2]
    height = source_height * width // source_width
    columns = (2 * np.arange(width) + 1) * source_width // (2 * width)
    rows = (2 * np.arange(height) + 1) * source_width // (2 * width)
    return np.ascontiguousarray(frame[rows][:, columns])


def recipes() -> list[dict]:
    by_clip: dict[str, set[int]] = {}
    for clip, index, _ in CASES:
        by_clip.setdefault(clip, set()).add(index)
    frames = {clip: decode(clip, indices) for clip, indices in by_clip.items()}
    result = []
    for clip, index, whole in CASES:
        name = f"{Path(clip).stem}-{index}"
        result.append({"name": name, "clip": clip, "frame": index,
                       "width": faceapi_detector.INPUT_SIZE})
        if whole:
            result.append({"name": f"{name}-whole", "clip": clip, "frame": index,
                           "width": None})
    for entry in result:
        image = sample(frames[entry["clip"]][entry["frame"]], entry["width"])
        entry["sha256"] = hashlib.sha256(image.tobytes()).hexdigest()
        entry["image"] = image
    return result


def run_reference(entries: list[dict]) -> dict:
    """face-api's detections of every image, from ``node tools/faceapi_detector_reference.mjs``."""
    return run_node("faceapi_detector_reference.mjs", {e["name"]: e["image"] for e in entries})


def agreement(entries: list[dict], reference: dict) -> dict:
    """The port's largest differences from the reference."""
    detector = faceapi_detector.TinyFaceDetector()
    output_error, box_error, score_error, count_mismatch = 0.0, 0.0, 0.0, 0
    for entry in entries:
        theirs = reference["results"][entry["name"]]
        image = torch.from_numpy(entry["image"]).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            if entry["width"] is not None:
                inputs, _ = faceapi_detector.network_input(image)
                ours = detector.network(inputs)[0].flatten()
                output_error = max(output_error,
                                   float((ours - torch.tensor(theirs["output"])).abs().max()))
            (faces,) = detector.detect(image)
        if len(faces) != len(theirs["faces"]):
            count_mismatch += 1
            continue
        for box, score, face in zip(faces.boxes, faces.scores, theirs["faces"]):
            side = float(max(image.shape[-2:]))
            box_error = max(box_error, float((box - torch.tensor(face["box"])).abs().max()) / side)
            score_error = max(score_error, abs(float(score) - face["score"]))
    return {"network_output_max_difference": float(f"{output_error:.2g}"),
            "box_max_difference_of_side": float(f"{box_error:.2g}"),
            "score_max_difference": float(f"{score_error:.2g}"),
            "images_with_other_face_count": count_mismatch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    torch.set_num_threads(1)
    entries = recipes()
    reference = run_reference(entries)
    figures = agreement(entries, reference)
    print(json.dumps(figures, indent=1))
    recorded = 0
    for entry in entries:
        result = reference["results"][entry["name"]]
        if entry["width"] is not None and recorded < OUTPUT_RECORDED:
            entry["output"] = [round(value, 5) for value in result["output"]]
            recorded += 1
        entry["faces"] = [{"box": [round(v, 4) for v in face["box"]],
                           "score": round(face["score"], 6)} for face in result["faces"]]
    write_golden(GOLDEN, "face-api TinyFaceDetector run by the package @vladmandic/face-api "
                 "1.7.15 itself in Node (tools/faceapi_detector_reference.mjs), input "
                 "size 416, score threshold 0.5", reference, "images", "image", entries,
                 figures, "python tools/faceapi_detector_golden.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
