"""Test helpers: synthetic clips whose frame index is written in their pixels, decoding,
and a runner for the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

CELL = 16  # side of one bit's square in the index pattern
BITS = 12  # frames up to 4095


def index_pattern(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame whose top row of squares spells ``index`` in binary (white = 1).

    The rest of the frame is a smooth colour gradient that changes with the index, so
    that colour conversions are exercised too.
    """
    y, x = np.mgrid[0:height, 0:width]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = (x * 255 // max(width - 1, 1) + index * 7) % 256
    frame[..., 1] = (y * 255 // max(height - 1, 1)) % 256
    frame[..., 2] = (index * 29) % 256
    for bit in range(BITS):
        value = 255 if (index >> bit) & 1 else 0
        frame[0:CELL, bit * CELL:(bit + 1) * CELL] = value
    return frame


def read_index(rgb: np.ndarray) -> int:
    """Inverse of :func:`index_pattern` (robust to lossy coding: reads square centres)."""
    index = 0
    for bit in range(BITS):
        centre = rgb[CELL // 4: 3 * CELL // 4, bit * CELL + CELL // 4: (bit + 1) * CELL - CELL // 4]
        if centre.mean() > 127:
            index |= 1 << bit
    return index


def make_clip(path: Path, frames: int = 30, size=(320, 240), rate=Fraction(25),
              codec: str = "libx264", pix_fmt: str = "yuv420p", pts=None,
              audio: bool = False, options=None) -> Path:
    """Write a synthetic clip; ``pts`` (in 1/rate... or a custom list) makes it VFR."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options or ({"crf": "10", "preset": "ultrafast"}
                                     if codec == "libx264" else {})
        if pts is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        audio_stream = None
        if audio:
            audio_stream = container.add_stream("aac", rate=48000)
            audio_stream.layout = "mono"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(index_pattern(index, width, height), "rgb24")
            frame = frame.reformat(format=pix_fmt)
            if pts is not None:
                frame.pts = pts[index]
                frame.time_base = Fraction(1, 1000)
            else:
                frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            seconds = frames / float(rate)
            samples = int(seconds * 48000)
            tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48000)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = tone[start:start + 1024]
                aframe = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                aframe.sample_rate = 48000
                aframe.pts = start
                container.mux(audio_stream.encode(aframe))
            container.mux(audio_stream.encode(None))
    return path


def decode_all(path, stream_format=None):
    """(rgb frames, pts list, time_base) of the first video stream of a file or bytes."""
    import io

    import av

    source = io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else str(path)
    frames, pts = [], []
    with av.open(source, format=stream_format) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            pts.append(frame.pts)
    return frames, pts, time_base


def run_cli(*args, input: bytes | None = None, timeout: float = 300, env=None):
    """Run ``vdf-stream ARGS`` as a user would; return the CompletedProcess (bytes).

    ``protect`` without ``--vf`` gets ``--vf null`` here: these tests are about the engine,
    not the protection filter (the default graph), whose own tests name it.
    """
    args = [str(a) for a in args]
    if args and args[0] == "protect" and "--vf" not in args and "--help" not in args:
        args = [*args, "--vf", "null"]
    command = [sys.executable, "-m", "vdf_stream", *args]
    environment = dict(os.environ)
    environment.update(env or {})
    return subprocess.run(command, input=input, capture_output=True, timeout=timeout,
                          env=environment)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else 10 * np.log10(255.0 ** 2 / error)


def default_sigint() -> None:
    """``preexec_fn`` of a child the test will send SIGINT (Ctrl-C): the signal's default
    disposition. A shell starts background jobs with SIGINT ignored, every process under
    them inherits that, and Python then keeps ignoring it: the child would never see the
    Ctrl-C the test sends."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cut_clip(source: Path, target: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``source``, re-encoded nearly losslessly."""
    import av

    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = writer.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"crf": "12", "preset": "ultrafast"}
        for index, frame in enumerate(reader.decode(video=0)):
            if index == frames:
                break
            assert (frame.width, frame.height) == (640, 360)
            copy = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), "rgb24")
            copy.pts = index
            writer.mux(stream.encode(copy.reformat(format="yuv420p")))
        writer.mux(stream.encode(None))
    return target
