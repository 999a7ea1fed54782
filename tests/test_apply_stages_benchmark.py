"""Smoke test of benchmarks/apply_stages.py: a quick run times every stage and its floor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "apply_stages.py"
STAGES = {"detect", "prepare", "prepare.small", "prepare.crop", "prepare.warp",
          "prepare.attention", "prepare.bounds", "change", "bound", "apply", "total",
          "whole_frame"}


def test_quick_run_times_every_stage_beside_its_floor(tmp_path, clip):
    clip("single_face.mp4")
    output = tmp_path / "stages.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(output.read_text())
    (case,) = report["cases"]
    assert case["size"] == "640x360" and case["threads"] == 1
    figures = case["ms"]
    assert STAGES <= set(figures) and all(figures[name] > 0 for name in STAGES)
    assert set(figures["floor"]) == {"fft.crop", "fft.small", "warps", "elementwise_bound"}
    assert 0 < figures["floor_total"] < figures["total"]
    assert set(figures["minimum"]) == STAGES
    assert figures["same_output"] is True  # the box path gives the whole-frame path's frame
    step = figures["optimiser_step"]
    assert all(step[name] > 0 for name in ("perturb", "terms", "step"))
    assert step["step"] > step["perturb"] + step["terms"] * 0.5  # the backward pass counts
