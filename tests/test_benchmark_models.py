"""Smoke test of benchmarks/models.py: a --quick run writes a complete JSON report.

Only the report's shape is checked, and that every figure is a positive number: speed is
measured and reported by the benchmark, never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
SCRIPT = REPOSITORY / "benchmarks" / "models.py"
CASES = {"face_detection", "face_landmark", "iris_landmark", "selfie_segmentation",
         "face_pipeline", "bisenet", "fan", "s3fd"}


def _assets_available() -> bool:
    from vdf_stream import assets
    from vdf_stream.errors import AssetError

    try:
        assets.fetch_all("model", progress=False)
        assets.fetch("single_face.mp4", progress=False)
    except AssetError:
        return False
    return True


@pytest.mark.slow
def test_quick_models_benchmark_writes_a_complete_report(tmp_path):
    if not _assets_available():
        pytest.skip("the models or single_face.mp4 are not cached and cannot be fetched")
    output = tmp_path / "models.json"
    # about 30 s on 2 busy cores; the timeout only guards against a hang
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--devices", "cpu", "--output", str(output)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "fwd+bwd ms" in completed.stdout and "bisenet" in completed.stdout

    report = json.loads(output.read_text())
    assert report["benchmark"] == "models"
    assert {"date", "conditions", "configuration", "versions", "machine", "parameters",
            "results"} <= report.keys()
    configuration = report["configuration"]
    assert configuration["quick"] is True and configuration["batches"] == [1]
    assert configuration["devices"] == ["cpu"] and configuration["dtypes"] == ["float32"]
    assert set(configuration["cases"]) == CASES
    assert configuration["user_networks"]["bisenet"]["input"] == [512, 512]
    assert configuration["user_networks"]["fan"]["input"] == [256, 256]
    assert configuration["pipeline_frame_size"] == [640, 360]
    assert {"python", "vdf_stream", "torch", "numpy"} <= report["versions"].keys()
    machine = report["machine"]
    assert {"cpu_model", "cpu_cores", "torch_threads", "gpu", "load_average_at_start",
            "load_average_at_end"} <= machine.keys()
    assert len(machine["load_average_at_start"]) == 3
    assert isinstance(report["conditions"]["busy"], bool)
    assert set(report["parameters"]) == CASES
    assert all(count > 0 for count in report["parameters"].values())

    results = report["results"]
    assert {(r["case"], r["mode"]) for r in results} == {
        (case, mode) for case in CASES for mode in ("forward", "forward_backward")}
    for result in results:
        assert result["error"] is None, result
        assert len(result["milliseconds"]) == len(result["cpu_milliseconds"]) == 1, result
        assert result["median_ms"] > 0 and result["median_cpu_ms"] > 0, result
        assert result["min_ms"] == result["median_ms"]  # one run
        assert result["median_ms_per_frame"] == result["median_ms"]  # batch 1
    shapes = {r["case"]: r["input_shape"] for r in results}
    assert shapes["face_pipeline"] == [1, 3, 360, 640]
    assert shapes["bisenet"] == [1, 3, 512, 512]
    assert shapes["face_landmark"] == [1, 3, 192, 192]
