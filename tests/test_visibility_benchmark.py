"""Smoke test of benchmarks/visibility.py: a short run writes its JSON, and the plot is
drawn from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "visibility.py"


def test_a_short_run_writes_figures_and_a_plot(tmp_path, clip):
    clip("single_face.mp4")
    output, svg = tmp_path / "visibility.json", tmp_path / "visibility.svg"
    done = subprocess.run([sys.executable, str(SCRIPT), "--clips", "single_face.mp4",
                           "--frames", "6", "--stride", "3", "--threads", "1",
                           "--configs", "quick=vdf=steps=2:refine_steps=1",
                           "--folder", str(tmp_path), "--json", str(output)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(output.read_text())["clips"]["single_face.mp4"]["rows"]
    assert [row["label"] for row in rows] == ["floor", "quick"]
    floor, quick = rows
    assert floor["graph"] == "null" and floor["frames"] == quick["frames"] == 6
    assert quick["jod_native"] < floor["jod_native"] <= 10
    assert quick["landmark_nme"] > floor["landmark_nme"]
    drawn = subprocess.run([sys.executable, str(SCRIPT), "--plot-only", str(output), "--svg",
                            str(svg)], capture_output=True, text=True, timeout=120)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    picture = svg.read_text()
    assert picture.startswith("<svg") and picture.count("<circle") == 2
    assert "video JOD at native size" in picture
