"""``vdf-stream batch`` on a real local Ray (2 CPUs): every output frame-exact, a corrupt
input reported without touching the rest, resumable, a killed worker retried by Ray, long
videos split at keyframes and joined equal to one pass, bad input never a traceback."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import ray  # the test extra installs it: these tests are never skipped

from helpers import decode_all, default_sigint, make_clip, read_index, run_cli
from vdf_stream.batch import BatchOptions, Protection, run_batch
from vdf_stream.batch.driver import FAULT_VARIABLE
from vdf_stream.batch.manifest import MANIFEST_NAME
from vdf_stream.batch.plan import WORK_FOLDER_NAME
from vdf_stream.media.segments import plan_segments
from vdf_stream.media.sinks import EncodeOptions

FAST = Protection(vf="null", encode=EncodeOptions(preset="ultrafast"))
# a synthetic clip with B-frames, a keyframe every second and audio: cut at keyframes
SPLITTABLE = {"crf": "10", "preset": "ultrafast", "g": "25", "bf": "2"}


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the in-process tests of this module (starting one takes seconds)."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False, object_store_memory=128 * 2**20)
    yield
    if started:
        ray.shutdown()


# -- helpers --------------------------------------------------------------------------


def _records(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / MANIFEST_NAME).read_text().splitlines()]


def _last_states(output: Path) -> dict[str, dict]:
    return {record["item"]: record for record in _records(output) if record["event"] == "item"}


def _timestamps(path: Path) -> list[Fraction]:
    """Presentation times (seconds) of every decoded video frame."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [frame.pts * stream.time_base for frame in container.decode(stream)]


def _audio_packets(path: Path) -> list[tuple[Fraction, bytes]]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        stream = container.streams.audio[0]
        return [(packet.pts * packet.time_base, bytes(packet))
                for packet in container.demux(stream) if packet.size]


def _assert_frame_exact(source: Path, output: Path, synthetic: bool) -> None:
    if synthetic:
        frames, pts, time_base = decode_all(output)
        _, source_pts, source_time_base = decode_all(source)
        assert [read_index(frame) for frame in frames] == list(range(len(source_pts)))
        assert [p * time_base for p in pts] == [p * source_time_base for p in source_pts]
    else:
        assert _timestamps(output) == _timestamps(source)


def _ffmpeg_errors(path: Path) -> str:
    result = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
                            capture_output=True, text=True, timeout=120)
    return result.stderr


def _leftovers(folder: Path) -> list[Path]:
    """Anything that a finished batch should not leave: partial files, work folders."""
    return [path for path in folder.rglob("*")
            if ".partial" in path.name or path.name == WORK_FOLDER_NAME]


# -- the library -----------------------------------------------------------------------


def test_a_library_is_protected_the_corrupt_file_reported_and_a_second_run_does_nothing(
        tmp_path, clip, local_ray):
    library = tmp_path / "library"
    (library / "talks").mkdir(parents=True)
    (library / "synthetic").mkdir()
    shutil.copy(clip("single_face.mp4"), library / "single_face.mp4")
    shutil.copy(clip("WolfgangLanger_Pexels.mp4"), library / "talks" / "long.mp4")  # 19.7 s
    make_clip(library / "synthetic" / "short.mp4", frames=30, audio=True)
    pts = [index * 40 + (index % 3) * 7 for index in range(150)]  # variable frame rate
    make_clip(library / "synthetic" / "vfr.mkv", frames=150, pts=pts, audio=True,
              options=SPLITTABLE)
    (library / "corrupt.mp4").write_bytes(bytes(range(256)) * 400)
    (library / "notes.txt").write_text("not a video\n")
    output = library / "protected"  # inside the input: must not be searched

    result = run_cli("batch", library, "-o", output, "--vf", "null", "--preset", "ultrafast",
                     "--split-long", "5s", "--workers", "2", timeout=600)
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 5, stderr
    assert "Traceback" not in stderr
    assert "corrupt.mp4" in stdout and "failed" in stdout

    good = {"single_face.mp4": False, "talks/long.mp4": False,
            "synthetic/short.mp4": True, "synthetic/vfr.mkv": True}
    states = _last_states(output)
    assert set(states) == {*good, "corrupt.mp4"}
    assert states["corrupt.mp4"]["state"] == "failed"
    assert "not a readable video" in states["corrupt.mp4"]["message"]
    for key, synthetic in good.items():
        record = states[key]
        assert record["state"] == "done", record
        target = output / key
        assert hashlib.sha256(target.read_bytes()).hexdigest() == record["sha256"]
        _assert_frame_exact(library / key, target, synthetic)
        assert len(_audio_packets(target)) == len(_audio_packets(library / key))
    assert states["talks/long.mp4"]["segments"] == 4
    assert states["synthetic/vfr.mkv"]["segments"] == 2
    assert _ffmpeg_errors(output / "talks" / "long.mp4") == ""
    assert _leftovers(library) == []
    assert not (output / "protected").exists() and not (output / "notes.txt").exists()

    # again: nothing is redone (Ray is not even started), the corrupt file fails again
    written = {key: (output / key).stat().st_mtime_ns for key in good}
    records = len(_records(output))
    started = time.perf_counter()
    again = run_cli("batch", library, "-o", output, "--vf", "null", "--preset", "ultrafast",
                    "--split-long", "5s", "--workers", "2", timeout=600)
    assert again.returncode == 5, again.stderr.decode()
    assert time.perf_counter() - started < 60
    assert {key: (output / key).stat().st_mtime_ns for key in good} == written
    new = _records(output)[records:]
    assert [(record["item"], record["state"]) for record in new] == [("corrupt.mp4", "failed")]
    assert again.stdout.decode().count("done earlier, same settings") == len(good)

    # a changed input is redone, and only it
    (library / "synthetic" / "short.mp4").unlink()
    make_clip(library / "synthetic" / "short.mp4", frames=20, audio=True)
    records = len(_records(output))
    options = BatchOptions(output, FAST, split_seconds=5.0)  # the same settings, in-process
    assert run_batch(str(library), options).exit_code == 5
    new = _records(output)[records:]
    assert {(record["item"], record["state"]) for record in new if record["event"] == "item"} \
        == {("corrupt.mp4", "failed"), ("synthetic/short.mp4", "running"),
            ("synthetic/short.mp4", "done")}
    assert _last_states(output)["synthetic/short.mp4"]["frames"] == 20
    _assert_frame_exact(library / "synthetic" / "short.mp4", output / "synthetic" / "short.mp4",
                        synthetic=True)


# -- splitting -------------------------------------------------------------------------


def test_split_and_join_equals_one_pass(tmp_path, clip, local_ray):
    library = tmp_path / "in"
    library.mkdir()
    shutil.copy(clip("WolfgangLanger_Pexels.mp4"), library / "talk.mp4")
    pts = [index * 40 + (index % 4) * 9 for index in range(120)]
    make_clip(library / "vfr.mkv", frames=120, pts=pts, audio=True, options=SPLITTABLE)

    split = run_batch(str(library), BatchOptions(tmp_path / "split", FAST, split_seconds=2.5))
    whole = run_batch(str(library), BatchOptions(tmp_path / "whole", FAST, split_seconds=None))
    assert split.exit_code == whole.exit_code == 0
    segments = {item.key: item.segments for item in split.items}
    assert segments == {"talk.mp4": 7, "vfr.mkv": 2}
    assert {item.segments for item in whole.items} == {1}

    for name in ("talk.mp4", "vfr.mkv"):
        joined, single = tmp_path / "split" / name, tmp_path / "whole" / name
        assert _timestamps(joined) == _timestamps(single) == _timestamps(library / name)
        assert _audio_packets(joined) == _audio_packets(single) == _audio_packets(library / name)
    _assert_frame_exact(library / "vfr.mkv", tmp_path / "split" / "vfr.mkv", synthetic=True)
    assert _ffmpeg_errors(tmp_path / "split" / "talk.mp4") == ""

    # every segment starts with a keyframe of the output, at the source's cut
    import av

    plan = plan_segments(library / "talk.mp4", 2.5)
    with av.open(str(tmp_path / "split" / "talk.mp4")) as container:
        stream = container.streams.video[0]
        keyframes = {packet.pts * stream.time_base for packet in container.demux(stream)
                     if packet.size and packet.is_keyframe}
        dts = [packet.dts for packet in container.demux(stream) if packet.size]
    cuts = {segment.start * plan.time_base for segment in plan.segments[1:]}
    assert cuts <= keyframes
    assert all(later > earlier for earlier, later in zip(dts, dts[1:]))


# -- faults ----------------------------------------------------------------------------


def test_a_killed_worker_is_retried_and_leaves_no_partial_file(tmp_path, local_ray,
                                                               monkeypatch):
    library = tmp_path / "in"
    library.mkdir()
    make_clip(library / "cut.mp4", frames=100, options=SPLITTABLE)  # 4 s: two segments
    make_clip(library / "whole.mp4", frames=30)
    monkeypatch.setenv(FAULT_VARIABLE, "kill-after-frames=5")

    result = run_batch(str(library), BatchOptions(tmp_path / "out", FAST, split_seconds=2.0,
                                                  retries=1))
    assert result.exit_code == 0, [(item.key, item.message) for item in result.items]
    states = _last_states(tmp_path / "out")
    assert states["cut.mp4"]["segments"] == 2
    for name in ("cut.mp4", "whole.mp4"):
        assert states[name]["state"] == "done"
        assert states[name]["attempts"] == 2  # the first attempt's worker was killed
        _assert_frame_exact(library / name, tmp_path / "out" / name, synthetic=True)
    assert _leftovers(tmp_path / "out") == []


def test_a_worker_lost_more_often_than_retries_allow_fails_only_its_item(tmp_path, local_ray,
                                                                        monkeypatch):
    library = tmp_path / "in"
    library.mkdir()
    make_clip(library / "a.mp4", frames=20)
    monkeypatch.setenv(FAULT_VARIABLE, "kill-after-frames=3")
    result = run_batch(str(library), BatchOptions(tmp_path / "out", FAST, retries=0))
    assert result.exit_code == 5
    (item,) = result.items
    assert item.state == "failed" and "worker was lost" in item.message
    assert not (tmp_path / "out" / "a.mp4").exists()
    assert _leftovers(tmp_path / "out") == []
    monkeypatch.delenv(FAULT_VARIABLE)
    assert run_batch(str(library), BatchOptions(tmp_path / "out", FAST)).exit_code == 0
    _assert_frame_exact(library / "a.mp4", tmp_path / "out" / "a.mp4", synthetic=True)


def test_ctrl_c_keeps_the_manifest_consistent_and_leaves_nothing_that_looks_done(tmp_path):
    library = tmp_path / "in"
    library.mkdir()
    # long enough that an unloaded machine cannot finish it before the signal arrives
    make_clip(library / "long.mkv", frames=1500, size=(640, 480))
    output = tmp_path / "out"
    command = [sys.executable, "-m", "vdf_stream", "batch", str(library), "-o", str(output),
               "--vf", "null", "--preset", "veryslow", "--workers", "1", "-q"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=default_sigint)
    partial = output / ".long.partial.mkv"
    deadline = time.time() + 120
    while time.time() < deadline and not partial.exists() and process.poll() is None:
        time.sleep(0.2)
    assert partial.exists(), "the unit never started writing"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert "interrupted" in stdout.decode()
    states = _last_states(output)
    assert states["long.mkv"]["state"] == "interrupted"
    assert not (output / "long.mkv").exists()
    assert [path for path in output.rglob("*") if ".partial" in path.name] == []


# -- the protection itself -------------------------------------------------------------


def test_the_default_protection_runs_in_a_batch(tmp_path, clip, local_ray):
    import av

    library = tmp_path / "in"
    library.mkdir()
    with av.open(str(clip("single_face.mp4"))) as source, \
            av.open(str(library / "face.mp4"), "w") as target:
        stream = target.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        for index, frame in enumerate(source.decode(video=0)):
            if index == 4:
                break
            copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), "rgb24")
            copy.pts = index
            target.mux(stream.encode(copy.reformat(format="yuv420p")))
        target.mux(stream.encode(None))
    protection = Protection(vf="vdf=steps=4:quiet=1", strength="low",
                            encode=EncodeOptions(preset="ultrafast"))
    result = run_batch(str(library), BatchOptions(tmp_path / "out", protection, workers=1))
    assert result.exit_code == 0, result.items[0].message
    assert _last_states(tmp_path / "out")["face.mp4"]["protection"]["vf"] == protection.vf
    frames, _, _ = decode_all(tmp_path / "out" / "face.mp4")
    originals, _, _ = decode_all(library / "face.mp4")
    assert len(frames) == 4
    assert any((frame != original).any() for frame, original in zip(frames, originals))


# -- bad input -------------------------------------------------------------------------


def _run(capsys, *args) -> tuple[int, str]:
    """``vdf-stream ARGS`` in this process (no start-up cost): exit code and its one line."""
    from vdf_stream.cli.main import main

    code = main([str(arg) for arg in args])
    text = capsys.readouterr().err
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("vdf-stream: ")
    return code, lines[0]


def test_missing_and_empty_inputs_and_output_equal_to_input(tmp_path, capsys):
    code, line = _run(capsys, "batch", tmp_path / "missing", "-o", tmp_path / "out", "-q")
    assert code == 3 and "no such file or folder" in line
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no videos here")
    code, line = _run(capsys, "batch", tmp_path / "empty", "-o", tmp_path / "out", "-q")
    assert code == 3 and "no video files" in line
    code, line = _run(capsys, "batch", tmp_path / "empty", "-o", tmp_path / "empty", "-q")
    assert code == 4 and "output folder is the input folder" in line
    code, line = _run(capsys, "batch", tmp_path / "empty", "-o", tmp_path / "out",
                      "--split-long", "soon", "-q")
    assert code == 2 and "--split-long" in line
    code, line = _run(capsys, "batch", tmp_path / "empty", "-o", tmp_path / "out", "--vf",
                      "nosuch", "-q")
    assert code == 2 and "nosuch" in line
    code, line = _run(capsys, "batch", tmp_path / "empty", "-q")
    assert code == 2 and "-o/--output" in line


def test_a_list_with_missing_entries_reports_them_and_protects_the_rest(tmp_path, local_ray):
    (tmp_path / "videos").mkdir()
    make_clip(tmp_path / "videos" / "a.mp4", frames=10)
    listing = tmp_path / "list.txt"
    listing.write_text("# my videos\nvideos/a.mp4\nvideos/gone.mp4\n\nvideos\n")
    result = run_batch(str(listing), BatchOptions(tmp_path / "out", FAST))
    states = {item.key: (item.state, item.message) for item in result.items}
    assert states == {"videos/a.mp4": ("done", ""),
                      "videos/gone.mp4": ("failed", "no such file"),
                      "videos": ("failed", "is a folder, not a video file")}
    assert result.exit_code == 5
    _assert_frame_exact(tmp_path / "videos" / "a.mp4", tmp_path / "out" / "videos" / "a.mp4",
                        synthetic=True)


def test_an_existing_output_not_made_by_the_batch_is_kept_without_y(tmp_path, local_ray):
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "a.mp4", frames=10)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.mp4").write_bytes(b"mine")
    result = run_batch(str(tmp_path / "in"), BatchOptions(tmp_path / "out", FAST))
    assert result.exit_code == 5 and "use -y" in result.items[0].message
    assert (tmp_path / "out" / "a.mp4").read_bytes() == b"mine"
    result = run_batch(str(tmp_path / "in"), BatchOptions(tmp_path / "out", FAST,
                                                          overwrite=True))
    assert result.exit_code == 0
    _assert_frame_exact(tmp_path / "in" / "a.mp4", tmp_path / "out" / "a.mp4", synthetic=True)


def test_without_ray_one_line_says_what_to_install(tmp_path, monkeypatch, capsys):
    make_clip(tmp_path / "a.mp4", frames=5)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code, line = _run(capsys, "batch", tmp_path, "-o", tmp_path / "out", "--vf", "null")
    assert code == 2
    assert line == 'vdf-stream: the batch command needs Ray: pip install "vdf-stream[batch]"'
