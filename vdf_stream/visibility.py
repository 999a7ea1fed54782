"""How visible a change is to people: ColorVideoVDP, a full-reference visual difference
predictor (Mantiuk et al., PyPI ``cvvdp``), fed frame pairs.

ColorVideoVDP models the display (its size, resolution, peak luminance, room light and the
viewing distance) and the viewer's vision (contrast sensitivity over spatial and temporal
frequency, contrast masking, colour) and predicts JOD, just-objectionable differences: 10 =
no difference, one JOD lower = 75% of viewers pick the original in a side-by-side test. Its
temporal channels see flicker, which per-frame metrics (PSNR, SSIM) do not. Always on
display model :data:`DISPLAY`.

- :class:`VideoJod`: the JOD of a video pair streamed one frame pair at a time, at its own
  size or upscaled to :data:`FULL_SCREEN_LINES` lines (:func:`full_screen_size`), with the
  JOD of each frame;
- :func:`image_jod`, :func:`frame_map`: a still image's JOD, and ColorVideoVDP's heat map;
- :class:`VisibilityBudget` serves the optimiser: the scale of a change that keeps a
  protected frame at a given image JOD.

How a published video is measured against its codec floor, and the rule that decides
whether it looks the same, are :mod:`vdf_stream.evaluation.visibility`'s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UsageError

DISPLAY = "standard_fhd"
FULL_SCREEN_LINES = 1080
FULL_SCREEN_FRAMES = 12  # consecutive frames measured at full screen (about 0.4 s at 30 fps)
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
