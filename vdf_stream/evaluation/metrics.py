"""The project's metrics, each defined once, used by ``vdf-stream eval``, the benchmarks and
the tests.

Every function is pure and batched: it takes tensors for ``B`` frames and returns a ``(B,)``
tensor with one value per frame (inputs are never modified). ``NaN`` marks a frame where
the metric is undefined, typically because the original frame shows no face; the summaries
skip those frames and say how many they skipped.

Fidelity (how visible the perturbation is), between an original and a protected frame:

* :func:`psnr`, :func:`ssim`, :func:`max_abs_difference`, :func:`temporal_flicker`.

Efficacy (how much the face preprocessing of a talking-face generator is misled), comparing
what the face pipeline reads from the protected frame with what it reads from the original:

* :func:`landmark_nme`, :func:`pose_error_degrees`, :func:`parse_flip`,
  :func:`detection_loss`, :func:`presence`.

:func:`summarize` turns per-frame values into median, mean and the share of frames beyond
the thresholds of :data:`METRICS`.

Frames are ``(B, 3, H, W)`` RGB, either float in ``[0, 1]`` or uint8 in ``[0, 255]``;
pixel differences are expressed in 8-bit levels (``0..255``) whichever type comes in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..media import pixels
from ..models.mesh import OUTER_EYE_CORNERS  # normalises the landmark error

LEVELS = 255.0

# SSIM as defined by Wang, Bovik, Sheikh and Simoncelli (2004) and their reference code.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# A frame whose content barely moves would make the flicker ratio explode: its denominator
# is never taken below half a level.
FLICKER_FLOOR_LEVELS = 0.5


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is read: its unit, the thresholds its summary counts, their direction.

    ``below`` true means a frame counts when its value is *below* a threshold (PSNR, SSIM,
    presence: lower is worse for fidelity or better for the defense); otherwise above.
    These thresholds only count frames for the summaries; when a face reading counts as
    broken is decided in :mod:`vdf_stream.evaluation.criteria`.
    """

    name: str
    unit: str
    thresholds: tuple[float, ...]
    below: bool
    description: str


METRICS: dict[str, MetricInfo] = {info.name: info for info in (
    MetricInfo("psnr", "dB", (35.0, 30.0), True,
               "peak signal-to-noise ratio of the RGB frame, infinite for identical frames"),
    MetricInfo("ssim", "", (0.98, 0.95), True,
               "structural similarity of the luma (Gaussian window 11, sigma 1.5)"),
    MetricInfo("max_abs_difference", "levels", (4.0, 8.0), False,
               "largest absolute difference of any pixel and channel, in 8-bit levels"),
    MetricInfo("temporal_flicker", "ratio", (1.0,), False,
               "frame-to-frame change of the perturbation over that of the content"),
    MetricInfo("landmark_nme", "eye distances", (0.05, 0.10), False,
               "mean landmark distance over the original's outer-eye-corner distance"),
    MetricInfo("pose_error", "degrees", (5.0, 10.0), False,
               "geodesic angle between the fitted head rotations"),
    MetricInfo("parse_flip", "share", (0.25, 0.5), False,
               "share of the original's face/head pixels no longer labelled so"),
    MetricInfo("detection_loss", "share", (), False,
               "1 when the original has a face and the compared frame has none, else 0; "
               "its mean is the share of frames lost"),
    MetricInfo("presence", "probability", (0.5,), True,
               "face-presence probability of the face mesh on the compared frame"),
)}

FIDELITY_METRICS = ("psnr", "ssim", "max_abs_difference", "temporal_flicker")
EFFICACY_METRICS = ("landmark_nme", "pose_error", "parse_flip", "detection_loss", "presence")


# ---------------------------------------------------------------------------------------
# Fidelity


def _check_pair(first: torch.Tensor, second: torch.Tensor, what: str = "frames") -> None:
    if first.dim() != 4 or first.shape[1] != 3:
        raise ValueError(f"{what} must be RGB (B, 3, H, W), got {tuple(first.shape)}")
    if first.shape != second.shape:
        raise ValueError(f"{what} must have the same shape, got {tuple(first.shape)} and "
                         f"{tuple(second.shape)}")
    for frames in (first, second):
        if not (frames.is_floating_point() or frames.dtype == torch.uint8):
            raise ValueError(f"{what} must be float in [0, 1] or uint8, got {frames.dtype}")


def to_levels(frames: torch.Tensor) -> torch.Tensor:
    """Frames as float32 in 8-bit levels: uint8 as they are, floats in [0, 1] times 255."""
    if frames.dtype == torch.uint8:
        return frames.to(torch.float32)
    return frames.to(torch.float32) * LEVELS


def psnr(original: torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per frame, in dB.

    ``10 log10(255^2 / MSE)`` with the mean squared error taken over every pixel and all
    three RGB channels, in 8-bit levels. A constant offset of ``k`` levels gives
    ``20 log10(255 / k)``; identical frames give ``+inf``.

    Args:
        original, protected: RGB frames, float in [0, 1] or uint8.

    Returns:
        ``(B,)`` float32, in ``(0, +inf]``.

    Shape:
        - original, protected: :math:`(B, 3, H, W)`
    """
    _check_pair(original, protected)
    difference = to_levels(protected) - to_levels(original)
    error = difference.square().flatten(1).mean(dim=1)
    return 10.0 * torch.log10(LEVELS * LEVELS / error)  # error 0 -> +inf


def luma(frames: torch.Tensor) -> torch.Tensor:
    """BT.601 luma (:func:`vdf_stream.media.pixels.luma`, the grey image SSIM is usually
    computed on) in levels, ``(B, 3, H, W) -> (B, 1, H, W)``."""
    return pixels.luma(to_levels(frames))


def _gaussian_taps() -> list[float]:
    positions = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    line = torch.exp(-positions.square() / (2 * SSIM_SIGMA**2))
    return (line / line.sum()).tolist()


def _valid_gaussian(images: torch.Tensor) -> torch.Tensor:
    """The 11x11 Gaussian window over the valid region, as two 1-D passes of shifted views
    (faster than a 2-D convolution on the CPU)."""
    taps = _gaussian_taps()
    height, width = images.shape[-2:]
    out_height, out_width = height - SSIM_WINDOW + 1, width - SSIM_WINDOW + 1
    rows = images.narrow(-1, 0, out_width) * taps[0]
    for offset in range(1, SSIM_WINDOW):
        rows.add_(images.narrow(-1, offset, out_width), alpha=taps[offset])
    result = rows.narrow(-2, 0, out_height) * taps[0]
    for offset in range(1, SSIM_WINDOW):
        result.add_(rows.narrow(-2, offset, out_height), alpha=taps[offset])
    return result


def ssim(original: torch.Tensor, protected: torch.Tensor, channels: str = "luma") -> torch.Tensor:
    """Structural similarity per frame (Wang et al. 2004), mean of the SSIM map.

    Local statistics are taken under an 11x11 Gaussian window of sigma 1.5 (normalised to
    sum 1), over the *valid* region only (no padding: the map is ``(H - 10) x (W - 10)``),
    with ``C1 = (0.01 * 255)^2`` and ``C2 = (0.03 * 255)^2`` on values in 8-bit levels,
    exactly as the authors' reference code.

    Args:
        original, protected: RGB frames, float in [0, 1] or uint8; at least 11x11.
        channels: ``"luma"`` (default) computes it on the BT.601 luma; ``"rgb"`` on each
            RGB channel separately and averages the three.

    Returns:
        ``(B,)`` float32 in ``[-1, 1]``; 1 for identical frames.

    Shape:
        - original, protected: :math:`(B, 3, H, W)`
    """
    _check_pair(original, protected)
    height, width = original.shape[-2:]
    if height < SSIM_WINDOW or width < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, "
                         f"got {width}x{height}")
    if channels == "luma":
        first, second = luma(original), luma(protected)
    elif channels == "rgb":
        first = to_levels(original).flatten(0, 1).unsqueeze(1)
        second = to_levels(protected).flatten(0, 1).unsqueeze(1)
    else:
        raise ValueError(f"channels must be 'luma' or 'rgb', got {channels!r}")
    # The variances are differences of nearly equal numbers (E[x^2] - E[x]^2): both images
    # are shifted by the first one's mean level first (the same shift for both, which
    # leaves variances and covariance unchanged), so float32 keeps them to ~1e-3 level^2.
    shift = first.mean(dim=(1, 2, 3), keepdim=True)
    first, second = first - shift, second - shift
    c1 = (SSIM_K1 * LEVELS) ** 2
    c2 = (SSIM_K2 * LEVELS) ** 2
    stacked = torch.stack([first, second, first * first, second * second, first * second])
    moments = _valid_gaussian(stacked)  # (5, B', 1, H - 10, W - 10)
    centred_a, centred_b, square_a, square_b, product = moments.unbind(0)
    variance_a = square_a - centred_a.square()
    variance_b = square_b - centred_b.square()
    covariance = product - centred_a * centred_b
    mean_a, mean_b = centred_a + shift, centred_b + shift
    numerator = (2 * mean_a * mean_b + c1) * (2 * covariance + c2)
    denominator = (mean_a.square() + mean_b.square() + c1) * (variance_a + variance_b + c2)
    values = (numerator / denominator).flatten(1).mean(dim=1)
    if channels == "rgb":
        values = values.view(-1, 3).mean(dim=1)
    return values


def max_abs_difference(original: torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    """The largest ``|protected - original|`` over every pixel and channel, in 8-bit levels.

    Args:
        original, protected: RGB frames, float in [0, 1] or uint8.

    Returns:
        ``(B,)`` float32 in ``[0, 255]``; a perturbation of L-inf budget ``eps`` (in [0, 1])
        gives at most ``255 * eps`` before any encoding.

    Shape:
        - original, protected: :math:`(B, 3, H, W)`
    """
    _check_pair(original, protected)
    return (to_levels(protected) - to_levels(original)).abs().flatten(1).amax(dim=1)


def temporal_flicker(original: torch.Tensor, protected: torch.Tensor,
                     previous_original: torch.Tensor, previous_protected: torch.Tensor
                     ) -> torch.Tensor:
    """How much the perturbation changes from one frame to the next, relative to how much
    the content itself changes.

    With the perturbation ``d_t = protected_t - original_t`` (in levels)::

        flicker_t = mean |d_t - d_(t-1)| / max(mean |original_t - original_(t-1)|, 0.5)

    means over every pixel and channel. 0: the perturbation is static; below 1: it changes
    less than the picture does (it is carried by the motion); above 1: it changes more than
    the content does, which viewers see as shimmering, most visibly on a still subject.
    Independent sign noise of ``e`` levels has ``mean |d_t - d_(t-1)| = e``. The
    denominator is floored at :data:`FLICKER_FLOOR_LEVELS` (0.5 level) so that a frozen
    picture gives a large but finite ratio.

    Args:
        original, protected: frame ``t`` of each video.
        previous_original, previous_protected: frame ``t - 1`` of each (the frame just
            before in the stream, whatever frames are being evaluated).

    Returns:
        ``(B,)`` float32, ``>= 0``.

    Shape:
        - all four: :math:`(B, 3, H, W)`, float in [0, 1] or uint8.
    """
    _check_pair(original, protected)
    _check_pair(previous_original, previous_protected, "previous frames")
    _check_pair(original, previous_original, "frames t and t-1")
    perturbation = to_levels(protected) - to_levels(original)
    previous = to_levels(previous_protected) - to_levels(previous_original)
    change = (perturbation - previous).abs().flatten(1).mean(dim=1)
    content = (to_levels(original) - to_levels(previous_original)).abs().flatten(1).mean(dim=1)
    return change / content.clamp_min(FLICKER_FLOOR_LEVELS)


# ---------------------------------------------------------------------------------------
# Efficacy


def landmark_nme(landmarks: torch.Tensor, reference: torch.Tensor,
                 eye_corners: tuple[int, int] = OUTER_EYE_CORNERS) -> torch.Tensor:
    """Normalised mean error of landmarks read on the protected frame against those read on
    the original.

    ``mean_i |landmarks_i - reference_i| / |reference[eye_corners[0]] - reference[eye_corners[1]]|``
    on the image-plane coordinates ``(x, y)`` only (a third column, the mesh's depth
    estimate, is ignored). With the 468-point mesh the normaliser is the original's
    outer-eye-corner distance (points 33 and 263), about 2.5x smaller than the face width:
    0.05 is a few pixels on a portrait face, 0.10 a visible misalignment.

    Args:
        landmarks: points read on the protected (or degraded) frame, in pixels.
        reference: points read on the original frame, same layout.
        eye_corners: indices of the two points whose distance normalises.

    Returns:
        ``(B,)`` float32, ``>= 0``; ``NaN`` where the reference's eye corners coincide.

    Shape:
        - landmarks, reference: :math:`(B, N, 2)` or :math:`(B, N, 3)`
    """
    if landmarks.dim() != 3 or landmarks.shape[-1] not in (2, 3):
        raise ValueError(f"landmarks must be (B, N, 2|3), got {tuple(landmarks.shape)}")
    if landmarks.shape != reference.shape:
        raise ValueError(f"landmarks and reference must have the same shape, got "
                         f"{tuple(landmarks.shape)} and {tuple(reference.shape)}")
    first, second = eye_corners
    if max(first, second) >= landmarks.shape[1]:
        raise ValueError(f"eye corners {eye_corners} are not among {landmarks.shape[1]} points")
    points = landmarks[..., :2].float()
    truth = reference[..., :2].float()
    error = (points - truth).norm(dim=-1).mean(dim=-1)
    normaliser = (truth[:, first] - truth[:, second]).norm(dim=-1)
    return torch.where(normaliser > 0, error / normaliser, torch.full_like(error, math.nan))


def pose_error_degrees(rotation: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Geodesic angle, in degrees, between head rotations fitted on the protected frame and
    on the original: the angle of ``reference^T @ rotation``
    (:func:`vdf_stream.models.pose.geodesic_angle_degrees`).

    Returns:
        ``(B,)`` in ``[0, 180]``.

    Shape:
        - rotation, reference: :math:`(B, 3, 3)` proper rotations.
    """
    from ..models.pose import geodesic_angle_degrees

    if rotation.shape != reference.shape or rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must both be (B, 3, 3), got {tuple(rotation.shape)} and "
                         f"{tuple(reference.shape)}")
    return geodesic_angle_degrees(reference.float(), rotation.float())


def parse_flip(original_mask: torch.Tensor, protected_mask: torch.Tensor) -> torch.Tensor:
    """Share of the original's face/head pixels that the parser no longer labels so.

    ``|original & ~protected| / |original|`` per frame. Pixels the parser *adds* to the
    face on the protected frame do not count: the metric asks how much of the real face a
    generator would lose.

    Args:
        original_mask: bool (or 0/1) face/head mask read on the original frame.
        protected_mask: the same read on the protected frame.

    Returns:
        ``(B,)`` float32 in ``[0, 1]``; ``NaN`` where the original mask is empty.

    Shape:
        - original_mask, protected_mask: :math:`(B, H, W)`
    """
    if original_mask.dim() != 3 or original_mask.shape != protected_mask.shape:
        raise ValueError(f"masks must both be (B, H, W), got {tuple(original_mask.shape)} and "
                         f"{tuple(protected_mask.shape)}")
    original = original_mask.bool().flatten(1)
    protected = protected_mask.bool().flatten(1)
    area = original.sum(dim=1).float()
    lost = (original & ~protected).sum(dim=1).float()
    return torch.where(area > 0, lost / area.clamp_min(1), torch.full_like(area, math.nan))


def detection_loss(found_original: torch.Tensor, found_protected: torch.Tensor) -> torch.Tensor:
    """Per frame: 1 when the original has a face and the protected frame none, 0 when both
    have one, ``NaN`` when the original has none (the frame does not count). The mean over
    frames is the *share of frames lost*.

    Shape:
        - found_original, found_protected: :math:`(B,)` bool.
    """
    if found_original.shape != found_protected.shape or found_original.dim() != 1:
        raise ValueError(f"found flags must both be (B,), got {tuple(found_original.shape)} and "
                         f"{tuple(found_protected.shape)}")
    original = found_original.bool()
    lost = (original & ~found_protected.bool()).float()
    return torch.where(original, lost, torch.full_like(lost, math.nan))


def presence(logits: torch.Tensor) -> torch.Tensor:
    """Face-presence probability of the face-mesh network: ``sigmoid(logit)``, in [0, 1].

    MediaPipe drops a tracked face when it falls below 0.5.

    Shape:
        - logits: :math:`(B,)`; output :math:`(B,)`.
    """
    return torch.sigmoid(logits.float())


# ---------------------------------------------------------------------------------------
# Summaries


def _as_array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).numpy().ravel()
    return np.array([math.nan if value is None else float(value) for value in values],
                    dtype=np.float64)


def threshold_key(threshold: float, below: bool = False) -> str:
    """The summary key of a threshold: ``share_above_0.05``, ``share_below_30``."""
    return f"share_{'below' if below else 'above'}_{threshold:g}"


def summarize(values: torch.Tensor | Iterable[float | None], thresholds: Sequence[float] = (),
              below: bool = False) -> dict:
    """Median, mean, extremes and the share of frames beyond each threshold.

    ``NaN`` and ``None`` values (frames where the metric is undefined, e.g. no face in the
    original) are left out and counted in ``missing``; ``+inf`` (identical frames' PSNR)
    is kept.

    Args:
        values: one value per frame.
        thresholds: a share is given for each; a frame counts when its value is strictly
            above the threshold (strictly below when ``below``).
        below: direction of the thresholds.

    Returns:
        ``{"count", "missing", "median", "mean", "min", "max", "share_above_<t>"...}``;
        every statistic is ``None`` when no frame counts.
    """
    array = _as_array(values)
    finite_or_infinite = array[~np.isnan(array)]
    count = int(finite_or_infinite.size)
    summary: dict = {"count": count, "missing": int(array.size - count)}
    if count == 0:
        summary.update(median=None, mean=None, min=None, max=None)
        for threshold in thresholds:
            summary[threshold_key(threshold, below)] = None
        return summary
    with np.errstate(invalid="ignore"):
        summary.update(
            median=float(np.median(finite_or_infinite)),
            mean=float(np.mean(finite_or_infinite)),
            min=float(np.min(finite_or_infinite)),
            max=float(np.max(finite_or_infinite)),
        )
    for threshold in thresholds:
        beyond = finite_or_infinite < threshold if below else finite_or_infinite > threshold
        summary[threshold_key(threshold, below)] = float(np.mean(beyond))
    return summary


def summarize_metric(name: str, values) -> dict:
    """:func:`summarize` with the thresholds and direction :data:`METRICS` gives ``name``."""
    info = METRICS[name]
    return summarize(values, info.thresholds, info.below)
