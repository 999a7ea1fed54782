"""The real clips, through the engine with ``null``: every frame, every timestamp, the audio
bytes and the colours survive."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from helpers import psnr

CLIPS = ["single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov"]


def _read(path):
    """Decoded I420 frames, presentation times (seconds), colour tags, audio packet bytes."""
    import av

    frames, times, audio = [], [], []
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        context = video.codec_context
        tags = (int(context.colorspace), int(context.color_range),
                int(context.color_primaries), int(context.color_trc))
        streams = [video] + list(container.streams.audio)
        for packet in container.demux(streams):
            if packet.stream.type == "audio":
                if packet.size:
                    audio.append(bytes(packet))
                continue
            for frame in packet.decode():
                frames.append(frame.to_ndarray(format="yuv420p"))
                times.append(Fraction(frame.pts) * frame.time_base)
    return frames, times, tags, audio


@pytest.fixture(scope="module")
def originals(clip):
    return {name: _read(clip(name)) for name in CLIPS}


@pytest.mark.parametrize("name", CLIPS)
@pytest.mark.parametrize("graph", ["null", "scale=factor=1"])
def test_null_keeps_frames_timestamps_audio_and_colour(tmp_path, clip, originals, name, graph):
    """``scale=factor=1`` is an identity that forces the RGB path (YUV -> RGB -> YUV), so
    a wrong colour matrix or range would show as a large error there."""
    from vdf_stream import protect
    from vdf_stream.media.sinks import EncodeOptions

    target = tmp_path / ("out" + os.path.splitext(name)[1])
    stats = protect(str(clip(name)), str(target), vf=graph, device="cpu",
                    encode=EncodeOptions(crf=12, preset="veryfast"))
    frames, times, tags, audio = _read(target)
    source_frames, source_times, source_tags, source_audio = originals[name]
    assert stats.frames_in == stats.frames_out == len(source_frames)
    assert len(frames) == len(source_frames)
    assert times == source_times
    assert tags == source_tags
    assert audio == source_audio and len(audio) > 0
    values = [psnr(a, b) for a, b in zip(source_frames, frames)]
    assert min(values) >= 45.0, f"worst frame PSNR {min(values):.2f} dB"


def _ffmpeg():
    path = shutil.which("ffmpeg")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("ffmpeg is not installed (.ci/run installs it)")
        pytest.skip("the ffmpeg command line is not installed")
    return path


@pytest.mark.parametrize("pipe_format", ["yuv4mpegpipe", "nut"])
def test_real_ffmpeg_at_both_ends_of_a_pipe(tmp_path, clip, originals, pipe_format):
    ffmpeg = _ffmpeg()
    name = "single_face.mp4"
    target = tmp_path / "piped.mkv"
    extra = ["-c:v", "rawvideo"] if pipe_format == "nut" else []
    ours = ["-f", "nut"] if pipe_format == "nut" else []
    producer = subprocess.Popen(
        [ffmpeg, "-v", "error", "-i", str(clip(name)), *extra, "-f", pipe_format, "-"],
        stdout=subprocess.PIPE)
    middle = subprocess.Popen(
        [sys.executable, "-m", "vdf_stream", "protect", "-", "-o", "-", "-q", "--vf", "null",
         *ours],
        stdin=producer.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    producer.stdout.close()
    consumer = subprocess.run(
        [ffmpeg, "-v", "error", "-y", "-i", "-", "-c:v", "libx264", "-crf", "12", str(target)],
        stdin=middle.stdout, capture_output=True)
    middle.stdout.close()
    middle_error = middle.stderr.read()
    assert middle.wait() == 0, middle_error.decode()
    assert producer.wait() == 0
    assert consumer.returncode == 0, consumer.stderr.decode()
    assert middle_error == b""  # nothing but frames on stdout, nothing said on stderr with -q
    frames, times, _, _ = _read(target)
    source_frames, source_times, _, _ = originals[name]
    assert len(frames) == len(source_frames)
    if pipe_format == "nut":  # NUT carries timestamps through the pipe (Matroska: to 1 ms)
        drift = [abs((t - times[0]) - (s - source_times[0])) for t, s in zip(times, source_times)]
        assert max(drift) <= Fraction(1, 1000)
    values = [psnr(a, b) for a, b in zip(source_frames, frames)]
    assert min(values) >= 45.0


def test_rotation_metadata_is_kept(tmp_path):
    import av

    source = tmp_path / "rotated.mp4"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 40, np.uint8),
                                               "rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    from vdf_stream import protect

    protect(str(source), str(tmp_path / "out.mp4"), vf="null", device="cpu")
    with av.open(str(tmp_path / "out.mp4")) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation == 90
