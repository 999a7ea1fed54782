"""MTCNN: a cascade of three small CNNs that finds faces and 5 landmarks.

MTCNN (Zhang et al. 2016) is a different family from the MediaPipe models: no anchors, no
letterbox, a fixed 12x12 proposal network slid over an image pyramid, then two networks
that re-read each candidate at 24x24 and 48x48. Face pipelines of the talking-face
generators and of face-swap tools use it to find and align faces; as a surrogate it makes
the protection less specific to one detector.

Networks (weights: the state dicts of the pinned ``facenet-pytorch==2.6.0`` wheel, loaded
with ``weights_only=True`` and ``strict=True``; parameter names as in those state dicts):

- :class:`PNet` (proposals): 3x3 conv 10, PReLU, 2x2 max pool (ceil), 3x3 conv 16, PReLU,
  3x3 conv 32, PReLU, then two 1x1 heads: face logits (2) and box offsets (4). Fully
  convolutional: a 12x12 window per output cell, stride 2.
- :class:`RNet` (refinement, 24x24): 3x3 conv 28, PReLU, 3x3/2 max pool (ceil), 3x3 conv 48,
  PReLU, 3x3/2 max pool (ceil), 2x2 conv 64, PReLU, dense 576 -> 128, PReLU, heads: face
  logits (2), box offsets (4).
- :class:`ONet` (output, 48x48): 3x3 conv 32, PReLU, 3x3/2 pool, 3x3 conv 64, PReLU, 3x3/2
  pool, 3x3 conv 64, PReLU, 2x2/2 pool, 2x2 conv 128, PReLU, dense 1152 -> 256, PReLU,
  heads: face logits (2), box offsets (4), 5 landmarks (10: five x then five y, as
  fractions of the crop).

The dense layers were trained on feature maps flattened width first (the original Caffe
model read transposed images): the map is permuted to ``(B, W, H, C)`` before flattening.
Every network takes RGB in [0, 1] and applies MTCNN's own input scaling
``(255 x - 127.5) / 128`` itself; they return logits (``softmax`` gives the face
probability), which attacks differentiate better than saturated probabilities.

:class:`MTCNN` is the full detector, as the classic algorithm (and facenet-pytorch's
``detect_face``, the reference it is checked against) runs it: an image pyramid (smallest
face 20 pixels, factor 0.709, ``area`` resampling), P-Net thresholded at 0.6, suppression
per scale (IoU 0.5) then over all scales (0.7), box regression and squaring; R-Net on 24x24
crops at 0.7, suppression 0.7, regression, squaring; O-Net on 48x48 crops at 0.7, landmarks
from the box before regression, final suppression of "intersection over the smaller
area" above 0.7. Suppression is written here in torch (no torchvision).

Coordinates: the classic algorithm numbers pixels from 1 with inclusive box ends; results
here are in the project's continuous pixel coordinates (pixel ``(i, j)`` covers
``[j, j + 1) x [i, i + 1)``): a classic box ``(x1, y1, x2, y2)`` is ``(x1 - 1, y1 - 1, x2,
y2)``, and landmarks, which the classic algorithm already places from the crop's left and
top edges, are unchanged.

Landmarks, in image order: 0 the eye on the image left (the person's right eye), 1 the
eye on the image right, 2 the nose tip, 3 the mouth corner on the image left, 4 the mouth
corner on the image right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import alignment, shared
from .alignment import RegionOfInterest

ASSETS = {"pnet": "mtcnn_pnet.pt", "rnet": "mtcnn_rnet.pt", "onet": "mtcnn_onet.pt"}

MIN_FACE_SIZE = 20.0
PYRAMID_FACTOR = 0.709
THRESHOLDS = (0.6, 0.7, 0.7)
PROPOSAL_WINDOW = 12  # P-Net's receptive window (pixels of a pyramid level)
PROPOSAL_STRIDE = 2
RNET_SIZE = 24
ONET_SIZE = 48
# Suppression IoU: P-Net within one pyramid level, then across levels; R-Net; O-Net (the
# last one measures intersection over the smaller box).
SCALE_SUPPRESSION = 0.5
PROPOSAL_SUPPRESSION = 0.7
REFINE_SUPPRESSION = 0.7
OUTPUT_SUPPRESSION = 0.7

POINT_COUNT = 5
RIGHT_EYE = 0  # the person's right eye, on the image left
LEFT_EYE = 1
NOSE_TIP = 2
MOUTH_RIGHT = 3  # the person's right mouth corner, on the image left
MOUTH_LEFT = 4
POINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")


def network_input(images: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> MTCNN's input scale ``(255 x - 127.5) / 128``."""
    return (images * 255.0 - 127.5) * 0.0078125


def _flatten_width_first(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, W * H * C)`` in the order the dense layers were trained on."""
    return features.permute(0, 3, 2, 1).flatten(1)


class PNet(nn.Module):
    """Proposal network. Input ``(B, 3, H, W)`` RGB in [0, 1], any size of at least 12.

    Returns ``(logits (B, 2, h, w), offsets (B, 4, h, w))`` with
    ``h = ceil((H - 2) / 2) - 4`` (likewise ``w``); channel 1 of the logits is "face".
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(network_input(images))))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x), self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network. Input ``(B, 3, 24, 24)`` RGB in [0, 1].

    Returns ``(logits (B, 2), offsets (B, 4))``.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(network_input(images))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_width_first(x)))
        return self.dense5_1(x), self.dense5_2(x)


class ONet(nn.Module):
    """Output network. Input ``(B, 3, 48, 48)`` RGB in [0, 1].

    Returns ``(logits (B, 2), offsets (B, 4), landmarks (B, 5, 2))``, the landmarks as
    fractions of the crop's width and height (0 at its left or top edge, 1 at the other).
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(network_input(images))))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_width_first(x)))
        landmarks = self.dense6_3(x).unflatten(1, (2, POINT_COUNT)).transpose(1, 2)
        return self.dense6_1(x), self.dense6_2(x), landmarks


class Networks(nn.Module):
    """The three networks with their real weights (:func:`load`)."""

    def __init__(self):
        super().__init__()
        self.pnet = PNet()
        self.rnet = RNet()
        self.onet = ONet()


def build() -> Networks:
    """New float32 CPU networks with the pinned weights (fetched on first use).

    Raises:
        AssetError: a file cannot be fetched or is not the expected state dict.
    """
    from .. import assets
    from ..errors import AssetError

    networks = Networks()
    for name, asset in ASSETS.items():
        state = torch.load(assets.fetch(asset), map_location="cpu", weights_only=True)
        try:
            getattr(networks, name).load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise AssetError(f"{asset} does not hold MTCNN's {name}: {error}") from None
    return networks


def load(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Networks:
    """The shared, frozen networks on ``device`` in ``dtype`` (built once per process)."""
    return shared.frozen(build, device, dtype)


# -------------------------------------------------------------------------------------
# Boxes and suppression


def box_overlap(boxes_a: torch.Tensor, boxes_b: torch.Tensor, mode: str = "union",
                inclusive: bool = False) -> torch.Tensor:
    """Pairwise overlap of ``(N, 4)`` and ``(M, 4)`` boxes ``(x1, y1, x2, y2)`` -> ``(N, M)``.

    Args:
        mode: ``"union"`` intersection over union; ``"min"`` intersection over the smaller
            box's area (MTCNN's last suppression: a box inside another is a duplicate).
        inclusive: count ``x2 - x1 + 1`` pixels per side, as the classic algorithm's final
            suppression does on its 1-based boxes; otherwise ``x2 - x1``.
    """
    extra = 1.0 if inclusive else 0.0
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = (bottom_right - top_left + extra).clamp_min(0).prod(-1)
    area_a = (boxes_a[:, 2:] - boxes_a[:, :2] + extra).prod(-1)
    area_b = (boxes_b[:, 2:] - boxes_b[:, :2] + extra).prod(-1)
    if mode == "union":
        denominator = area_a[:, None] + area_b[None, :] - intersection
    elif mode == "min":
        denominator = torch.minimum(area_a[:, None], area_b[None, :])
    else:
        raise ValueError(f"mode must be 'union' or 'min', got {mode!r}")
    return intersection / denominator.clamp_min(1e-12)


def non_max_suppression(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                        threshold: float, mode: str = "union", inclusive: bool = False
                        ) -> torch.Tensor:
    """Greedy suppression within each group (image): indices of the kept boxes, best first.

    A box is dropped when its overlap (:func:`box_overlap`) with a better-scoring kept box
    of the same group exceeds ``threshold``. Equal scores keep the earlier box first.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes, groups = boxes[order], groups[order]
    same_group = groups[:, None] == groups[None, :]
    suppresses = ((box_overlap(boxes, boxes, mode, inclusive) > threshold) & same_group).cpu()
    removed = torch.zeros(len(order), dtype=torch.bool)
    kept = []
    for index in range(len(order)):
        if removed[index]:
            continue
        kept.append(index)
        removed |= suppresses[index]
    return order[torch.tensor(kept, dtype=torch.long, device=order.device)]


def square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Make ``(N, 4)`` boxes square on their longer side, keeping the centre."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(dim=-1, keepdim=True) / 2
    return torch.cat([centre - half, centre + half], dim=-1)


def _regress(boxes: torch.Tensor, offsets: torch.Tensor, inclusive: bool) -> torch.Tensor:
    """Move each box side by its offset times the box size (``+1`` when ``inclusive``)."""
    size = boxes[:, 2:] - boxes[:, :2] + (1.0 if inclusive else 0.0)
    return boxes + offsets * size.repeat(1, 2)


# -------------------------------------------------------------------------------------
# The cascade


@dataclass
class MtcnnFaces:
    """The faces MTCNN finds in one frame, best score first.

    Attributes (``K`` faces, possibly 0), in frame pixels (continuous coordinates):
        boxes: ``(K, 4)`` ``(x_min, y_min, x_max, y_max)``.
        points: ``(K, 5, 2)`` ``(x, y)``, order as :data:`POINT_NAMES`.
        scores: ``(K,)`` O-Net's face probability.
    """

    boxes: torch.Tensor
    points: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def largest(self) -> int | None:
        """Index of the face with the largest box, or ``None`` when there is none."""
        if len(self) == 0:
            return None
        return int((self.boxes[:, 2:] - self.boxes[:, :2]).prod(-1).argmax())


def pyramid_scales(height: int, width: int, min_face_size: float = MIN_FACE_SIZE,
                   factor: float = PYRAMID_FACTOR) -> list[float]:
    """The image scales at which P-Net's 12-pixel window sees faces from ``min_face_size``
    pixels up to the frame's short side."""
    scale = PROPOSAL_WINDOW / min_face_size
    short_side = min(height, width) * scale
    scales = []
    while short_side >= PROPOSAL_WINDOW:
        scales.append(scale)
        scale *= factor
        short_side *= factor
    return scales


def _integer_crops(images: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor,
                   size: int) -> torch.Tensor:
    """The classic algorithm's crops: each box truncated to whole pixels, clipped to the
    frame, cut out and shrunk to ``size`` by area averaging (``(K, 3, size, size)``).

    ``boxes`` are in classic 1-based inclusive coordinates.
    """
    height, width = images.shape[-2:]
    whole = boxes.trunc().long().cpu()
    # A box wholly outside the frame keeps one pixel of the frame's edge (it then fails
    # the next threshold) instead of an empty crop.
    left = whole[:, 0].clamp(1, width)
    top = whole[:, 1].clamp(1, height)
    right = torch.maximum(whole[:, 2].clamp_max(width), left)
    bottom = torch.maximum(whole[:, 3].clamp_max(height), top)
    crops = []
    for k in range(boxes.shape[0]):
        region = images[image_index[k], :, top[k] - 1:bottom[k], left[k] - 1:right[k]]
        crops.append(F.interpolate(region[None], size=(size, size), mode="area"))
    return torch.cat(crops)


class MTCNN(nn.Module):
    """The full MTCNN detector on batches of frames (see the module docstring).

    Args:
        device, dtype: where the networks run; frames must be on ``device``.
        min_face_size: the smallest face searched for, in frame pixels.
        factor: ratio between pyramid levels.
        thresholds: face probability thresholds of P-Net, R-Net and O-Net.
    """

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 min_face_size: float = MIN_FACE_SIZE, factor: float = PYRAMID_FACTOR,
                 thresholds: tuple[float, float, float] = THRESHOLDS):
        super().__init__()
        self.networks = load(device, dtype)
        self.min_face_size = min_face_size
        self.factor = factor
        self.thresholds = thresholds

    @property
    def pnet(self) -> PNet:
        return self.networks.pnet

    @property
    def rnet(self) -> RNet:
        return self.networks.rnet

    @property
    def onet(self) -> ONet:
        return self.networks.onet

    @staticmethod
    def _check(frames: torch.Tensor) -> None:
        if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"frames must be floating-point RGB (B, 3, H, W) in [0, 1], got "
                             f"{frames.dtype} {tuple(frames.shape)}")

    @torch.no_grad()
    def detect(self, frames: torch.Tensor) -> list[MtcnnFaces]:
        """Faces in each of ``(B, 3, H, W)`` RGB frames in [0, 1] (detached results)."""
        self._check(frames)
        dtype = next(self.pnet.parameters()).dtype
        images = frames.to(dtype)
        batch = images.shape[0]
        boxes, image_index = self._propose(images)
        if boxes.shape[0]:
            boxes, image_index = self._refine(images, boxes, image_index)
        points = boxes.new_zeros(0, POINT_COUNT, 2)
        scores = boxes.new_zeros(0)
        if boxes.shape[0]:
            boxes, points, scores, image_index = self._output(images, boxes, image_index)
        # classic 1-based inclusive boxes -> continuous coordinates
        boxes = boxes - boxes.new_tensor([1.0, 1.0, 0.0, 0.0])
        results = []
        for frame in range(batch):
            chosen = (image_index == frame).nonzero().squeeze(-1)
            results.append(MtcnnFaces(boxes[chosen].float(), points[chosen].float(),
                                      scores[chosen].float()))
        return results

    def _propose(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: P-Net over the pyramid -> squared candidate boxes ``(N, 4)`` (classic
        coordinates) and their image index ``(N,)``."""
        height, width = images.shape[-2:]
        candidates = [images.new_zeros(0, 4)]
        scores, offsets = [images.new_zeros(0)], [images.new_zeros(0, 4)]
        indices = [torch.zeros(0, dtype=torch.long, device=images.device)]
        for scale in pyramid_scales(height, width, self.min_face_size, self.factor):
            size = (int(height * scale + 1), int(width * scale + 1))
            level = F.interpolate(images, size=size, mode="area")
            logits, regression = self.pnet(level)
            probability = torch.softmax(logits, dim=1)[:, 1]
            image, row, column = (probability >= self.thresholds[0]).nonzero(as_tuple=True)
            cells = torch.stack([column, row], dim=-1).to(images.dtype)
            start = ((PROPOSAL_STRIDE * cells + 1) / scale).floor()
            end = ((PROPOSAL_STRIDE * cells + PROPOSAL_WINDOW) / scale).floor()
            level_boxes = torch.cat([start, end], dim=-1)
            level_scores = probability[image, row, column]
            keep = non_max_suppression(level_boxes, level_scores, image, SCALE_SUPPRESSION)
            candidates.append(level_boxes[keep])
            scores.append(level_scores[keep])
            offsets.append(regression.permute(0, 2, 3, 1)[image, row, column][keep])
            indices.append(image[keep])
        boxes, scores = torch.cat(candidates), torch.cat(scores)
        offsets, image_index = torch.cat(offsets), torch.cat(indices)
        keep = non_max_suppression(boxes, scores, image_index, PROPOSAL_SUPPRESSION)
        boxes = _regress(boxes[keep], offsets[keep], inclusive=False)
        return square_boxes(boxes), image_index[keep]

    def _refine(self, images: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: R-Net on 24x24 crops -> refined squared boxes and their image index."""
        logits, offsets = self.rnet(_integer_crops(images, boxes, image_index, RNET_SIZE))
        scores = torch.softmax(logits, dim=1)[:, 1]
        passed = scores > self.thresholds[1]
        boxes, scores = boxes[passed], scores[passed]
        offsets, image_index = offsets[passed], image_index[passed]
        keep = non_max_suppression(boxes, scores, image_index, REFINE_SUPPRESSION)
        boxes = _regress(boxes[keep], offsets[keep], inclusive=True)
        return square_boxes(boxes), image_index[keep]

    def _output(self, images: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 3: O-Net on 48x48 crops -> final boxes, landmarks, scores, image index."""
        logits, offsets, fractions = self.onet(_integer_crops(images, boxes, image_index,
                                                              ONET_SIZE))
        scores = torch.softmax(logits, dim=1)[:, 1]
        passed = scores > self.thresholds[2]
        boxes, scores, offsets = boxes[passed], scores[passed], offsets[passed]
        fractions, image_index = fractions[passed], image_index[passed]
        # Landmarks are placed in the box O-Net saw (its left/top edge is x1 - 1, y1 - 1 in
        # continuous coordinates), before the box is regressed.
        origin = boxes[:, None, :2] - 1
        size = (boxes[:, 2:] - boxes[:, :2] + 1)[:, None]
        points = origin + fractions * size
        boxes = _regress(boxes, offsets, inclusive=True)
        keep = non_max_suppression(boxes, scores, image_index, OUTPUT_SUPPRESSION, mode="min",
                                   inclusive=True)
        return boxes[keep], points[keep], scores[keep], image_index[keep]

    # ---------------------------------------------------------------------------------
    # Differentiable re-reading of known boxes (attacks)

    def refine_crops(self, frames: torch.Tensor, boxes: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """R-Net and O-Net on crops of given boxes, differentiable from the pixels.

        Each box is made square (:func:`square_boxes`) and cut by bilinear sampling
        (:func:`alignment.crop`, anti-aliased) at 24x24 and 48x48, as the cascade's last two
        stages would see the face if they were handed that box.

        Args:
            frames: ``(B, 3, H, W)`` RGB in [0, 1].
            boxes: ``(B, 4)`` one box per frame, continuous frame pixels.

        Returns:
            ``(rnet_logits (B, 2), onet_logits (B, 2), points (B, 5, 2))``, the points in
            frame pixels.
        """
        self._check(frames)
        if boxes.shape != (frames.shape[0], 4):
            raise ValueError(f"boxes must be ({frames.shape[0]}, 4), got {tuple(boxes.shape)}")
        square = square_boxes(boxes.to(device=frames.device, dtype=frames.dtype))
        regions = RegionOfInterest((square[:, :2] + square[:, 2:]) / 2,
                                   square[:, 2] - square[:, 0],
                                   square.new_zeros(square.shape[0]))
        dtype = next(self.onet.parameters()).dtype
        rnet_logits, _ = self.rnet(alignment.crop(frames, regions, RNET_SIZE).to(dtype))
        onet_logits, _, fractions = self.onet(alignment.crop(frames, regions, ONET_SIZE).to(dtype))
        points = square[:, None, :2] + fractions.to(frames.dtype) * regions.size[:, None, None]
        return rnet_logits.to(frames.dtype), onet_logits.to(frames.dtype), points


def face_margin(logits: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` logits -> "face" minus "not face" logit (``sigmoid`` of it is the face
    probability the thresholds are compared with)."""
    return logits[..., 1] - logits[..., 0]


def threshold_margin(probability: float) -> float:
    """The logit margin at which the face probability equals ``probability``."""
    return math.log(probability / (1.0 - probability))
