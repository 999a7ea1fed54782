"""face-api's tiny face detector (``TinyFaceDetector``), in PyTorch: face boxes from a
whole frame, with a network of another family than MTCNN's cascade or BlazeFace's SSD.

It is a Tiny-YOLO-v2 grid detector with depthwise-separable convolutions: one 13x13 grid
over the frame padded to a square, five anchor boxes a cell, each with four box offsets
and an objectness logit. Weights: ``model/tiny_face_detector_model.bin`` of the npm
package ``@vladmandic/face-api@1.7.15`` (uint8-quantised TensorFlow.js tensors described
by ``tiny_face_detector_model-weights_manifest.json``; de-quantised with
:func:`vdf_stream.models.faceapi.read_manifest_weights`).

The network, as the package's sources build it (``TinyYolov2Base.runMobilenet`` with the
tiny face detector's configuration):

- input: the frame padded with black at the bottom or right to a square, resized to
  416x416 (TensorFlow's bilinear resize without half-pixel centres: output pixel ``i``
  reads input position ``i * in / out``), the mean colour (117.001, 114.697, 97.404)
  subtracted from values in 0-255, then divided by 255;
- ``conv0``: a plain 3x3 convolution, no padding, 3 -> 16 channels, leaky ReLU (slope 0.1);
- ``conv1``-``conv5``: a depthwise 3x3 (padding 1) then a pointwise 1x1 with bias, leaky
  ReLU (16 -> 32 -> 64 -> 128 -> 256 -> 512 channels), each after a 2x2 max pool of
  stride 2 (TensorFlow's SAME: an odd row or column is pooled alone);
- a 2x2 max pool of stride 1 (SAME), then ``conv8``, a 1x1 convolution to 25 values a cell:
  for each of the 5 anchors ``(tx, ty, tw, th, objectness)``;
- a box: centre ``((col + sigmoid(tx)) / 13, (row + sigmoid(ty)) / 13)``, size
  ``(exp(tw) * anchor_w / 13, exp(th) * anchor_h / 13)``, in units of the padded square's
  side; its score ``sigmoid(objectness)``. Boxes scoring over 0.5 are kept, then greedy
  non-maximum suppression at IoU 0.4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import faceapi, mtcnn, shared

INPUT_SIZE = 416
GRID = 13
MEAN_RGB = (117.001, 114.697, 97.404)
ANCHORS = ((1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061),
           (4.266906, 5.178857), (9.041765, 10.66308))
SCORE_THRESHOLD = 0.5
IOU_THRESHOLD = 0.4
LEAKY_SLOPE = 0.10000000149011612  # TensorFlow.js's float32 0.1
CHANNELS = (16, 32, 64, 128, 256, 512)
WEIGHTS_ASSET = "tiny_face_detector_model.bin"
MANIFEST_ASSET = "tiny_face_detector_model-weights_manifest.json"


def _max_pool_same(x: torch.Tensor, stride: int) -> torch.Tensor:
    """TensorFlow's 2x2 max pool with SAME padding (padding never wins the max)."""
    height, width = x.shape[-2:]
    pad_h = max((math.ceil(height / stride) - 1) * stride + 2 - height, 0)
    pad_w = max((math.ceil(width / stride) - 1) * stride + 2 - width, 0)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), value=float("-inf"))
    return F.max_pool2d(x, 2, stride)


class TinyFaceDetectorNet(nn.Module):
    """The network: ``(B, 3, 416, 416)`` normalised input -> ``(B, 13, 13, 5, 5)``, for each
    cell and anchor ``(tx, ty, tw, th, objectness)``."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, CHANNELS[0], 3)
        self.convs = nn.ModuleList(
            faceapi.SeparableConv(CHANNELS[i], CHANNELS[i + 1], 1) for i in range(5))
        self.conv8 = nn.Conv2d(CHANNELS[-1], len(ANCHORS) * 5, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv0(images), LEAKY_SLOPE)
        for conv in self.convs:
            x = _max_pool_same(x, 2)
            x = F.leaky_relu(conv(x), LEAKY_SLOPE)  # SAME: padding 1
        x = _max_pool_same(x, 1)
        x = self.conv8(x)  # (B, 25, 13, 13)
        batch, _, rows, cols = x.shape
        return x.view(batch, len(ANCHORS), 5, rows, cols).permute(0, 3, 4, 1, 2)


def _state_dict(weights: dict) -> dict[str, torch.Tensor]:
    state = {}
    for name, value in weights.items():
        tensor = torch.from_numpy(value.copy())
        scope, _, kind = name.partition("/")
        if scope in ("conv0", "conv8"):
            key = "weight" if kind == "filters" else "bias"
            state[f"{scope}.{key}"] = tensor.permute(3, 2, 0, 1) if kind == "filters" else tensor
            continue
        prefix = f"convs.{int(scope.removeprefix('conv')) - 1}"
        if kind == "depthwise_filter":  # (kh, kw, channels, 1) -> (channels, 1, kh, kw)
            state[f"{prefix}.depthwise.weight"] = tensor.permute(2, 3, 0, 1)
        elif kind == "pointwise_filter":  # (1, 1, in, out) -> (out, in, 1, 1)
            state[f"{prefix}.pointwise.weight"] = tensor.permute(3, 2, 0, 1)
        elif kind == "bias":
            state[f"{prefix}.pointwise.bias"] = tensor
        else:
            raise ValueError(f"unexpected tensor {name}")
    return state


def build() -> TinyFaceDetectorNet:
    """A new float32 CPU network with the pinned weights (fetched on first use).

    Raises:
        AssetError: a file cannot be fetched, or does not hold this network's tensors.
    """
    from .. import assets
    from ..errors import AssetError

    network = TinyFaceDetectorNet()
    manifest = assets.fetch(MANIFEST_ASSET)
    try:
        weights = faceapi.read_manifest_weights(manifest, resolve=assets.fetch)
        network.load_state_dict(_state_dict(weights), strict=True)
    except (ValueError, RuntimeError) as error:
        raise AssetError(f"{MANIFEST_ASSET} does not describe face-api's tiny face detector: "
                         f"{error}") from None
    return network


def load(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
         ) -> TinyFaceDetectorNet:
    """The shared, frozen network on ``device`` in ``dtype`` (built once per process)."""
    return shared.frozen(build, device, dtype)


def network_input(frames: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(B, 3, 416, 416)`` network input for RGB frames in [0, 1], differentiably, and
    the side of the padded square the grid covers (see the module docstring)."""
    height, width = frames.shape[-2:]
    side = max(height, width)
    square = F.pad(frames, (0, side - width, 0, side - height))
    if side != INPUT_SIZE:
        # TensorFlow's resizeBilinear(alignCorners=false, halfPixelCenters=false): output
        # pixel i samples input position i * side / 416, clamped at the last pixel
        position = torch.arange(INPUT_SIZE, device=frames.device, dtype=frames.dtype)
        position = (position * (side / INPUT_SIZE)).clamp(max=side - 1)
        normalised = position * (2 / (side - 1)) - 1 if side > 1 else position * 0
        grid = torch.stack(torch.meshgrid(normalised, normalised, indexing="xy"), -1)
        grid = grid.expand(frames.shape[0], -1, -1, -1)
        square = F.grid_sample(square, grid, mode="bilinear", align_corners=True)
    mean = square.new_tensor(MEAN_RGB).view(1, 3, 1, 1)
    return (square * 255 - mean) / 255, side


def decode(raw: torch.Tensor, side: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(boxes (B, 845, 4) in frame pixels (x_min, y_min, x_max, y_max), logits (B, 845))``
    from the network's ``(B, 13, 13, 5, 5)`` output; ``side``: the padded square's side."""
    batch, rows, cols, count, _ = raw.shape
    anchors = raw.new_tensor(ANCHORS)  # (5, 2) in cells
    row = torch.arange(rows, device=raw.device, dtype=raw.dtype).view(1, rows, 1, 1)
    col = torch.arange(cols, device=raw.device, dtype=raw.dtype).view(1, 1, cols, 1)
    centre_x = (col + torch.sigmoid(raw[..., 0])) / cols * side
    centre_y = (row + torch.sigmoid(raw[..., 1])) / rows * side
    half_w = torch.exp(raw[..., 2]) * anchors[:, 0] / cols * side / 2
    half_h = torch.exp(raw[..., 3]) * anchors[:, 1] / rows * side / 2
    boxes = torch.stack([centre_x - half_w, centre_y - half_h,
                         centre_x + half_w, centre_y + half_h], -1)
    return boxes.reshape(batch, -1, 4), raw[..., 4].reshape(batch, -1)


@dataclass
class Detections:
    """One frame's faces: ``boxes (N, 4)`` in frame pixels and ``scores (N,)``, best first."""

    boxes: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class TinyFaceDetector(nn.Module):
    """face-api's tiny face detector on ``(B, 3, H, W)`` RGB frames in [0, 1].

    Args:
        device, dtype: where the network runs; frames must be on ``device``.
        score_threshold: the lowest score kept (face-api's default, 0.5).
    """

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 score_threshold: float = SCORE_THRESHOLD):
        super().__init__()
        self.network = load(device, dtype)
        self.score_threshold = score_threshold

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every anchor's box and objectness logit, differentiably: ``(boxes (B, 845, 4),
        logits (B, 845))``."""
        if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"frames must be floating-point RGB (B, 3, H, W) in [0, 1], got "
                             f"{frames.dtype} {tuple(frames.shape)}")
        images, side = network_input(frames)
        raw = self.network(images.to(next(self.network.parameters()).dtype))
        return decode(raw.to(frames.dtype), side)

    @torch.no_grad()
    def detect(self, frames: torch.Tensor) -> list[Detections]:
        """The faces face-api's ``locateFaces`` reports: scores over the threshold, greedy
        non-maximum suppression at IoU 0.4."""
        return self.select(*self(frames))

    @torch.no_grad()
    def select(self, boxes: torch.Tensor, logits: torch.Tensor) -> list[Detections]:
        """:meth:`detect`'s choice among every anchor's ``(boxes, logits)`` of
        :meth:`forward`, for a caller that needs both."""
        scores = torch.sigmoid(logits)
        result = []
        for frame_boxes, frame_scores in zip(boxes, scores):
            keep = frame_scores > self.score_threshold
            frame_boxes, frame_scores = frame_boxes[keep], frame_scores[keep]
            kept = mtcnn.non_max_suppression(
                frame_boxes, frame_scores,
                torch.zeros_like(frame_scores, dtype=torch.long), IOU_THRESHOLD)
            result.append(Detections(frame_boxes[kept], frame_scores[kept]))
        return result
