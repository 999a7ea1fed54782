"""S3FD: the face detector whose box FAN crops from in the talking-face pipelines.

ER-NeRF and GeneFace read 68 FAN landmarks with ``face_alignment.FaceAlignment(...,
face_detector='sfd')``: the package runs S3FD (Zhang et al. 2017, "single shot
scale-invariant face detector") on the frame and crops FAN's input around the first box it
returns. That box decides what FAN sees, so it is what an attack on those pipelines moves.
This module rebuilds the detector of ``face-alignment`` 1.4 (``detection/sfd``) in torch,
with the exact parameter names of its weights, so the real ``s3fd-619a316812.pth`` loads
with ``strict=True``.

Network (:class:`S3FD`, names as in the state dict):

- a VGG-16 trunk ``conv1_1`` .. ``conv5_3`` (3x3 convolutions, ReLU, a 2x2 max pool after
  each block), then ``fc6`` (3x3, padding 3 and, as in the package, no dilation: its map is
  4 cells larger than the 1/32 grid each way), ``fc7`` (1x1), ``conv6_1``/``conv6_2`` and
  ``conv7_1``/``conv7_2`` (1x1 then 3x3 stride 2).
- ``conv3_3_norm``, ``conv4_3_norm``, ``conv5_3_norm``: L2 normalisation over channels with
  a learnt per-channel ``weight`` (initial scales 10, 8, 5).
- six heads at strides 4, 8, 16, 32, 64, 128 (conv3_3, conv4_3, conv5_3, fc7, conv6_2,
  conv7_2), each a 3x3 ``*_mbox_conf`` (background and face logits) and ``*_mbox_loc``
  (box offsets). The stride-4 head has four conf outputs, three background ones reduced by
  their maximum ("max-out background", against the many small false positives).

Input: the network was trained on Caffe's BGR images in 0..255 less the mean (104, 117,
123). The package is handed an RGB uint8 frame by ``FaceAlignment`` and reverses its
channels itself (``batch_detect``: ``flip(-3)``), so the network does see BGR.
:class:`S3FD` takes RGB in [0, 1] and does the same: times 255 (not rounded), channels
reversed, mean subtracted. The package casts the uint8 frame to float32 instead; at inputs
that are ``k / 255`` the two agree to float rounding.

Detection (:class:`S3FDDetector`, as ``SFDDetector.detect_from_image``): the softmax of
each head's logits is the face score of a square prior box ``4 x stride`` pixels wide,
centred at ``stride / 2 + stride x cell`` on the head's own map; the priors scoring above
0.05 are decoded (centre moved by ``0.1 x size x offset``, sides scaled by
``exp(0.2 x offset)``), suppressed greedily at IoU 0.3 (inclusive pixel areas, ``+1`` per
side, as the package's ``nms``) and those above 0.5 are kept, best first. Boxes are in
frame pixels (the priors' centres follow the project's continuous coordinates: cell 0 of
stride 4 is centred at 2). FAN's crop is centred on the first box (moved up by 12% of its
height) with side ``200 x (width + height) / REFERENCE_SCALE``.

Weights: on no package registry. ``face-alignment`` downloads them on first use into
``torch.hub.get_dir()/checkpoints/``; :func:`weights_path` finds that file, or a copy the
user added with :func:`add_s3fd` (``vdf-stream models add s3fd PATH``), which is checked
first. Nothing is ever downloaded here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AssetError
from . import weights
from .mtcnn import non_max_suppression

PACKAGE_FILE = "s3fd-619a316812.pth"  # the name in face-alignment's download URL
NETWORK = "face-alignment's S3FD face detector (s3fd-619a316812.pth)"
MISSING_MESSAGE = (
    "S3FD's weights (s3fd-619a316812.pth, the face detector FAN crops from) are not here: "
    "install face-alignment (pip install face-alignment) and run it once online, which "
    "downloads them to its own cache, or add your copy with "
    "`vdf-stream models add s3fd s3fd-619a316812.pth`")

BGR_MEAN = (104.0, 117.0, 123.0)
STRIDES = (4, 8, 16, 32, 64, 128)
PRIOR_SCALE = 4  # a prior box is PRIOR_SCALE x stride pixels wide
VARIANCES = (0.1, 0.2)  # centre, size
CANDIDATE_THRESHOLD = 0.05
SUPPRESSION_THRESHOLD = 0.3
FILTER_THRESHOLD = 0.5
REFERENCE_SCALE = 195  # FAN's crop side is 200 x (box width + height) / REFERENCE_SCALE
MIN_SIZE = 32  # smaller frames leave the trunk's last pool nothing to pool


class S3fdWeightsMissing(AssetError):
    """S3FD's weights are neither added nor in face-alignment's cache."""


class L2Norm(nn.Module):
    """Each position's channel vector scaled to unit length, times a learnt ``weight`` per
    channel (initially ``scale``). Half-precision inputs are normalised in float32: their
    sum of squares overflows float16."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        work = x.to(torch.promote_types(x.dtype, torch.float32))
        norm = work.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return (work / norm * self.weight.to(work.dtype).view(1, -1, 1, 1)).to(x.dtype)


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
          padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)


class S3FD(nn.Module):
    """The detector network. Input ``(B, 3, H, W)`` RGB in [0, 1], ``H, W >= 32``.

    Returns six ``(conf, loc)`` pairs, heads at :data:`STRIDES`: ``conf (B, 2, h, w)``
    background and face logits (the stride-4 head's background already maxed out), ``loc
    (B, 4, h, w)`` the offsets of the head's prior boxes. Differentiable.
    """

    def __init__(self):
        super().__init__()
        self.conv1_1 = _conv(3, 64)
        self.conv1_2 = _conv(64, 64)
        self.conv2_1 = _conv(64, 128)
        self.conv2_2 = _conv(128, 128)
        self.conv3_1 = _conv(128, 256)
        self.conv3_2 = _conv(256, 256)
        self.conv3_3 = _conv(256, 256)
        self.conv4_1 = _conv(256, 512)
        self.conv4_2 = _conv(512, 512)
        self.conv4_3 = _conv(512, 512)
        self.conv5_1 = _conv(512, 512)
        self.conv5_2 = _conv(512, 512)
        self.conv5_3 = _conv(512, 512)
        self.fc6 = _conv(512, 1024, padding=3)
        self.fc7 = _conv(1024, 1024, kernel_size=1, padding=0)
        self.conv6_1 = _conv(1024, 256, kernel_size=1, padding=0)
        self.conv6_2 = _conv(256, 512, stride=2)
        self.conv7_1 = _conv(512, 128, kernel_size=1, padding=0)
        self.conv7_2 = _conv(128, 256, stride=2)
        self.conv3_3_norm = L2Norm(256, scale=10)
        self.conv4_3_norm = L2Norm(512, scale=8)
        self.conv5_3_norm = L2Norm(512, scale=5)
        self.conv3_3_norm_mbox_conf = _conv(256, 4)
        self.conv3_3_norm_mbox_loc = _conv(256, 4)
        self.conv4_3_norm_mbox_conf = _conv(512, 2)
        self.conv4_3_norm_mbox_loc = _conv(512, 4)
        self.conv5_3_norm_mbox_conf = _conv(512, 2)
        self.conv5_3_norm_mbox_loc = _conv(512, 4)
        self.fc7_mbox_conf = _conv(1024, 2)
        self.fc7_mbox_loc = _conv(1024, 4)
        self.conv6_2_mbox_conf = _conv(512, 2)
        self.conv6_2_mbox_loc = _conv(512, 4)
        self.conv7_2_mbox_conf = _conv(256, 2)
        self.conv7_2_mbox_loc = _conv(256, 4)
        self.register_buffer("mean", torch.tensor(BGR_MEAN).view(1, 3, 1, 1), persistent=False)

    def _block(self, x: torch.Tensor, *convs: nn.Conv2d) -> torch.Tensor:
        for conv in convs:
            x = F.relu(conv(x))
        return x

    def forward(self, images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x = images.flip(1) * 255.0 - self.mean.to(images.dtype)
        x = F.max_pool2d(self._block(x, self.conv1_1, self.conv1_2), 2, 2)
        x = F.max_pool2d(self._block(x, self.conv2_1, self.conv2_2), 2, 2)
        f3_3 = self._block(x, self.conv3_1, self.conv3_2, self.conv3_3)
        f4_3 = self._block(F.max_pool2d(f3_3, 2, 2), self.conv4_1, self.conv4_2, self.conv4_3)
        f5_3 = self._block(F.max_pool2d(f4_3, 2, 2), self.conv5_1, self.conv5_2, self.conv5_3)
        fc7 = self._block(F.max_pool2d(f5_3, 2, 2), self.fc6, self.fc7)
        f6_2 = self._block(fc7, self.conv6_1, self.conv6_2)
        f7_2 = self._block(f6_2, self.conv7_1, self.conv7_2)
        f3_3 = self.conv3_3_norm(f3_3)
        f4_3 = self.conv4_3_norm(f4_3)
        f5_3 = self.conv5_3_norm(f5_3)
        first = self.conv3_3_norm_mbox_conf(f3_3)
        background = first[:, :3].amax(dim=1, keepdim=True)
        return [
            (torch.cat([background, first[:, 3:]], dim=1), self.conv3_3_norm_mbox_loc(f3_3)),
            (self.conv4_3_norm_mbox_conf(f4_3), self.conv4_3_norm_mbox_loc(f4_3)),
            (self.conv5_3_norm_mbox_conf(f5_3), self.conv5_3_norm_mbox_loc(f5_3)),
            (self.fc7_mbox_conf(fc7), self.fc7_mbox_loc(fc7)),
            (self.conv6_2_mbox_conf(f6_2), self.conv6_2_mbox_loc(f6_2)),
            (self.conv7_2_mbox_conf(f7_2), self.conv7_2_mbox_loc(f7_2)),
        ]


def decode(heads: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The face score ``(B, P)`` and box ``(B, P, 4)`` ``(x1, y1, x2, y2)`` in frame pixels of
    every prior, heads from stride 4 up and each head's cells row by row (the package's
    order). Computed in float32 or wider whatever the network's dtype. Differentiable."""
    all_scores, all_boxes = [], []
    for (conf, loc), stride in zip(heads, STRIDES):
        dtype = torch.promote_types(conf.dtype, torch.float32)
        batch, _, height, width = conf.shape
        scores = torch.softmax(conf.to(dtype), dim=1)[:, 1].flatten(1)
        offsets = loc.to(dtype).permute(0, 2, 3, 1).reshape(batch, height * width, 4)
        ys, xs = torch.meshgrid(torch.arange(height, device=conf.device, dtype=dtype),
                                torch.arange(width, device=conf.device, dtype=dtype),
                                indexing="ij")
        centres = torch.stack([xs, ys], dim=-1).reshape(-1, 2) * stride + stride / 2
        size = float(PRIOR_SCALE * stride)
        centre = centres + offsets[..., :2] * VARIANCES[0] * size
        sides = size * torch.exp(offsets[..., 2:] * VARIANCES[1])
        corner = centre - sides / 2
        all_scores.append(scores)
        all_boxes.append(torch.cat([corner, corner + sides], dim=-1))
    return torch.cat(all_scores, dim=1), torch.cat(all_boxes, dim=1)


@dataclass
class Faces:
    """The faces S3FD finds in one frame, in the package's order (the first is the one
    ``FaceAlignment`` crops first and ER-NeRF reads).

    Attributes (``K`` faces, possibly 0):
        boxes: ``(K, 4)`` ``(x1, y1, x2, y2)`` in frame pixels.
        scores: ``(K,)`` face probabilities.
    """

    boxes: torch.Tensor
    scores: torch.Tensor

    def __len__(self) -> int:
        return self.boxes.shape[0]


class S3FDDetector:
    """Faces in RGB frames, as face-alignment's ``SFDDetector.detect_from_image`` finds them.

    Args:
        network: the detector network (:func:`load_s3fd` for the real weights).
        filter_threshold: the lowest score kept after suppression (the package's
            ``filter_threshold``, 0.5).
    """

    def __init__(self, network: S3FD, filter_threshold: float = FILTER_THRESHOLD):
        self.network = network
        self.filter_threshold = filter_threshold

    @classmethod
    def load(cls, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32) -> S3FDDetector:
        """The detector with the real weights (:func:`load_s3fd`)."""
        return cls(load_s3fd(device, dtype))

    @torch.no_grad()
    def candidates(self, frames: torch.Tensor,
                   threshold: float = CANDIDATE_THRESHOLD) -> list[Faces]:
        """Per frame, every prior scoring above ``threshold``, decoded, in the package's
        order (what its ``detect`` returns before suppression at the default 0.05).

        Args:
            frames: ``(B, 3, H, W)`` RGB in [0, 1], ``H, W >= 32``.
        """
        if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"frames must be floating-point RGB (B, 3, H, W) in [0, 1], got "
                             f"{frames.dtype} {tuple(frames.shape)}")
        if min(frames.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"S3FD needs frames of at least {MIN_SIZE}x{MIN_SIZE} pixels, got "
                             f"{frames.shape[-1]}x{frames.shape[-2]}")
        parameter = next(self.network.parameters())
        scores, boxes = decode(self.network(frames.to(parameter)))
        found = scores > threshold
        return [Faces(boxes[index][found[index]], scores[index][found[index]])
                for index in range(frames.shape[0])]

    def suppress(self, candidates: list[Faces]) -> list[Faces]:
        """The faces among each frame's candidates, best score first: suppression at IoU
        0.3, then the scores above ``filter_threshold`` (the package's ``_filter_bboxes``).

        The candidates at or below the threshold are dropped first, which keeps the same
        faces (a box is only suppressed by a better one, and those of a box at or below the
        threshold are dropped either way) and leaves fewer boxes to compare.
        """
        found = [Faces(faces.boxes[faces.scores > self.filter_threshold],
                       faces.scores[faces.scores > self.filter_threshold])
                 for faces in candidates]
        boxes = torch.cat([faces.boxes for faces in found])
        scores = torch.cat([faces.scores for faces in found])
        groups = torch.cat([torch.full((len(faces),), index, device=boxes.device)
                            for index, faces in enumerate(found)])
        kept = non_max_suppression(boxes, scores, groups, SUPPRESSION_THRESHOLD, inclusive=True)
        return [Faces(boxes[kept[groups[kept] == index]], scores[kept[groups[kept] == index]])
                for index in range(len(found))]

    def detect(self, frames: torch.Tensor) -> list[Faces]:
        """The faces of ``(B, 3, H, W)`` RGB frames in [0, 1], per frame, best score first
        (:meth:`candidates`, then :meth:`suppress`)."""
        return self.suppress(self.candidates(frames))


# -------------------------------------------------------------------------------------
# Weights


def package_cache_files() -> list[Path]:
    """Where face-alignment keeps the weights it downloads (whether or not they are there)."""
    return [Path(torch.hub.get_dir()) / "checkpoints" / PACKAGE_FILE]


def weights_path() -> Path | None:
    """The weights to load: the user's added copy, else face-alignment's download, else
    ``None``."""
    return weights.located("s3fd", package_cache_files())


def add_s3fd(path: str | os.PathLike) -> Path:
    """Verify a copy of ``s3fd-619a316812.pth`` and keep it in the cache; return the kept path.

    The file is read without running code from it (:func:`weights.read_checkpoint`), every
    parameter name and shape is checked, and the cleaned state dict is written atomically.

    Raises:
        AssetError: the file is missing, unreadable, or not S3FD's weights.
    """
    with torch.device("meta"):  # the names and shapes, without making the weights
        expected = weights.expected_shapes(S3FD())
    return weights.add("s3fd", path, expected, NETWORK)


def load_s3fd(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> S3FD:
    """The network with the real weights (:func:`weights_path`, loaded ``strict=True``), in
    eval mode, frozen, on ``device`` in ``dtype``; one copy per file, device and dtype.

    Raises:
        S3fdWeightsMissing: no weights (:data:`MISSING_MESSAGE`).
        AssetError: the file does not verify.
    """
    path = weights_path()
    if path is None:
        raise S3fdWeightsMissing(MISSING_MESSAGE)
    return weights.load_shared(S3FD, path, NETWORK, device, dtype)
