"""How closely vdf-stream's MTCNN reproduces the reference outputs in tests/data/mtcnn_golden.json,
and how it (with face-api's 68 points on its boxes) agrees with the MediaPipe models.

The golden file holds, for frames of the real test clips (named by clip and frame index,
never the pixels), the faces that facenet-pytorch 2.6.0's own MTCNN found: boxes, 5
landmarks and scores. This script decodes the same frames, runs
:class:`vdf_stream.models.mtcnn.MTCNN` on them, matches the faces and prints the largest
differences; ``--write`` records them in the golden file's ``agreement`` entry.

``--mediapipe`` also reads every frame of single_face.mp4 and one in 8 of
WolfgangLanger_Pexels.mp4 with MTCNN, face-api's network (on MTCNN's box) and the face
pipeline, and prints the IoU of MTCNN's and BlazeFace's boxes and the distances of the
corresponding points, over the mesh's eye distance.

    python tools/mtcnn_agreement.py [--write] [--mediapipe]
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


# MTCNN's 5 points and face-api's 68 against the mesh: mesh points (averaged) per point.
MTCNN_ON_MESH = ((33, 133), (362, 263), (1,), (61,), (291,))
FACEAPI_ON_MESH = {36: (33,), 45: (263,), 30: (1,), 48: (61,), 54: (291,)}


def decode_clip(clip: str, step: int) -> torch.Tensor:
    """Every ``step``-th frame of a pinned clip, ``(N, 3, H, W)`` float RGB in [0, 1]."""
    frames = []
    with av.open(str(assets.fetch(clip, progress=False))) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % step == 0:
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
    return torch.stack(frames).float() / 255


def mediapipe_agreement(detector: mtcnn.MTCNN) -> dict:
    """MTCNN and face-api against BlazeFace and the mesh on real clips (see the docstring)."""
    from vdf_stream.models import detection, faceapi, mesh

    pipeline = mesh.FacePipeline(segmentation=False)
    landmarker = faceapi.FaceApiLandmarker()
    figures = {}
    for clip, step in (("single_face.mp4", 1), ("WolfgangLanger_Pexels.mp4", 8)):
        frames = decode_clip(clip, step)
        found = detector.detect(frames)
        counts = [len(faces) for faces in found]
        with torch.no_grad():
            reading = pipeline(frames)
        chosen = [index for index, faces in enumerate(found) if len(faces)
                  and bool(reading.found[index])]
        largest = [found[index].largest() for index in chosen]
        boxes = torch.stack([found[i].boxes[j] for i, j in zip(chosen, largest)])
        points = torch.stack([found[i].points[j] for i, j in zip(chosen, largest)])
        blazeface = torch.stack([reading.detections[i].boxes[0] for i in chosen])
        iou = detection.box_iou(boxes, blazeface).diagonal()
        landmarks = reading.landmarks[chosen][..., :2]
        eye = (landmarks[:, 33] - landmarks[:, 263]).norm(dim=-1, keepdim=True)
        expected = torch.stack([landmarks[:, list(group)].mean(1) for group in MTCNN_ON_MESH], 1)
        mtcnn_error = (points - expected).norm(dim=-1) / eye
        with torch.no_grad():
            face_points = landmarker(frames[chosen], boxes)
        ours = face_points[:, list(FACEAPI_ON_MESH)]
        theirs = torch.stack([landmarks[:, list(group)].mean(1)
                              for group in FACEAPI_ON_MESH.values()], 1)
        faceapi_error = (ours - theirs).norm(dim=-1) / eye
        figures[clip] = {
            "frames": len(frames), "frames_with_one_face": counts.count(1),
            "frames_without_face": counts.count(0),
            "iou_with_blazeface": {"min": round(float(iou.min()), 3),
                                   "median": round(float(iou.median()), 3)},
            "mtcnn_points_over_eye_distance": {
                "median_per_point": [round(v, 3) for v in mtcnn_error.median(0).values.tolist()],
                "max": round(float(mtcnn_error.max()), 3)},
            "faceapi_points_36_45_30_48_54_over_eye_distance": {
                "median_per_point": [round(v, 3) for v in faceapi_error.median(0).values.tolist()],
                "max": round(float(faceapi_error.max()), 3)},
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true",
                        help="record the figures in the golden file's 'agreement' entry")
    parser.add_argument("--mediapipe", action="store_true",
                        help="also measure the agreement with BlazeFace and the face mesh")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    golden = json.loads(GOLDEN.read_text())
    detector = mtcnn.MTCNN()
    agreement = compare(golden, detector)
    print(json.dumps(agreement, indent=1))
    if args.mediapipe:
        print(json.dumps(mediapipe_agreement(detector), indent=1))
    if args.write:
        golden["agreement"] = {**agreement,
                               "command": "python tools/mtcnn_agreement.py --write",
                               "torch": torch.__version__.split("+")[0]}
        GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")
        print(f"wrote the agreement into {GOLDEN.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
