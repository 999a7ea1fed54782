"""Smoke test of benchmarks/transfer.py: one frame, a few steps, two configurations (between
them every model is optimised against once): the JSON has its shape, and every white-box
cell reads above that model's floor (H.264 CRF 23 of the original alone)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "transfer.py"
COLUMNS = {"landmark_nme", "pose_error", "mtcnn_nme", "mtcnn_faces_lost", "faceapi68_nme",
           "faceapi68tiny_nme", "psnr", "ssim", "psnr_before_encoding",
           "max_abs_difference_before_encoding"}
# the column each model's white-box cell is checked on
WHITE_BOX = {"mesh": "landmark_nme", "mtcnn": "mtcnn_nme", "faceapi68": "faceapi68_nme",
             "faceapi68tiny": "faceapi68tiny_nme"}


def test_transfer_benchmark_one_frame(tmp_path, clip):
    clip("single_face.mp4")
    output, picture = tmp_path / "transfer.json", tmp_path / "matrix.svg"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--clips", "single_face.mp4", "--frames", "1",
         "--steps", "8", "--configurations", "mesh", "mtcnn+faceapi68+faceapi68tiny",
         "--json", str(output), "--svg", str(picture)],
        capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "optimised on" in completed.stdout and "*" in completed.stdout

    report = json.loads(output.read_text())
    assert {"benchmark", "configuration", "matrix", "techniques", "floor", "noise_sign",
            "conditions", "versions", "machine"} <= report.keys()
    assert report["configuration"]["eps"] == "8/255" and report["configuration"]["steps"] == 8
    assert report["configuration"]["perturb_options"]["chroma"] == 0.0
    assert {"load_average_at_start", "load_average_at_end"} <= report["conditions"].keys()
    assert [entry["configuration"] for entry in report["matrix"]] == [
        "mesh", "mtcnn+faceapi68+faceapi68tiny"]
    floor = report["floor"]["clips"]["single_face.mp4"]["summary"]
    assert set(floor) == COLUMNS
    assert set(report["noise_sign"]["clips"]["single_face.mp4"]["summary"]) == COLUMNS
    checked = set()
    for entry in report["matrix"]:
        row = entry["clips"]["single_face.mp4"]
        assert set(row["per_frame"]) == COLUMNS
        assert all(len(values) == 1 for values in row["per_frame"].values())
        assert row["seconds_per_keyframe"] > 0 and row["steps"] == 8
        assert row["summary"]["psnr"] > 33
        assert row["summary"]["max_abs_difference_before_encoding"] <= 8
        for model in entry["models"]:
            column = WHITE_BOX[model]
            assert row["summary"][column] > floor[column], (entry["configuration"], column)
            checked.add(model)
    assert checked == set(WHITE_BOX)
    ElementTree.parse(picture)  # well-formed SVG
