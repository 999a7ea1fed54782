"""Smoke test of benchmarks/batch.py: its quickest case runs end to end on a local Ray and
writes a complete JSON. Only the report's shape is checked: speed is measured by the
benchmark, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
SCRIPT = REPOSITORY / "benchmarks" / "batch.py"


@pytest.mark.slow
def test_quick_null_case_writes_a_complete_report(tmp_path, clip):
    clip("single_face.mp4")  # fetched (and verified) before the timed runs
    output = tmp_path / "batch.json"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--cases", "null", "--workers", "1",
         "--output", str(output)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "plain loop, no Ray" in completed.stdout

    report = json.loads(output.read_text())
    assert {"benchmark", "date", "conditions", "configuration", "versions", "machine",
            "results"} <= report.keys()
    assert report["versions"]["ray"]
    scaling = report["results"]["scaling"]["null"]
    (run,) = scaling["runs"]
    assert run["workers"] == 1 and run["frames"] == 72 and run["fps"] > 0
    assert run["speedup"] == 1.0 and run["ray_start_seconds"] > 0
    assert scaling["plain_loop"]["frames"] == 72 and scaling["plain_loop"]["fps"] > 0
    assert scaling["ray_overhead"]["batch_seconds_over_plain"] > 0
