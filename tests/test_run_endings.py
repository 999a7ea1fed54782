"""How a `protect` run ends: every count printed is of frames written, every closing message
says what is on disk, Ctrl-C cuts the copied audio where the video ends, and -q is quiet.

Clips with audio are made by the ffmpeg command line (a test pattern and a sine tone)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import default_sigint, run_cli

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="the ffmpeg and ffprobe command lines make and read these clips")

DAMAGED, INTERRUPTED = 5, 130
AAC_FRAME = 1024 / 48000  # seconds of one copied audio packet


def _ffmpeg(*args) -> bytes:
    result = subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)],
                            capture_output=True, check=True)
    return result.stdout


def _streams(path) -> dict:
    """codec_type -> (frames counted by decoding, end time in seconds) of each stream."""
    result = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                             "stream=codec_type,nb_read_frames,start_time,duration",
                             "-of", "json", str(path)], capture_output=True, check=True)
    found = {}
    for stream in json.loads(result.stdout)["streams"]:
        end = float(stream.get("start_time", 0)) + float(stream["duration"])
        found[stream["codec_type"]] = (int(stream["nb_read_frames"]), end)
    return found


def _y4m(seconds: float) -> bytes:
    return _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25", "-t", seconds,
                   "-f", "yuv4mpegpipe", "-")


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """20 s of 320x240 pattern at 25 fps with a sine tone in AAC."""
    path = tmp_path_factory.mktemp("endings") / "talk.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=320x240:r=25", "-f", "lavfi", "-i",
            "sine=frequency=440:sample_rate=48000", "-t", 20, "-c:v", "libx264",
            "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", path)
    return path


def test_ctrl_c_cuts_the_audio_with_the_video_and_counts_frames_written(talk, tmp_path):
    # the clip arrives on stdin (NUT, audio and all), its first half only: the run is still
    # going when Ctrl-C comes, however fast the machine (from a file it could be done first)
    stream = _ffmpeg("-i", talk, "-c", "copy", "-f", "nut", "-")
    target = tmp_path / "out.mp4"
    command = [sys.executable, "-m", "vdf_stream", "protect", "-", "-o", str(target),
               "--vf", "vdf", "--preset", "ultrafast"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=default_sigint)
    process.stdin.write(stream[:len(stream) // 2])
    process.stdin.flush()
    deadline = time.time() + 120
    while time.time() < deadline and not target.exists():
        time.sleep(0.1)
    time.sleep(3)  # what was sent is decoded, protected and encoded
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)  # stdin still open: the run ends by the interrupt
    text = process.stderr.read().decode()
    process.stdin.close()
    process.stderr.close()
    assert process.returncode == INTERRUPTED, text
    streams = _streams(target)
    frames, video_end = streams["video"]
    assert 0 < frames < 500
    # the audio copied from the input ends where the last frame written ends
    _, audio_end = streams["audio"]
    assert abs(audio_end - video_end) <= AAC_FRAME + 1e-3, (audio_end, video_end)
    # every count printed is of the frames in the file
    summary = re.search(r"^vdf: (\d+) frames", text, re.MULTILINE)
    assert summary and int(summary.group(1)) == frames, text
    closing = text.strip().splitlines()[-1]
    assert closing == (f"vdf-stream: interrupted after {frames} frames; {target} is "
                       f"finalised with {frames} frames, its audio cut where they end")


def test_truncated_pipe_with_no_whole_frame_leaves_no_file(tmp_path):
    """`ffmpeg ... -f yuv4mpegpipe - | head -c 1000 | vdf-stream protect - -o cut.mp4`"""
    target = tmp_path / "cut.mp4"
    result = run_cli("protect", "-", "-o", target, "-q", input=_y4m(2)[:1000])
    assert result.returncode == DAMAGED
    text = result.stderr.decode()
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    assert text.strip().endswith(f"nothing was written, no file is left at {target}")
    assert "finalised" not in text
    assert not target.exists()


def test_truncated_pipe_says_how_many_frames_are_on_disk(tmp_path):
    data = _y4m(1)
    header_end = data.index(b"\n") + 1
    frame = data.index(b"FRAME", header_end + 1) - header_end  # bytes of one frame
    cut = data[:header_end + 6 * frame + frame // 2]  # six whole frames and half a seventh
    target = tmp_path / "cut.mp4"
    result = run_cli("protect", "-", "-o", target, "-q", input=cut)
    assert result.returncode == DAMAGED
    text = result.stderr.decode().strip()
    assert text.endswith(f"; {target} is finalised with 6 frames"), text
    assert _streams(target)["video"][0] == 6
    result = run_cli("protect", "-", "-o", "-", "-q", input=cut)
    assert result.returncode == DAMAGED
    assert result.stderr.decode().strip().endswith("; 6 frames were written to stdout")
    assert result.stdout.count(b"FRAME") == 6


def test_a_finished_run_says_what_it_finalised(tmp_path):
    target = tmp_path / "out.mp4"
    result = run_cli("protect", "-", "-o", target, input=_y4m(0.4))
    assert result.returncode == 0, result.stderr.decode()
    closing = result.stderr.decode().strip().splitlines()[-1]
    assert closing.startswith(f"{target} is finalised with 10 frames in ")
    assert _streams(target)["video"][0] == 10


def test_quiet_silences_the_protection_summary(tmp_path):
    source = tmp_path / "in.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=96x64:r=25", "-frames:v", 4, "-pix_fmt", "yuv420p",
            source)
    target = tmp_path / "out.mp4"
    result = run_cli("protect", source, "-o", target, "--vf", "vdf", "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    assert _streams(target)["video"][0] == 4
