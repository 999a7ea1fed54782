"""BlazeFace short-range face detection: letterbox, anchor decoding, non-maximum suppression.

The network (``zoo.load("face_detection")``) sees a 128x128 RGB image in [0, 1] and gives,
for each of 896 anchors, 16 regression values and one score logit. This module turns that
into faces in frame pixels the way MediaPipe's ``face_detection_short_range`` graph does:

- **letterbox**: the frame is shrunk (anti-aliased, aspect kept) so that its long side is
  128 pixels, and centred on a black 128x128 square; detections are mapped back.
- **anchors** (SSD anchors of the short-range model): 128x128 input, strides 8 and 16,
  anchor offset 0.5, fixed anchor size 1. The stride-8 layer is a 16x16 grid with 2
  anchors per cell, the three stride-16 layers share an 8x8 grid and give 6 anchors per
  cell: 512 + 384 = 896 anchors, ordered layer by layer, then row, column, anchor.
- **decoding**: values are ``(x, y, w, h)`` then 6 keypoints ``(x, y)``, all in input
  pixels relative to the anchor centre (scale 128, times the unit anchor size).
  Keypoints, as the person sees them: 0 right eye, 1 left eye, 2 nose tip, 3 mouth centre,
  4 right ear tragion, 5 left ear tragion (the right eye appears on the image left in an
  unmirrored frame).
- **scores**: ``sigmoid(clip(logit, -100, 100))``; kept above ``min_score`` (0.5).
- **suppression**: MediaPipe's weighted non-maximum suppression (IoU above 0.3 joins the
  best-scoring face's cluster, whose box and keypoints become the score-weighted mean) or
  ordinary suppression (the best box of each cluster is kept as is).

:meth:`FaceDetector.detect` gives detached per-frame results for choosing regions;
:meth:`FaceDetector.forward`, :meth:`FaceDetector.face_score` and :func:`decode` are
differentiable from the frame pixels, for attacks on the detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 128
ANCHOR_COUNT = 896
KEYPOINT_COUNT = 6
SCORE_CLIP = 100.0
MIN_SCORE = 0.5
MIN_SUPPRESSION_IOU = 0.3

RIGHT_EYE = 0
LEFT_EYE = 1
NOSE_TIP = 2
MOUTH_CENTER = 3
RIGHT_EAR_TRAGION = 4
LEFT_EAR_TRAGION = 5
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center",
                  "right_ear_tragion", "left_ear_tragion")

# (stride, anchors per cell) after MediaPipe merges consecutive layers of equal stride:
# layers with strides [8, 16, 16, 16], 2 anchors per layer (aspect ratio 1 plus the
# interpolated scale).
_ANCHOR_LAYERS = ((8, 2), (16, 6))
_ANCHOR_OFFSET = 0.5


def anchors(device=None, dtype=torch.float32) -> torch.Tensor:
    """The 896 anchor centres ``(x, y)`` of BlazeFace short-range, normalised to [0, 1]."""
    centres = []
    for stride, per_cell in _ANCHOR_LAYERS:
        cells = INPUT_SIZE // stride
        coordinate = (torch.arange(cells, dtype=torch.float64) + _ANCHOR_OFFSET) / cells
        y, x = torch.meshgrid(coordinate, coordinate, indexing="ij")  # row-major cells
        grid = torch.stack([x, y], dim=-1).reshape(-1, 1, 2).expand(-1, per_cell, 2)
        centres.append(grid.reshape(-1, 2))
    return torch.cat(centres).to(device=device, dtype=dtype)


def decode(regressors: torch.Tensor, anchor_centres: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes and keypoints of every anchor, in 128x128 input pixels; differentiable.

    Args:
        regressors: ``(B, 896, 16)`` raw network output.
        anchor_centres: ``(896, 2)`` from :func:`anchors` (made when not given).

    Returns:
        ``boxes (B, 896, 4)`` as ``(x_min, y_min, x_max, y_max)`` and
        ``keypoints (B, 896, 6, 2)`` as ``(x, y)``.
    """
    if regressors.dim() != 3 or regressors.shape[1:] != (ANCHOR_COUNT, 16):
        raise ValueError(f"regressors must be (B, {ANCHOR_COUNT}, 16), got {tuple(regressors.shape)}")
    if anchor_centres is None:
        anchor_centres = anchors(regressors.device, regressors.dtype)
    # Anchor size is fixed to 1 (normalised), so an offset of 128 input pixels is one unit.
    origin = anchor_centres * INPUT_SIZE  # anchor centres in input pixels
    centre = regressors[..., 0:2] + origin
    half = regressors[..., 2:4] / 2
    boxes = torch.cat([centre - half, centre + half], dim=-1)
    keypoints = regressors[..., 4:].reshape(*regressors.shape[:2], KEYPOINT_COUNT, 2)
    return boxes, keypoints + origin.unsqueeze(-2)


def scores_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """``sigmoid(clip(logits, -100, 100))``, any shape."""
    return torch.sigmoid(logits.clamp(-SCORE_CLIP, SCORE_CLIP))


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union of ``(N, 4)`` and ``(M, 4)`` boxes -> ``(N, M)``."""
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = (bottom_right - top_left).clamp_min(0).prod(-1)
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2]).clamp_min(0).prod(-1)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2]).clamp_min(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp_min(1e-12), torch.zeros_like(union))


@dataclass
class FaceDetections:
    """The faces found in one frame, best score first.

    Attributes (``K`` faces, possibly 0):
        boxes: ``(K, 4)`` ``(x_min, y_min, x_max, y_max)`` in frame pixels.
        keypoints: ``(K, 6, 2)`` ``(x, y)`` in frame pixels, order as :data:`KEYPOINT_NAMES`.
        scores: ``(K,)`` in [0, 1].
        anchor_indices: ``(K,)`` the anchor of each face's best-scoring raw detection.
    """

    boxes: torch.Tensor
    keypoints: torch.Tensor
    scores: torch.Tensor
    anchor_indices: torch.Tensor

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def areas(self) -> torch.Tensor:
        return (self.boxes[:, 2:] - self.boxes[:, :2]).clamp_min(0).prod(-1)

    def largest(self) -> int | None:
        """Index of the face with the largest box, or ``None`` when there is none."""
        if len(self) == 0:
            return None
        return int(self.areas().argmax())

    def select(self, index) -> FaceDetections:
        return FaceDetections(self.boxes[index], self.keypoints[index], self.scores[index],
                              self.anchor_indices[index])


def non_max_suppression(boxes: torch.Tensor, keypoints: torch.Tensor, scores: torch.Tensor,
                        iou_threshold: float = MIN_SUPPRESSION_IOU, weighted: bool = True,
                        max_faces: int | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Suppression over one frame's candidates (``(N, 4)``, ``(N, 6, 2)``, ``(N,)``).

    Returns the kept ``boxes``, ``keypoints``, ``scores`` and the indices (into the
    inputs) of each cluster's best candidate, best score first. With ``weighted`` the
    box and keypoints of a cluster are the score-weighted means of its members (MediaPipe's
    WEIGHTED algorithm); the score is always the best member's.
    """
    order = scores.argsort(descending=True)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    iou = box_iou(boxes, boxes)
    remaining = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    kept_boxes, kept_keypoints, kept_scores, kept_indices = [], [], [], []
    for best in range(len(scores)):
        if not remaining[best]:
            continue
        cluster = remaining & (iou[best] > iou_threshold)
        cluster[best] = True
        if weighted:
            weights = scores[cluster] / scores[cluster].sum()
            kept_boxes.append((boxes[cluster] * weights[:, None]).sum(0))
            kept_keypoints.append((keypoints[cluster] * weights[:, None, None]).sum(0))
        else:
            kept_boxes.append(boxes[best])
            kept_keypoints.append(keypoints[best])
        kept_scores.append(scores[best])
        kept_indices.append(order[best])
        remaining &= ~cluster
        if max_faces is not None and len(kept_scores) >= max_faces:
            break
    if not kept_scores:
        return (boxes.new_zeros(0, 4), keypoints.new_zeros(0, KEYPOINT_COUNT, 2),
                scores.new_zeros(0), order.new_zeros(0))
    return (torch.stack(kept_boxes), torch.stack(kept_keypoints), torch.stack(kept_scores),
            torch.stack(kept_indices))


@dataclass(frozen=True)
class Letterbox:
    """How frames were fitted into the square input: ``input = frame / scale + pad``.

    Attributes:
        scale: ``(x, y)`` frame pixels per input pixel.
        pad: ``(x, y)`` input pixels of black border on the left and top.
        content: ``(width, height)`` of the frame inside the input, in input pixels.
    """

    scale: tuple[float, float]
    pad: tuple[int, int]
    content: tuple[int, int]

    @staticmethod
    def for_frame(height: int, width: int, size: int = INPUT_SIZE) -> Letterbox:
        ratio = size / max(height, width)
        content_width = max(1, min(size, round(width * ratio)))
        content_height = max(1, min(size, round(height * ratio)))
        pad = ((size - content_width) // 2, (size - content_height) // 2)
        return Letterbox((width / content_width, height / content_height), pad,
                         (content_width, content_height))

    def to_frame(self, points: torch.Tensor) -> torch.Tensor:
        """Input-pixel points ``(..., 2)`` -> frame pixels."""
        pad = points.new_tensor(self.pad)
        return (points - pad) * points.new_tensor(self.scale)

    def to_input(self, points: torch.Tensor) -> torch.Tensor:
        """Frame-pixel points ``(..., 2)`` -> input pixels."""
        return points / points.new_tensor(self.scale) + points.new_tensor(self.pad)

    def boxes_to_frame(self, boxes: torch.Tensor) -> torch.Tensor:
        return self.to_frame(boxes.unflatten(-1, (2, 2))).flatten(-2)


def letterbox(frames: torch.Tensor, size: int = INPUT_SIZE) -> tuple[torch.Tensor, Letterbox]:
    """Fit ``(B, 3, H, W)`` frames into ``(B, 3, size, size)``, aspect kept, black border.

    The shrink is bilinear with anti-aliasing (differentiable); the frame is centred.
    """
    height, width = frames.shape[-2:]
    box = Letterbox.for_frame(height, width, size)
    content_width, content_height = box.content
    if (content_height, content_width) != (height, width):
        frames = F.interpolate(frames, size=(content_height, content_width), mode="bilinear",
                               align_corners=False, antialias=True)
    left, top = box.pad
    padding = (left, size - content_width - left, top, size - content_height - top)
    return F.pad(frames, padding, value=0.0), box


@dataclass
class RawDetections:
    """Differentiable network output for a batch, before selection.

    Attributes:
        regressors: ``(B, 896, 16)`` raw regression values.
        logits: ``(B, 896)`` raw score logits (unclipped).
        letterbox: the frame-to-input mapping.
    """

    regressors: torch.Tensor
    logits: torch.Tensor
    letterbox: Letterbox

    def scores(self) -> torch.Tensor:
        """``(B, 896)`` anchor scores in [0, 1]."""
        return scores_from_logits(self.logits)

    def decode(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``boxes (B, 896, 4)`` and ``keypoints (B, 896, 6, 2)`` in frame pixels."""
        boxes, keypoints = decode(self.regressors)
        return self.letterbox.boxes_to_frame(boxes), self.letterbox.to_frame(keypoints)


def _network_outputs(result) -> tuple[torch.Tensor, torch.Tensor]:
    """``(regressors (B, 896, 16), logits (B, 896))`` from the zoo module's output, a
    ``FaceDetectionOutput`` (or any pair in that order)."""
    regressors, logits = result[0], result[1]
    if logits.dim() == 3:
        logits = logits.squeeze(-1)
    return regressors, logits


class FaceDetector(nn.Module):
    """BlazeFace short-range on frames of any size.

    Args:
        model: the network; by default ``zoo.load("face_detection", device, dtype)``.
        device, dtype: where to load the default network.
        min_score: keep faces scoring at least this (MediaPipe: 0.5).
        iou_threshold: suppression overlap (MediaPipe: 0.3).
        weighted: weighted (MediaPipe) or ordinary suppression.
    """

    def __init__(self, model: nn.Module | None = None, device="cpu", dtype=torch.float32,
                 min_score: float = MIN_SCORE, iou_threshold: float = MIN_SUPPRESSION_IOU,
                 weighted: bool = True):
        super().__init__()
        if model is None:
            from . import zoo

            model = zoo.load("face_detection", device=device, dtype=dtype)
        self.model = model
        self.min_score = min_score
        self.iou_threshold = iou_threshold
        self.weighted = weighted

    def forward(self, frames: torch.Tensor) -> RawDetections:
        """Run the network on ``(B, 3, H, W)`` RGB frames in [0, 1]; differentiable."""
        if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"frames must be floating-point RGB (B, 3, H, W) in [0, 1], got "
                             f"{frames.dtype} {tuple(frames.shape)}")
        inputs, box = letterbox(frames)
        regressors, logits = _network_outputs(self.model(inputs))
        return RawDetections(regressors, logits, box)

    def face_score(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the best anchor score of each frame: differentiable "is there a face"."""
        return self(frames).scores().amax(dim=-1)

    @torch.no_grad()
    def detect(self, frames: torch.Tensor, max_faces: int | None = None) -> list[FaceDetections]:
        """Faces in each frame (detached), best score first; an empty result when none."""
        return self.select(self(frames), max_faces=max_faces)

    @torch.no_grad()
    def select(self, raw: RawDetections, max_faces: int | None = None) -> list[FaceDetections]:
        """Threshold and suppress a :class:`RawDetections` (detached results)."""
        scores = raw.scores().detach().float()
        boxes, keypoints = decode(raw.regressors.detach().float())
        results = []
        for frame in range(scores.shape[0]):
            keep = torch.nonzero(scores[frame] >= self.min_score).squeeze(-1)
            kept_boxes, kept_keypoints, kept_scores, picked = non_max_suppression(
                boxes[frame, keep], keypoints[frame, keep], scores[frame, keep],
                self.iou_threshold, self.weighted, max_faces)
            results.append(FaceDetections(
                raw.letterbox.boxes_to_frame(kept_boxes),
                raw.letterbox.to_frame(kept_keypoints),
                kept_scores,
                keep[picked],
            ))
        return results
