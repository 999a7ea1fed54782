"""Smoke test of benchmarks/throughput.py: it runs end to end and writes a complete JSON.

Only the shape of the report is checked, and that every figure is a positive number: speed
is measured and reported by the benchmark, never asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
SCRIPT = REPOSITORY / "benchmarks" / "throughput.py"
METHODS = {"ffmpeg_cli", "pyav", "pyav_frame_threads", "engine", "vdf_stream_cli"}


def _clip_available() -> bool:
    from vdf_stream import assets
    from vdf_stream.errors import AssetError

    try:
        assets.fetch("single_face.mp4", progress=False)
    except AssetError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command line is missing")
def test_quick_throughput_run_writes_a_complete_report(tmp_path):
    if not _clip_available():
        pytest.skip("single_face.mp4 is not cached and cannot be fetched (offline)")
    output = tmp_path / "x.json"
    # about 20 s on 2 idle cores; the timeout only guards against a hang
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--repeat", "1", "--device", "cpu",
         "--output", str(output)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "engine (Python API)" in completed.stdout

    report = json.loads(output.read_text())
    assert {"benchmark", "date", "conditions", "configuration", "versions", "machine",
            "results"} <= report.keys()
    assert report["configuration"]["quick"] is True
    assert report["configuration"]["crf"] == 18
    assert report["configuration"]["resolved_device"] == "cpu"
    assert {"vdf_stream", "torch", "av", "ffmpeg_libraries", "numpy",
            "ffmpeg_cli"} <= report["versions"].keys()
    assert report["versions"]["ffmpeg_cli"].startswith("ffmpeg version")
    assert {"cpu_model", "cpu_cores", "gpu", "load_average_at_start"} <= report["machine"].keys()
    assert report["machine"]["cpu_cores"] >= 1
    assert isinstance(report["conditions"]["busy"], bool)

    labels = {clip["label"] for clip in report["configuration"]["clips"]}
    assert labels == {"360p", "1080p"}
    assert len(report["results"]) == len(labels) * len(report["configuration"]["presets"])
    for result in report["results"]:
        assert result["methods"].keys() == METHODS
        assert result["frames_match"], result
        for method, summary in result["methods"].items():
            assert summary["median_fps"] > 0, method
            assert summary["median_seconds"] > 0, method
            assert len(summary["fps"]) == 1
            assert all(count == result["frames"] for count in summary["frames"])
            assert summary["x264"].startswith("core "), method
        stages = result["methods"]["engine"]["median_stage_seconds"]
        assert {"decode", "filter", "encode"} <= stages.keys()
        assert stages["decode"] > 0 and stages["encode"] > 0 and stages["filter"] >= 0
        for name in ("engine_vs_ffmpeg_cli", "engine_vs_pyav", "vdf_stream_cli_vs_ffmpeg_cli"):
            assert result["fps_ratios"][name] > 0
