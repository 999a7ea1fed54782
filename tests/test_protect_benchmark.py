"""Smoke test of benchmarks/protect.py: a quick run writes a complete JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "protect.py"


def test_quick_protect_benchmark_writes_a_report(tmp_path, clip):
    clip("single_face.mp4")
    output = tmp_path / "protect.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu",
                             "--output", str(output)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(output.read_text())
    assert report["configuration"]["quick"] is True
    assert {case["share"] for case in report["cases"]} == {"on", "off"}
    for case in report["cases"]:
        assert case["frames"] == 3 and case["fps"] > 0
        assert set(case["stage_seconds"]) == {"decode", "filter", "encode"}
        assert case["vdf"]["frames"] == 3
    off = next(case for case in report["cases"] if case["share"] == "off")
    assert off["vdf"]["keyframes"] == 3 and off["vdf"]["reuse_rate"] == 0
    assert "torch" in json.dumps(report["versions"])
