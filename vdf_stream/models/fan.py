"""FAN (2DFAN-4, 68 landmarks): the landmark reader of the talking-face pipelines, rebuilt in
torch so an optimiser can attack it and the evaluation can read what those pipelines see.

ER-NeRF and GeneFace run ``face_alignment.FaceAlignment(LandmarksType.TWO_D,
flip_input=False)`` and ``get_landmarks`` on every frame: S3FD finds the face, FAN reads 68
points in a 256x256 crop around its box. This module does each step as the package
(release 1.4.1) does it, differentiably from the pixels for a fixed box:

- :func:`box_geometry`: the crop's centre is the box centre moved up by 0.12 of the box
  height, its ``scale`` is ``(width + height) / 195`` (S3FD's ``reference_scale``) and its
  side ``200 x scale`` pixels.
- :func:`crop`: the package cuts the integer square ``[ul, br)`` its ``transform`` gives for
  crop points 1 and 256, black where it leaves the frame, and resizes it to 256x256 with
  ``cv2.resize(INTER_LINEAR)`` (which does not anti-alias when it shrinks). The input is
  that crop, RGB divided by 255, nothing else.
- :class:`FAN`: four stacked hourglasses; the package's TorchScript file returns the last
  stack's 68 heatmaps of 64x64.
- :func:`decode`: the package's ``get_preds_fromhm``: each heatmap's arg-max, a quarter
  pixel towards its larger neighbour, half a pixel back, mapped to the frame through the
  inverse of the crop transform at 64x64, and truncated to integers as the package does.
  :func:`soft_decode` is its differentiable counterpart (the expected position under a
  softmax of the heatmap), without the quarter-pixel step or the truncation.

Network (:class:`FAN`, names as in the package's Python FAN of releases 1.0 to 1.2,
``models.py`` then ``models/fan.py``, whose modules the TorchScript file of 1.3 and later
was traced from, so the real weights load ``strict=True``):
``conv1`` (7x7 stride 2, 3 -> 64, with bias), ``bn1``, then the residual blocks ``conv2``
(64 -> 128), a 2x2 average pool, ``conv3`` (128 -> 128), ``conv4`` (128 -> 256); then four
stacks ``i``: the hourglass ``m{i}`` (depth 4, 256 features), ``top_m_{i}``, the 1x1
``conv_last{i}`` with ``bn_end{i}`` and a ReLU, the 1x1 heatmap head ``l{i}`` (256 -> 68),
and between stacks the 1x1 ``bl{i}`` (features) and ``al{i}`` (heatmaps back to 256
channels), both added to the stack's input. A residual block (:class:`ConvBlock`) is
pre-activation: BN-ReLU-3x3 conv three times (``out/2``, ``out/4``, ``out/4`` channels),
the three outputs concatenated and added to the input (through ``downsample``, BN-ReLU-1x1
conv, when the width changes). An hourglass level ``n`` (:class:`HourGlass`) adds
``b1_n(x)`` to the nearest 2x upsampling of ``b3_n(inner(b2_n(avg_pool(x))))``, where
``inner`` is level ``n - 1`` or, at level 1, ``b2_plus_1``.

Weights: on no package registry. ``face-alignment`` downloads them on first use into
``torch.hub.get_dir()/checkpoints/`` (a TorchScript archive since 1.3, a plain state dict
in 1.0.1 to 1.2; both are read, as is a ``{"state_dict": {"module.<name>": ...}}`` training
checkpoint);
:func:`weights_path` finds that file, or a copy the user added with :func:`add_fan`
(``vdf-stream models add fan PATH``), which is checked first. TorchScript archives are read
without running code from them (:func:`weights.read_torchscript_state`). Nothing is ever
downloaded here.

The package itself is not needed (the tests compare this module with it).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AssetError
from . import weights

POINT_COUNT = 68
# 68-point (iBUG 300-W) indices of the outer eye corners: the NME normaliser of the metrics.
RIGHT_EYE_OUTER = 36  # the person's right eye, image left
LEFT_EYE_OUTER = 45

INPUT_SIZE = 256
HEATMAP_SIZE = 64
STACKS = 4
HOURGLASS_DEPTH = 4
FEATURES = 256
REFERENCE_SCALE = 195.0  # S3FD's reference_scale: scale = (box width + height) / 195
CENTRE_SHIFT = 0.12  # the crop centre sits this share of the box height above the box's
SCALE_SIDE = 200.0  # the crop side is 200 x scale frame pixels
SHARPNESS = 20.0  # soft_decode's default: softmax of 20 x the heatmap over its span

# The names face-alignment gives its FAN download (the basename of its URL), in the order
# weights_path tries them: 1.3 to 1.4.1's default TorchScript file, the files 1.4 picks for
# torch 1.6 and 1.5, and the state dict of releases 1.0.1 to 1.2.
PACKAGE_FILES = (
    "2DFAN4-cd938726ad.zip",
    "2DFAN4_1.6-c827573f02.zip",
    "2DFAN4_1.5-a60332318a.zip",
    "2DFAN4-11f355bf06.pth.tar",
)
NETWORK = "face-alignment's FAN landmark network (2DFAN-4, 68 points)"
MISSING_MESSAGE = (
    "FAN's weights (2DFAN-4) are not here: install face-alignment (pip install "
    "face-alignment) and run it once online, which downloads them to its own cache, or add "
    "your copy with `vdf-stream models add fan 2DFAN4-cd938726ad.zip`")


class FanWeightsMissing(AssetError):
    """Neither an added copy nor face-alignment's download of FAN's weights is here."""


# -------------------------------------------------------------------------------------
# Network


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)


class ConvBlock(nn.Module):
    """FAN's pre-activation residual block: three BN-ReLU-3x3 convolutions giving ``out/2``,
    ``out/4`` and ``out/4`` channels, concatenated, plus the input (through
    ``downsample`` when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        half, quarter = out_channels // 2, out_channels // 4
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = _conv3x3(in_channels, half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = _conv3x3(half, quarter)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = _conv3x3(quarter, quarter)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.BatchNorm2d(in_channels),
                nn.ReLU(),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv1(F.relu(self.bn1(x)))
        second = self.conv2(F.relu(self.bn2(first)))
        third = self.conv3(F.relu(self.bn3(second)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat((first, second, third), dim=1) + shortcut


class HourGlass(nn.Module):
    """One hourglass: ``depth`` levels of 2x average pooling down and nearest 2x upsampling
    up, a residual block on each branch (modules ``b1_n``, ``b2_n``, ``b3_n`` per level
    ``n``, ``b2_plus_1`` at the bottom)."""

    def __init__(self, depth: int = HOURGLASS_DEPTH, features: int = FEATURES):
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):  # registration order of the package
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
        self.add_module("b2_plus_1", ConvBlock(features, features))
        for level in range(1, depth + 1):
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        upper = self.get_submodule(f"b1_{level}")(x)
        lower = self.get_submodule(f"b2_{level}")(F.avg_pool2d(x, 2, stride=2))
        if level > 1:
            lower = self._level(level - 1, lower)
        else:
            lower = self.get_submodule("b2_plus_1")(lower)
        lower = self.get_submodule(f"b3_{level}")(lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """2DFAN-4. Input ``(B, 3, 256, 256)`` RGB in [0, 1] (the package's crop divided by
    255); output the last stack's ``(B, 68, 64, 64)`` heatmaps, as the package's TorchScript
    file returns them.

    Call :meth:`eval` before use (batch-norm statistics); :func:`load_fan` does.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, FEATURES)
        for stack in range(STACKS):
            self.add_module(f"m{stack}", HourGlass())
            self.add_module(f"top_m_{stack}", ConvBlock(FEATURES, FEATURES))
            self.add_module(f"conv_last{stack}", nn.Conv2d(FEATURES, FEATURES, 1))
            self.add_module(f"bn_end{stack}", nn.BatchNorm2d(FEATURES))
            self.add_module(f"l{stack}", nn.Conv2d(FEATURES, POINT_COUNT, 1))
            if stack < STACKS - 1:
                self.add_module(f"bl{stack}", nn.Conv2d(FEATURES, FEATURES, 1))
                self.add_module(f"al{stack}", nn.Conv2d(POINT_COUNT, FEATURES, 1))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.dim() != 4 or crops.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"crops must be (B, 3, {INPUT_SIZE}, {INPUT_SIZE}) RGB in [0, 1], "
                             f"got {tuple(crops.shape)}")
        x = F.relu(self.bn1(self.conv1(crops)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        previous = self.conv4(self.conv3(x))
        for stack in range(STACKS):
            features = self.get_submodule(f"top_m_{stack}")(self.get_submodule(f"m{stack}")(previous))
            features = F.relu(self.get_submodule(f"bn_end{stack}")(
                self.get_submodule(f"conv_last{stack}")(features)))
            heatmaps = self.get_submodule(f"l{stack}")(features)
            if stack < STACKS - 1:
                previous = (previous + self.get_submodule(f"bl{stack}")(features)
                            + self.get_submodule(f"al{stack}")(heatmaps))
        return heatmaps


# -------------------------------------------------------------------------------------
# Crop and decoding, as face-alignment 1.4.1 does them


def box_geometry(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The package's crop ``(centre (B, 2), scale (B,))``, float64 on the CPU, for ``(B, 4)``
    detector boxes ``(x1, y1, x2, y2)``.

    In float64 and in the package's order of operations: its S3FD gives float64 boxes (and
    with torch 2 it cannot crop from float32 ones), and the crop's integer corners depend
    on the last bit. Boxes of other dtypes are widened exactly first.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (B, 4), got {tuple(boxes.shape)}")
    x1, y1, x2, y2 = boxes.detach().to(device="cpu", dtype=torch.float64).unbind(-1)
    height = y2 - y1
    centre = torch.stack([x2 - (x2 - x1) / 2.0, y2 - height / 2.0 - height * CENTRE_SHIFT], -1)
    scale = (x2 - x1 + y2 - y1) / REFERENCE_SCALE
    return centre, scale


def crop_corners(centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(B, 2, 2)`` int64: per crop, the frame pixels ``ul`` and ``br`` (each ``(x, y)``) of
    the package's square ``[ul, br)``: crop points ``(1, 1)`` and ``(256, 256)`` through the
    inverse of its float32 transform, truncated towards zero.

    The package builds a float32 3x3 matrix (entries computed in the centre's dtype),
    inverts it and multiplies; so does this, one crop at a time on the CPU, so the integers
    are the package's own.
    """
    corners = torch.zeros(centre.shape[0], 2, 2, dtype=torch.int64)
    centre = centre.detach().cpu()
    scale = scale.detach().cpu().to(centre.dtype)
    for index in range(centre.shape[0]):
        side = SCALE_SIDE * scale[index]
        matrix = torch.eye(3)
        matrix[0, 0] = matrix[1, 1] = INPUT_SIZE / side
        matrix[0, 2] = INPUT_SIZE * (-centre[index, 0] / side + 0.5)
        matrix[1, 2] = INPUT_SIZE * (-centre[index, 1] / side + 0.5)
        inverse = torch.linalg.inv(matrix)
        for corner, point in enumerate((1.0, float(INPUT_SIZE))):
            mapped = torch.matmul(inverse, torch.tensor([point, point, 1.0]))[:2]
            corners[index, corner] = mapped.int()
    return corners


def _resize_taps(start: torch.Tensor, length: torch.Tensor, limit: int, like: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frame indices and weights of ``cv2.resize(INTER_LINEAR)`` from spans of ``length``
    pixels starting at frame pixel ``start`` (``(B,)`` each) to ``INPUT_SIZE``: output pixel
    ``d`` reads span position ``(d + 0.5) x length / 256 - 0.5`` between its two neighbours,
    clamped to the span's ends (where cv2 repeats the edge pixel). Returns ``(first index,
    second index, first weight, second weight)``, ``(B, 256)`` each, the indices clamped
    into ``[0, limit)`` and the weights of span pixels outside the frame (black in the
    package's padded square) zero."""
    steps = torch.arange(INPUT_SIZE, dtype=torch.float64)
    position = ((steps + 0.5) * (length[:, None].double() / INPUT_SIZE) - 0.5).float()
    floor = position.floor()
    fraction = position - floor
    floor = floor.long()
    last = (length - 1)[:, None]
    fraction = torch.where(floor < 0, 0.0, fraction)
    fraction = torch.where(floor >= last, 0.0, fraction)
    first = floor.clamp(min=0).minimum(last)
    second = (first + 1).minimum(last)
    first, second = first + start[:, None], second + start[:, None]
    first_weight, second_weight = (
        torch.where((index >= 0) & (index < limit), weight, 0.0).to(like)
        for index, weight in ((first, 1 - fraction), (second, fraction)))
    return (first.clamp(0, limit - 1).to(like.device), second.clamp(0, limit - 1).to(like.device),
            first_weight, second_weight)


def crop(frames: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """FAN's ``(B, 3, 256, 256)`` input from ``(B, 3, H, W)`` frames (RGB in [0, 1], any
    float dtype), as the package's ``utils.crop`` cuts and resizes it, differentiable with
    respect to the frames.

    Args:
        centre, scale: the crop of each frame (:func:`box_geometry`).
    """
    if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
        raise ValueError(f"frames must be floating-point RGB (B, 3, H, W) in [0, 1], got "
                         f"{frames.dtype} {tuple(frames.shape)}")
    if centre.shape != (frames.shape[0], 2) or scale.shape != (frames.shape[0],):
        raise ValueError(f"centre and scale must be ({frames.shape[0]}, 2) and "
                         f"({frames.shape[0]},), got {tuple(centre.shape)} and {tuple(scale.shape)}")
    corners = crop_corners(centre, scale)
    lengths = corners[:, 1] - corners[:, 0]
    if bool((lengths < 1).any()):
        raise ValueError(f"a crop scale of {float(scale.min()):g} leaves no pixel to crop")
    batch, channels, height, width = frames.shape
    top, bottom, top_weight, bottom_weight = _resize_taps(corners[:, 0, 1], lengths[:, 1],
                                                          height, frames)
    left, right, left_weight, right_weight = _resize_taps(corners[:, 0, 0], lengths[:, 0],
                                                          width, frames)

    def rows(index: torch.Tensor) -> torch.Tensor:
        return frames.gather(2, index[:, None, :, None].expand(batch, channels, INPUT_SIZE, width))

    resampled = (rows(top) * top_weight[:, None, :, None]
                 + rows(bottom) * bottom_weight[:, None, :, None])

    def columns(index: torch.Tensor) -> torch.Tensor:
        return resampled.gather(3, index[:, None, None, :].expand(batch, channels, INPUT_SIZE,
                                                                  INPUT_SIZE))

    return (columns(left) * left_weight[:, None, None, :]
            + columns(right) * right_weight[:, None, None, :])


def _heatmap_to_frame(points: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor
                      ) -> torch.Tensor:
    """Heatmap coordinates ``(B, N, 2)`` -> frame pixels: the inverse of the package's
    transform at resolution 64 (``x x side / 64 + centre - side / 2``, side ``200 x
    scale``), in ``points``' dtype."""
    side = (SCALE_SIDE * scale.to(points))[:, None, None]
    return points * (side / HEATMAP_SIZE) + centre.to(points)[:, None, :] - side / 2


def _check_heatmaps(heatmaps: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> None:
    if heatmaps.dim() != 4 or heatmaps.shape[2:] != (HEATMAP_SIZE, HEATMAP_SIZE):
        raise ValueError(f"heatmaps must be (B, N, {HEATMAP_SIZE}, {HEATMAP_SIZE}), got "
                         f"{tuple(heatmaps.shape)}")
    if centre.shape != (heatmaps.shape[0], 2) or scale.shape != (heatmaps.shape[0],):
        raise ValueError(f"centre and scale must be ({heatmaps.shape[0]}, 2) and "
                         f"({heatmaps.shape[0]},), got {tuple(centre.shape)} and {tuple(scale.shape)}")


def decode(heatmaps: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(B, N, 2)`` float32 frame pixels of ``(B, N, 64, 64)`` heatmaps, exactly as the
    package's ``get_preds_fromhm`` gives them (not differentiable).

    The arg-max (the first of equal maxima) of each heatmap (in float32, as the package
    reads it), a quarter pixel towards the larger of its two neighbours along each axis
    (only for peaks off the map's border), plus 0.5 (the package's 1-based index less its
    0.5), mapped to the frame in float64 and truncated towards zero: the package's points
    are integers.
    """
    _check_heatmaps(heatmaps, centre, scale)
    values = heatmaps.detach().float()
    batch, count = values.shape[:2]
    peak = values.flatten(2).argmax(dim=-1)
    x, y = peak % HEATMAP_SIZE, peak // HEATMAP_SIZE
    inside = (x > 0) & (x < HEATMAP_SIZE - 1) & (y > 0) & (y < HEATMAP_SIZE - 1)

    def value(dx: int, dy: int) -> torch.Tensor:
        index = ((y + dy).clamp(0, HEATMAP_SIZE - 1) * HEATMAP_SIZE
                 + (x + dx).clamp(0, HEATMAP_SIZE - 1))
        return values.flatten(2).gather(-1, index[..., None])[..., 0]

    shift = torch.stack([value(1, 0) - value(-1, 0), value(0, 1) - value(0, -1)], dim=-1)
    shift = torch.where(inside[..., None], shift.sign() * 0.25, 0.0)
    points = torch.stack([x, y], dim=-1).float() + 0.5 + shift
    frame = _heatmap_to_frame(points.double(), centre.to(values.device, torch.float64),
                              scale.to(values.device, torch.float64))
    return frame.trunc().float()


def soft_decode(heatmaps: torch.Tensor, centre: torch.Tensor, scale: torch.Tensor,
                sharpness: float = SHARPNESS) -> torch.Tensor:
    """``(B, N, 2)`` frame pixels of ``(B, N, 64, 64)`` heatmaps, differentiably: each
    point's expected heatmap position under ``softmax(sharpness x heatmap / span)`` over the
    64x64 cells (cell ``(i, j)`` at ``(j + 0.5, i + 0.5)``, as :func:`decode` places an
    unshifted peak), mapped to the frame with the same transform, not truncated.

    ``span`` is the heatmap's maximum less its minimum: the peak's height does not change
    how sharply it is read, and each cell of the background weighs ``exp(-sharpness)`` of
    the peak's cell, so at the default 20 the 4,096 cells together cannot pull the point
    towards the map's middle. A FAN-like peak (a Gaussian of 1.75 cells, the training
    targets' width) is then read within about 0.1 cell of its centre (each axis) and a
    1-cell one within 0.3 (nearer the arg-max); :func:`decode`, in quarter-cell steps and truncated, differs from
    it by at most 0.4 cell plus a frame pixel. A smaller ``sharpness`` spreads the gradient wider and lets the
    background in.

    Returns:
        float32 points (float64 for float64 heatmaps).
    """
    _check_heatmaps(heatmaps, centre, scale)
    values = heatmaps.to(torch.promote_types(heatmaps.dtype, torch.float32)).flatten(2)
    span = values.amax(dim=-1, keepdim=True) - values.amin(dim=-1, keepdim=True)
    probabilities = torch.softmax(sharpness * values / span.clamp_min(1e-12), dim=-1)
    probabilities = probabilities.unflatten(-1, (HEATMAP_SIZE, HEATMAP_SIZE))
    cells = torch.arange(HEATMAP_SIZE, device=values.device, dtype=values.dtype) + 0.5
    points = torch.stack([(probabilities.sum(dim=-2) * cells).sum(dim=-1),
                          (probabilities.sum(dim=-1) * cells).sum(dim=-1)], dim=-1)
    return _heatmap_to_frame(points, centre.to(values.device), scale.to(values.device))


class FanLandmarks(nn.Module):
    """FAN's 68 points in frame pixels for given detector boxes, as the package reads them,
    and differentiably from the pixels (for fixed boxes).

    Args:
        network: the FAN to run (:func:`load_fan` for the real weights); frames and boxes
            may be on any device and in any float dtype: the crops are cast to the
            network's.
        sharpness: :func:`soft_decode`'s.
    """

    def __init__(self, network: FAN, sharpness: float = SHARPNESS):
        super().__init__()
        self.network = network
        self.sharpness = sharpness

    def forward(self, frames: torch.Tensor, boxes: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(soft, hard)``, ``(B, 68, 2)`` each, for ``(B, 3, H, W)`` RGB frames in [0, 1]
        and ``(B, 4)`` detector boxes ``(x1, y1, x2, y2)`` in frame pixels: ``hard`` is
        :func:`decode` (the package's integer points), ``soft`` :func:`soft_decode`
        (gradients reach the frames through it), both on the frames' device, float32
        (float64 for float64 frames)."""
        if boxes.shape != (frames.shape[0], 4):
            raise ValueError(f"boxes must be ({frames.shape[0]}, 4), got {tuple(boxes.shape)}")
        centre, scale = box_geometry(boxes)
        parameter = next(self.network.parameters())
        heatmaps = self.network(crop(frames, centre, scale).to(parameter))
        dtype = torch.promote_types(frames.dtype, torch.float32)
        heatmaps = heatmaps.to(device=frames.device, dtype=dtype)
        hard = decode(heatmaps, centre, scale).to(dtype)
        return soft_decode(heatmaps, centre, scale, self.sharpness), hard


# -------------------------------------------------------------------------------------
# Weights


def expected_state_shapes() -> dict[str, tuple[int, ...]]:
    """Every state-dict entry of 2DFAN-4 and its shape (built without weights)."""
    with torch.device("meta"):
        return weights.expected_shapes(FAN())


def package_cache_files() -> list[Path]:
    """Where face-alignment keeps the FAN weights it downloads (whether or not they are
    there), in :data:`PACKAGE_FILES` order."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return [folder / name for name in PACKAGE_FILES]


def weights_path() -> Path | None:
    """The weights to load: the user's added copy, else face-alignment's download, else
    ``None``."""
    return weights.located("fan", package_cache_files())


def add_fan(path: str | os.PathLike) -> Path:
    """Verify a copy of FAN's weights (face-alignment's TorchScript ``2DFAN4-*.zip`` or the
    older state dict ``2DFAN4-11f355bf06.pth.tar``) and keep it in the cache; return the
    kept path.

    The file is read without running code from it (:func:`weights.read_checkpoint`), every
    parameter name and shape is checked, and the cleaned state dict is written atomically.

    Raises:
        AssetError: the file is missing, unreadable, or not FAN's weights.
    """
    return weights.add("fan", path, expected_state_shapes(), NETWORK)


def load_fan(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> FAN:
    """The network with the real weights (:func:`weights_path`, loaded ``strict=True``), in
    eval mode, frozen, on ``device`` in ``dtype``; one copy per file, device and dtype.

    Raises:
        FanWeightsMissing: no weights (:data:`MISSING_MESSAGE`).
        AssetError: the file does not verify.
    """
    path = weights_path()
    if path is None:
        raise FanWeightsMissing(MISSING_MESSAGE)
    return weights.load_shared(FAN, path, NETWORK, device, dtype)
