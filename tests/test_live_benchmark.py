"""Smoke test of benchmarks/live.py: a quick run writes a complete JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "live.py"


def test_quick_live_benchmark_writes_a_report(tmp_path, clip):
    clip("single_face.mp4")
    output = tmp_path / "live.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu",
                             "--threads", "1", "--output", str(output)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(output.read_text())
    assert report["configuration"]["quick"] is True
    (case,) = report["cases"]
    assert case["size"] == "320x180" and case["captured"] == 72
    assert case["delivered"] + case["dropped_at_capture"] == case["captured"]
    assert case["delivered"] > 0 and case["added_latency_ms"]["p95"] > 0
    assert case["eval"]["frames"] >= 1
    assert case["eval"]["fidelity"]["max_abs_difference"] > 0
    assert "torch" in report["versions"] and "pyvirtualcam" in report["versions"]
    assert report["machine"]["cpu_cores"] >= 1
