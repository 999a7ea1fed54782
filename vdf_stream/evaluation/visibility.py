"""Visibility of a video as published, beside the codec floor (what ``vdf-stream eval``
reports), measured with :mod:`vdf_stream.visibility` (ColorVideoVDP).

What is measured (:func:`measure`):

``native``
    the video shown at its own size on the display (one video pixel, one display pixel):
    the whole video, temporal channels included (or, with a ``stride``, one segment of
    :func:`~vdf_stream.visibility.segment_length` consecutive frames every ``stride``
    segments).
``full_screen``
    both videos upscaled (bicubic) to 1080 lines, as a viewer who watches full screen sees
    them: ``full_screen_frames`` consecutive frames from the middle of the measured range
    (ColorVideoVDP is about ten times slower at 1080 lines).
``floor``
    the same two figures for the original re-encoded with the protected file's encoder
    settings (:func:`floor_settings`): what publishing alone costs. A protection can do no
    better than the floor; it looks the same when it stays near it (:data:`RULE`).

Per frame, the JOD a video made only of that frame's differences would score.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, UsageError
from ..visibility import (DISPLAY, FULL_SCREEN_FRAMES, METRIC_NAME, VideoJod,
                          display_description, full_screen_size, segment_length)

# "Looks the same": the native video at least this, the full-screen video at least that,
# and each within floor_margin of its codec floor.
RULE = {"native_jod": 9.5, "full_screen_jod": 9.3, "floor_margin": 0.3}
FAIR_JOD = 9.0  # under the rule but at least this at native size: some viewers may see it
DEFAULT_FLOOR_CRF = 23.0


@dataclass
class FloorSettings:
    """How the floor re-encodes the original: the protected file's encoder settings.

    ``codec None``: the protected video is not lossy-coded (raw, lossless), the floor is
    the original itself (JOD 10)."""

    codec: str | None
    crf: float | None
    preset: str | None
    source: str

    def label(self) -> str:
        if self.codec is None:
            return "none: PROTECTED is not lossy-coded"
        return (f"the original re-encoded: {self.codec} CRF {self.crf:g}"
                + (f", preset {self.preset}" if self.preset else ""))


_X264_PRESETS = {  # x264's settings string -> the preset that writes it (subme, ref)
    (0, 1): "ultrafast", (1, 1): "superfast", (2, 1): "veryfast", (4, 2): "faster",
    (6, 2): "fast", (7, 3): "medium", (8, 5): "slow", (9, 8): "slower", (10, 16): "veryslow",
}


def _x264_settings(path: str) -> dict | None:
    """The ``key=value`` options libx264 wrote into the first packets of ``path`` (its
    settings SEI), or ``None``."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            for count, packet in enumerate(container.demux(stream)):
                data = bytes(packet)
                start = data.find(b"x264 - core")
                if start >= 0:
                    end = data.find(b"\x00", start)
                    text = data[start:end if end > 0 else len(data)].decode("ascii", "replace")
                    options = text.split(" options: ", 1)[-1]
                    return dict(item.split("=", 1) for item in options.split() if "=" in item)
                if count >= 4:
                    break
    except (av.error.FFmpegError, OSError, IndexError, ValueError):
        return None
    return None


def floor_settings(protected: str, crf: float | None = None) -> FloorSettings:
    """The encoder settings the floor uses: ``crf`` when given; else those libx264 wrote
    into ``protected``; else libx264 at CRF :data:`DEFAULT_FLOOR_CRF` for a lossy video;
    no floor (the original itself) for raw or lossless video."""
    import av

    try:
        with av.open(protected) as container:
            codec = container.streams.video[0].codec_context.name
    except (av.error.FFmpegError, OSError, IndexError):
        codec = None
    lossless = {"rawvideo", "ffv1", "huffyuv", "utvideo", "png", "qtrle", "ffvhuff", None}
    settings = _x264_settings(protected) if codec == "h264" else None
    if crf is not None:
        return FloorSettings("libx264", float(crf), "medium", "given with --floor-crf")
    if settings and "crf" in settings:
        preset = None
        try:
            preset = _X264_PRESETS.get((int(settings.get("subme", -1)),
                                        int(settings.get("ref", -1))))
        except ValueError:
            pass
        return FloorSettings("libx264", float(settings["crf"]), preset or "medium",
                             "read from PROTECTED's encoder settings")
    if codec in lossless:
        return FloorSettings(None, None, None, f"PROTECTED is {codec or 'not'} coded")
    return FloorSettings("libx264", DEFAULT_FLOOR_CRF, "medium",
                         f"PROTECTED is {codec}; its settings could not be read, so libx264 "
                         f"CRF {DEFAULT_FLOOR_CRF:g} stands for them")


def encode_floor(original: str, directory: str, settings: FloorSettings) -> str:
    """``original`` re-encoded with ``settings`` into ``directory`` (video only)."""
    from ..api import protect
    from ..media.sinks import EncodeOptions

    target = str(Path(directory) / "floor.mkv")
    protect(original, target, vf="null", device="cpu",
            encode=EncodeOptions(codec=settings.codec, crf=settings.crf, preset=settings.preset,
                                 copy_audio=False))
    return target


# ---------------------------------------------------------------------------------------
# The measurement


@dataclass
class VisibilityOptions:
    """What :func:`measure` measures.

    Attributes:
        frames: measure frames ``[0, frames)`` (``None``: all).
        stride: 1: every frame; ``S > 1``: one segment of :func:`segment_length`
            consecutive frames every ``S`` segments (flicker is still seen inside each).
        full_screen_frames: consecutive frames measured at full screen (0: not at all).
        floor_crf: the floor's CRF (``None``: read from the protected file).
        floor: measure the codec floor too (off: a caller that has it already).
        device: where ColorVideoVDP runs.
    """

    frames: int | None = None
    stride: int = 1
    full_screen_frames: int = FULL_SCREEN_FRAMES
    floor_crf: float | None = None
    floor: bool = True
    device: str | torch.device = "cpu"

    def validate(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise UsageError(f"the visibility frames must be at least 1, got {self.frames}")
        if self.stride < 1:
            raise UsageError(f"--visibility-stride must be at least 1, got {self.stride}")
        if self.full_screen_frames < 0:
            raise UsageError("--full-screen-frames must be 0 or more, got "
                             f"{self.full_screen_frames}")
        if self.floor_crf is not None and not (0 <= self.floor_crf <= 51):
            raise UsageError(f"--floor-crf must be in [0, 51], got {self.floor_crf}")


def _pairs(original: str, other: str, last: int | None) -> Iterator[tuple[int, np.ndarray,
                                                                              np.ndarray]]:
    from ..media.sources import open_source

    with open_source(original) as source_o, open_source(other) as source_p:
        for item_o, item_p in zip(source_o.frames("rgb24"), source_p.frames("rgb24")):
            if last is not None and item_o.index >= last:
                return
            yield item_o.index, item_o.pixels, item_p.pixels


def _selected(index: int, segment: int, stride: int) -> tuple[bool, bool]:
    """``(measured, starts a segment)`` of frame ``index``."""
    if stride <= 1:
        return True, index == 0
    position = index % (segment * stride)
    return position < segment, position == 0


def _run(pairs: Iterable, meters: dict, segment: int, stride: int,
         full_range: range | None, progress: Callable[[float], None] | None) -> int:
    count = 0
    for index, pixels_o, pixels_p in pairs:
        measured, starts = _selected(index, segment, stride)
        if measured:
            if starts:
                meters["native"].start_segment()
            meters["native"].add(pixels_o, pixels_p)
        if full_range is not None and index in full_range:
            meters["full_screen"].add(pixels_o, pixels_p)
        count += 1
        if progress is not None:
            progress(1.0)
    return count


def _rounded(values) -> list[float]:
    return [round(value, 4) for value in values]


def measure(original: str, protected: str, options: VisibilityOptions | None = None,
            fps: float | None = None, total_frames: int | None = None,
            progress: Callable[[float], None] | None = None) -> dict:
    """How visible ``protected`` is against ``original``, beside the codec floor: the
    ``visibility`` section of ``vdf-stream eval`` (keys in the module's documentation).

    ``fps``, ``total_frames``: the videos' rate and length when known (the length places
    the full-screen frames in the middle). ``progress`` is called once per frame pair
    decoded, for the protected pass and the floor pass.
    """
    from ..media.sources import open_source

    options = options or VisibilityOptions()
    options.validate()
    device = torch.device(options.device)
    with open_source(original) as source:
        info = source.info
    width, height = info.width, info.height
    fps = fps or (float(info.frame_rate) if info.frame_rate else 30.0)
    last = options.frames
    length = min(n for n in (total_frames, last, info.frame_count) if n) if any(
        (total_frames, last, info.frame_count)) else None
    segment = segment_length(fps)
    full_range = None
    if options.full_screen_frames > 0:
        count = options.full_screen_frames
        middle = (length // 2) if length else 0
        start = max(0, min(middle - count // 2, (length or count) - count))
        full_range = range(start, start + count)
    full_size = full_screen_size(width, height)
    settings = floor_settings(protected, options.floor_crf)

    def meters() -> dict:
        made = {"native": VideoJod(width, height, fps, device)}
        if full_range is not None:
            made["full_screen"] = VideoJod(width, height, fps, device, size=full_size)
        return made

    protected_meters = meters()
    decoded = _run(_pairs(original, protected, last), protected_meters, segment,
                   options.stride, full_range, progress)
    if decoded == 0:
        raise InputError(f"no frame could be decoded from {original} and {protected}")
    floor_meters = None
    if settings.codec is not None and options.floor:
        with tempfile.TemporaryDirectory(prefix="vdf-floor-") as directory:
            encoded = encode_floor(original, directory, settings)
            floor_meters = meters()
            _run(_pairs(original, encoded, last), floor_meters, segment, options.stride,
                 full_range, progress)
    measured_frames = [index for index in range(decoded)
                       if _selected(index, segment, options.stride)[0]]
    result = {"metric": METRIC_NAME, "display": DISPLAY,
              "display_description": display_description(), "rule": dict(RULE),
              "floor": {"label": settings.label(), "codec": settings.codec, "crf": settings.crf,
                        "preset": settings.preset, "source": settings.source},
              "stride": options.stride, "segment_frames": segment if options.stride > 1 else None}
    seconds = {}
    for name, size in (("native", (width, height)), ("full_screen", full_size)):
        meter = protected_meters.get(name)
        if meter is None or meter.frames == 0:
            result[name] = None
            continue
        floor = floor_meters.get(name) if floor_meters else None
        frames = (measured_frames if name == "native"
                  else [index for index in full_range if index < decoded])
        result[name] = {
            "jod": round(meter.jod(), 4),
            "floor_jod": (round(floor.jod(), 4) if floor and floor.frames
                          else None if not options.floor and settings.codec else 10.0),
            "frames": frames,
            "per_frame": _rounded(meter.per_frame()),
            "floor_per_frame": (_rounded(floor.per_frame()) if floor and floor.frames
                                else None if not options.floor and settings.codec
                                else [10.0] * meter.frames),
            "size": list(size),
        }
        spent = meter.seconds + (floor.seconds if floor else 0.0)
        seconds[name] = round(spent / meter.frames, 3)
    result["seconds_per_frame"] = seconds
    result["verdict"] = verdict(result)
    return result


def verdict(visibility: dict) -> dict:
    """Whether the video looks the same, by :data:`RULE`: ``{"looks_the_same", "level"
    ("good", "fair", "poor", "unknown"), "text"}``."""
    rule = {**RULE, **(visibility.get("rule") or {})}
    native = visibility.get("native") or {}
    full = visibility.get("full_screen") or {}
    jod, floor = native.get("jod"), native.get("floor_jod")
    if jod is None:
        return {"looks_the_same": None, "level": "unknown", "text": "visibility not measured"}
    checks = [jod >= rule["native_jod"]]
    if floor is not None:
        checks.append(floor - jod <= rule["floor_margin"])
    if full.get("jod") is not None:
        checks.append(full["jod"] >= rule["full_screen_jod"])
        if full.get("floor_jod") is not None:
            checks.append(full["floor_jod"] - full["jod"] <= rule["floor_margin"])
    same = all(checks)
    level = "good" if same else ("fair" if jod >= FAIR_JOD else "poor")
    text = {"good": "looks the same", "fair": "some viewers may see the change",
            "poor": "the change is visible"}[level]
    return {"looks_the_same": same, "level": level, "text": text}
