"""Write tests/data/faceapi_golden.json: face-api's own 68 landmarks on face crops of the
real clips, read by the package itself in Node (the reference runtime) with both of its
68-point networks (FaceLandmark68Net; FaceLandmark68TinyNet as ``tiny_*``), and how
closely vdf-stream's PyTorch ports agree.

The clips' media licence is not stated, so no pixels are stored: each crop is a recipe
(clip, frame, integer box, output size) and the sha256 of the crop's bytes, so that the
test rebuilds exactly the same crop from the fetched clip. Two kinds of crops:

- ``size`` 112: a square box sampled to 112x112 by nearest neighbour in integer
  arithmetic (pixel ``i`` reads row ``top + (2 i + 1) * side // 224``), the network's own
  input: its 136 raw outputs are recorded, for a tight comparison of the network;
- ``size`` null: a face box (MTCNN's, rounded) at its own size, as face-api's pipeline is
  handed it: the package pads it to a square and resizes it itself, so the comparison
  covers the un-padding and mapping back to the box too (looser: the resampling differs).

    npm ci --prefix tools
    python tools/faceapi_golden.py
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import torch

from vdf_stream import assets
from vdf_stream.models import faceapi, mtcnn

TOOLS = Path(__file__).resolve().parent
GOLDEN = TOOLS.parent / "tests" / "data" / "faceapi_golden.json"
# (clip, frame, whether the box itself is also read at its own size)
CASES = (
    ("single_face.mp4", 0, True),
    ("single_face.mp4", 36, False),
    ("single_face.mp4", 71, False),
    ("WolfgangLanger_Pexels.mp4", 60, True),
    ("WolfgangLanger_Pexels.mp4", 240, False),
    ("WolfgangLanger_Pexels.mp4", 420, False),
)


def decode(clip: str, indices: set[int]) -> dict[int, np.ndarray]:
    """Frames ``indices`` of a pinned clip as ``(H, W, 3)`` uint8 RGB."""
    frames = {}
    with av.open(str(assets.fetch(clip, progress=False))) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in indices:
                frames[index] = frame.to_ndarray(format="rgb24")
            if index >= max(indices):
                break
    return frames


def cut(frame: np.ndarray, box: list[int], size: int | None) -> np.ndarray:
    """The crop a recipe defines (see the module docstring)."""
    left, top, right, bottom = box
    if size is None:
        return np.ascontiguousarray(frame[top:bottom, left:right])
    side = right - left
    steps = (2 * np.arange(size) + 1) * side // (2 * size)
    return np.ascontiguousarray(frame[top + steps][:, left + steps])


def recipes() -> list[dict]:
    """Crop recipes from MTCNN's face box on each case's frame."""
    detector = mtcnn.MTCNN()
    by_clip: dict[str, set[int]] = {}
    for clip, index, _ in CASES:
        by_clip.setdefault(clip, set()).add(index)
    frames = {clip: decode(clip, indices) for clip, indices in by_clip.items()}
    result = []
    for clip, index, whole_box in CASES:
        frame = frames[clip][index]
        height, width = frame.shape[:2]
        (faces,) = detector.detect(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255)
        box = faces.boxes[faces.largest()].tolist()
        side = round(max(box[2] - box[0], box[3] - box[1]))
        left = min(max(round((box[0] + box[2] - side) / 2), 0), width - side)
        top = min(max(round((box[1] + box[3] - side) / 2), 0), height - side)
        name = f"{Path(clip).stem}-{index}"
        result.append({"name": name, "clip": clip, "frame": index,
                       "box": [left, top, left + side, top + side], "size": faceapi.INPUT_SIZE})
        if whole_box:
            rounded = [max(round(box[0]), 0), max(round(box[1]), 0), min(round(box[2]), width),
                       min(round(box[3]), height)]
            result.append({"name": f"{name}-box", "clip": clip, "frame": index,
                           "box": rounded, "size": None})
    for entry in result:
        crop = cut(frames[entry["clip"]][entry["frame"]], entry["box"], entry["size"])
        entry["sha256"] = hashlib.sha256(crop.tobytes()).hexdigest()
        entry["crop"] = crop
    return result


def run_node(script: str, images: dict[str, np.ndarray]) -> dict:
    """What ``node tools/SCRIPT IMAGES.json OUT.json`` writes for ``(H, W, 3)`` uint8 images
    by name (the reference runtime's calling convention)."""
    with tempfile.TemporaryDirectory() as scratch:
        images_path, output_path = Path(scratch) / "images.json", Path(scratch) / "out.json"
        images_path.write_text(json.dumps([
            {"name": name, "width": image.shape[1], "height": image.shape[0],
             "rgb": base64.b64encode(image.tobytes()).decode("ascii")}
            for name, image in images.items()]))
        try:
            subprocess.run(["node", str(TOOLS / script), str(images_path), str(output_path)],
                           check=True)
        except (OSError, subprocess.CalledProcessError) as error:
            raise SystemExit(f"the reference runtime failed ({error}); run "
                             "`npm ci --prefix tools` first") from None
        return json.loads(output_path.read_text())


def run_reference(entries: list[dict]) -> dict:
    """face-api's outputs for every crop, from ``node tools/faceapi_reference.mjs``."""
    return run_node("faceapi_reference.mjs", {e["name"]: e["crop"] for e in entries})


def write_golden(path: Path, description: str, reference: dict, kind: str, pixels: str,
                 entries: list[dict], figures: dict, command: str) -> None:
    """Write a golden file: what the reference is, its runtime, the entries (``kind``)
    without their pixels (the ``pixels`` key), and the port's agreement with it."""
    golden = {
        "reference": description,
        "runtime": reference["runtime"],
        kind: [{key: value for key, value in entry.items() if key != pixels}
               for entry in entries],
        "agreement": {**figures, "command": command, "torch": torch.__version__.split("+")[0]},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(golden) + "\n")
    print(f"wrote {path.name} ({path.stat().st_size} bytes)", file=sys.stderr)


def agreement(entries: list[dict], variant: str = "full") -> dict:
    """The port's largest differences from the reference, in pixels of the 112x112 input."""
    landmarker = faceapi.FaceApiLandmarker(variant=variant)
    prefix = "" if variant == "full" else f"{variant}_"
    network_error, box_error = 0.0, 0.0
    for entry in entries:
        crop = torch.from_numpy(entry["crop"]).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            if entry["size"] is not None:
                ours = landmarker.network(crop)[0].flatten() * faceapi.INPUT_SIZE
                theirs = torch.tensor(entry[f"{prefix}output"]) * faceapi.INPUT_SIZE
                network_error = max(network_error, float((ours - theirs).abs().max()))
            else:
                height, width = crop.shape[-2:]
                box = torch.tensor([[0.0, 0.0, float(width), float(height)]])
                ours = landmarker(crop, box)[0]
                scale = faceapi.INPUT_SIZE / max(height, width)
                difference = (ours - torch.tensor(entry[f"{prefix}points"])).norm(dim=-1) * scale
                box_error = max(box_error, float(difference.max()))
    return {f"{prefix}network_output_max_difference_px112": float(f"{network_error:.2g}"),
            f"{prefix}box_points_max_distance_px112": float(f"{box_error:.2g}")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    torch.set_num_threads(1)
    entries = recipes()
    reference = run_reference(entries)
    for entry in entries:
        result = reference["results"][entry["name"]]
        for prefix in ("", "tiny_"):
            if f"{prefix}output" in result:  # fractions of the input: 1e-7 is 1e-5 pixels
                entry[f"{prefix}output"] = [round(v, 7) for v in result[f"{prefix}output"]]
            entry[f"{prefix}points"] = [[round(value, 5) for value in point]
                                        for point in result[f"{prefix}points"]]
    figures = {**agreement(entries), **agreement(entries, "tiny")}
    print(json.dumps(figures, indent=1))
    write_golden(GOLDEN, "face-api FaceLandmark68Net and FaceLandmark68TinyNet (tiny_*) run by "
                 "the package @vladmandic/face-api 1.7.15 itself in Node "
                 "(tools/faceapi_reference.mjs)", reference, "crops", "crop", entries, figures,
                 "python tools/faceapi_golden.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
