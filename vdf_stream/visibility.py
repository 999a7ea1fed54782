"""How visible a change is to people: ColorVideoVDP, a full-reference visual difference
predictor (Mantiuk et al., PyPI ``cvvdp``), on the video as published and beside the codec
floor.

ColorVideoVDP models the display (its size, resolution, peak luminance, room light and the
viewing distance) and the viewer's vision (contrast sensitivity over spatial and temporal
frequency, contrast masking, colour) and predicts JOD, just-objectionable differences: 10 =
no difference, one JOD lower = 75% of viewers pick the original in a side-by-side test. Its
temporal channels see flicker, which per-frame metrics (PSNR, SSIM) do not.

What is measured (:func:`measure`), always on display model :data:`DISPLAY`:

``native``
    the video shown at its own size on that display (one video pixel, one display pixel):
    the whole video, temporal channels included (or, with a ``stride``, one segment of
    :func:`segment_length` consecutive frames every ``stride`` segments).
``full_screen``
    both videos upscaled (bicubic) to :data:`FULL_SCREEN_LINES` lines, as a viewer who
    watches full screen sees them: ``full_screen_frames`` consecutive frames from the
    middle of the measured range (ColorVideoVDP is about ten times slower at 1080 lines).
``floor``
    the same two figures for the original re-encoded with the protected file's encoder
    settings (:func:`floor_settings`): what publishing alone costs. A protection can do no
    better than the floor; it looks the same when it stays near it (:data:`RULE`).

Per frame, the JOD a video made only of that frame's differences would score (the video's
per-frame quality, temporal channels included). Representative frames also get their image
JOD and ColorVideoVDP's heat map (:func:`frame_map`).

:class:`VisibilityBudget` serves the optimiser: the image JOD of a protected frame at the
native size, differentiable, to keep a change under a visibility budget.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError, UsageError

DISPLAY = "standard_fhd"
FULL_SCREEN_LINES = 1080
FULL_SCREEN_FRAMES = 12  # consecutive frames measured at full screen (about 0.4 s at 30 fps)
# "Looks the same": the native video at least this, the full-screen video at least that,
# and each within FLOOR_MARGIN of its codec floor.
RULE = {"native_jod": 9.5, "full_screen_jod": 9.3, "floor_margin": 0.3}
FAIR_JOD = 9.0  # under the rule but above this: some viewers may see it
DEFAULT_FLOOR_CRF = 23.0
METRIC_NAME = "ColorVideoVDP (cvvdp 0.5.7)"


def _pycvvdp():
    import logging

    # On importing, a dependency of ColorVideoVDP asks torch for its C++ build tools, and
    # torch warns on a machine without a CUDA runtime: nothing to do with the measure.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import pycvvdp
    except ImportError as error:  # a broken install: it is a dependency of the project
        raise UsageError("ColorVideoVDP is not installed (pip install cvvdp==0.5.7 "
                         f"torchvision==0.29.1): {error}") from None
    return pycvvdp


def display_description() -> str:
    _pycvvdp()
    from pycvvdp.display_model import vvdp_display_geometry

    geometry = vvdp_display_geometry.load(DISPLAY, [])
    return (f"{DISPLAY}: a 24-inch 1920x1080 monitor, 200 cd/m2, in office light, seen from "
            f"0.6 m ({geometry.get_ppd():.1f} pixels per degree)")


def _metric(device: torch.device, heatmap: str | None = None):
    pycvvdp = _pycvvdp()
    return pycvvdp.cvvdp(display_name=DISPLAY, device=device, quiet=True, heatmap=heatmap)


def full_screen_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` of a ``width x height`` video upscaled to fill
    :data:`FULL_SCREEN_LINES` lines (the width rounded to even)."""
    scale = FULL_SCREEN_LINES / height
    return max(2, round(width * scale / 2) * 2), FULL_SCREEN_LINES


def segment_length(fps: float) -> int:
    """Frames of ColorVideoVDP's temporal filter at ``fps`` (a quarter of a second, odd):
    the shortest run of consecutive frames whose flicker it sees."""
    return int(math.ceil(0.250 * fps / 2) * 2) + 1


def _as_tensor(frame) -> torch.Tensor:
    """``(1, 3, H, W)`` float in [0, 1] from an ``(H, W, 3)`` uint8 array or such a tensor."""
    if isinstance(frame, np.ndarray):
        frame = torch.from_numpy(np.ascontiguousarray(frame))
    if frame.dim() == 3:
        frame = frame.permute(2, 0, 1).unsqueeze(0)
    if frame.dtype == torch.uint8:
        return frame.float() / 255
    return frame.float()


def upscale(frame: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] upscaled bicubically to ``size`` ``(width, height)`` and
    put back on the 8-bit grid, as a player scales a video to full screen."""
    width, height = size
    scaled = F.interpolate(frame, size=(height, width), mode="bicubic", align_corners=False)
    return torch.round(scaled.clamp(0, 1) * 255) / 255


class _PushedFrames:
    """A ColorVideoVDP video source that holds the one frame pair pushed last (the metric
    reads frames in order, one at a time, with its default replicate padding)."""

    def __init__(self, base, width: int, height: int, fps: float):
        self._base = base
        self.size = (height, width, 1 << 30)
        self.fps = fps
        self.test = self.reference = None

    def get_video_size(self):
        return self.size

    def get_frames_per_second(self):
        return self.fps

    def get_batch_size(self):
        return 1

    def get_test_frame(self, frame, device, colorspace):
        return self._base.apply_dm_and_color_transform(self.test.to(device), colorspace)

    def get_reference_frame(self, frame, device, colorspace):
        return self._base.apply_dm_and_color_transform(self.reference.to(device), colorspace)


class VideoJod:
    """ColorVideoVDP on a video fed one frame pair at a time (bounded memory, whatever the
    length): :meth:`add` each pair in order, :meth:`start_segment` before a run of frames
    that does not follow the previous one, then :meth:`jod` and :meth:`per_frame`.

    Args:
        width, height: the frames' size.
        fps: their rate (the temporal channels depend on it).
        device: where the metric runs.
        size: ``(width, height)`` to upscale both videos to before measuring (full
            screen); ``None``: the native size.
    """

    def __init__(self, width: int, height: int, fps: float, device: torch.device,
                 size: tuple[int, int] | None = None):
        pycvvdp = _pycvvdp()
        from pycvvdp.cvvdp_metric import cvvdp_frame_buffers
        from pycvvdp.lpyr_dec import weber_contrast_pyr

        if not (fps and math.isfinite(fps) and fps > 0):
            fps = 30.0
        self.device = torch.device(device)
        self.metric = _metric(self.device)
        self.size = size
        out_width, out_height = size if size is not None else (width, height)
        self.metric.F, _ = self.metric.get_temporal_filters(fps)
        self.metric.filter_len = torch.numel(self.metric.F[0])
        self.metric.lpyr = weber_contrast_pyr(out_width, out_height, self.metric.pix_per_deg,
                                              self.device, contrast=self.metric.contrast)
        from pycvvdp.video_source import video_source_array

        base = video_source_array(torch.zeros(1, 3, 1, 2, 2), torch.zeros(1, 3, 1, 2, 2),
                                          0, display_photometry=self.metric.display_photometry)
        self._source = _PushedFrames(base, out_width, out_height, fps)
        self._new_buffers = cvvdp_frame_buffers
        self._buffers = cvvdp_frame_buffers()
        self._position = 0  # frames in the current segment
        self._quality: list[torch.Tensor] = []  # (1, 4, 1, bands) per frame
        self.seconds = 0.0

    def start_segment(self) -> None:
        self._buffers = self._new_buffers()
        self._position = 0

    @torch.no_grad()
    def add(self, original, protected) -> None:
        """One frame pair: ``(H, W, 3)`` uint8 arrays (or ``(1, 3, H, W)`` float tensors)."""
        started = time.perf_counter()
        reference, test = _as_tensor(original), _as_tensor(protected)
        if self.size is not None:
            reference, test = upscale(reference, self.size), upscale(test, self.size)
        source = self._source
        source.reference = reference.unsqueeze(2)  # (1, 3, 1, H, W): B C F H W
        source.test = test.unsqueeze(2)
        metric = self.metric
        colorspace = "logLMS_DKLd65" if metric.contrast == "log" else "DKLd65"
        block = metric.read_block_of_frames(source, 4, self._buffers, 1, colorspace,
                                            self._position, 1)
        quality, _ = metric.process_block_of_frames(block, source.size, 2, metric.lpyr, False)
        self._quality.append(quality.detach())
        self._position += 1
        self.seconds += time.perf_counter() - started

    @property
    def frames(self) -> int:
        return len(self._quality)

    def jod(self) -> float | None:
        """The video's JOD (pooled over every frame added), ``None`` before any frame."""
        if not self._quality:
            return None
        quality = torch.cat(self._quality, dim=2)
        if quality.shape[2] == 1:  # one frame is a video too here: keep the video pooling
            quality = quality.repeat(1, 1, 2, 1)
        return float(self.metric.do_pooling_and_jods(quality))

    def per_frame(self) -> list[float]:
        """Each frame's JOD: that of a video whose every frame differed as this one does."""
        return [float(self.metric.do_pooling_and_jods(quality.repeat(1, 1, 2, 1)))
                for quality in self._quality]


@torch.no_grad()
def frame_map(original, protected, device: torch.device | str = "cpu"
              ) -> tuple[float, np.ndarray]:
    """``(image JOD, heat map)`` of one frame pair at the native size: the map is
    ColorVideoVDP's own picture of where a viewer would see the difference (an ``(H, W, 3)``
    uint8 RGB image: the original in grey, coloured where the difference shows)."""
    metric = _metric(torch.device(device), heatmap="threshold")
    reference, test = _as_tensor(original), _as_tensor(protected)
    jod, stats = metric.predict(test, reference, dim_order="BCHW")
    heatmap = stats["heatmap"][0, :, 0].float().clamp(0, 1)  # (3, H, W)
    picture = (heatmap.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return float(jod), picture


def image_jod(original, protected, device: torch.device | str = "cpu") -> float:
    """JOD of one frame pair as a still image at the native size."""
    metric = _metric(torch.device(device))
    with torch.no_grad():
        jod, _ = metric.predict(_as_tensor(protected), _as_tensor(original), dim_order="BCHW")
    return float(jod)


class VisibilityBudget:
    """The optimiser's visibility budget: how far a frame's change may be scaled and still
    leave the frame's JOD (a still image at its native size, :data:`DISPLAY`) at or above
    ``target``.

    :meth:`fit` finds the largest gain in ``(0, 1]`` on the bounded change that keeps the
    JOD at the target, by bisection (``iterations`` evaluations of ColorVideoVDP past the
    first, about 0.1 s each on a 640x360 frame on 2 CPU cores).
    """

    def __init__(self, target: float, device: torch.device | str = "cpu", iterations: int = 6):
        if not (math.isfinite(target) and 0 < target < 10):
            raise ValueError(f"the JOD budget must be between 0 and 10, got {target}")
        self.target = target
        self.iterations = iterations
        self.metric = _metric(torch.device(device))
        self.evaluations = 0
        self.seconds = 0.0

    @torch.no_grad()
    def jod(self, original: torch.Tensor, protected: torch.Tensor) -> float:
        """JOD of ``protected`` against ``original`` (``(1, 3, H, W)`` in [0, 1])."""
        started = time.perf_counter()
        value, _ = self.metric.predict(protected.float(), original.float(), dim_order="BCHW")
        self.evaluations += 1
        self.seconds += time.perf_counter() - started
        return float(value)

    def fit(self, original: torch.Tensor, render: Callable[[float], torch.Tensor]
            ) -> tuple[float, float]:
        """``(gain, jod)``: the largest gain (to ``1 / 2^iterations``) at which
        ``render(gain)``, the protected frame, keeps the budget, and its JOD."""
        jod = self.jod(original, render(1.0))
        if jod >= self.target:
            return 1.0, jod
        low, high, best = 0.0, 1.0, (0.0, 10.0)
        for _ in range(self.iterations):
            middle = (low + high) / 2
            value = self.jod(original, render(middle))
            if value >= self.target:
                low, best = middle, (middle, value)
            else:
                high = middle
        return best


# ---------------------------------------------------------------------------------------
# The codec floor


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
    from .api import protect
    from .media.sinks import EncodeOptions

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
    from .media.sources import open_source

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
    from .media.sources import open_source

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


__all__ = ["VisibilityBudget", "DISPLAY", "FULL_SCREEN_LINES", "RULE", "VideoJod", "VisibilityOptions", "measure",
           "verdict", "frame_map", "image_jod", "floor_settings", "FloorSettings",
           "full_screen_size", "segment_length", "upscale"]
