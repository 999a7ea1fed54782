"""face-api's 68-point landmark networks (FaceLandmark68Net and its tiny sibling): 68 face
landmarks from a face box, in PyTorch.

The 68 points are the iBUG 300-W layout that FAN (``face_alignment``, what ER-NeRF and its
kin read faces with) also gives: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47 (36 and 45
the outer corners), mouth 48-67. It is a second, independently trained reader of that
layout: a small depthwise-separable CNN from the TensorFlow.js world (face-api, MIT),
unlike FAN's stacked hourglasses or MediaPipe's mesh.

Weights: ``model/face_landmark_68_model.bin`` of the npm package
``@vladmandic/face-api@1.7.15``, uint8-quantised, described by
``face_landmark_68_model-weights_manifest.json`` (for each tensor, in file order: name,
shape, and ``min``/``scale``; a value is ``min + scale * byte``, as TensorFlow.js decodes
it). Tensors are stored in TensorFlow's layouts and are transposed to PyTorch's here.

Two networks of the same package read that layout (:data:`VARIANTS`):

- ``full``, ``FaceLandmark68Net`` (``face_landmark_68_model``, 357 KB): four dense blocks
  of four convolutions;
- ``tiny``, ``FaceLandmark68TinyNet`` (``face_landmark_68_tiny_model``, 75 KB): three dense
  blocks of three convolutions (32, 64, 128 channels, 112 -> 14), a 14x14 average pool.
  It is a smaller network with its own weights from the same author, not a pruned copy of
  the full one.

The full network, as the package's sources build it (``FaceFeatureExtractor`` and
``FaceLandmark68Net``; the tiny one is the same with ``TinyFaceFeatureExtractor``'s
``denseBlock3``):

- input 112x112 RGB; the package subtracts the mean colour (122.782, 117.001, 104.298) from
  values in 0-255 and divides by 255;
- four dense blocks (32, 64, 128, 256 channels), each halving the resolution
  (112 -> 56 -> 28 -> 14 -> 7): ``out1 = relu(conv0(x))`` (a plain 3x3 convolution in the
  first block, a depthwise-separable one elsewhere; stride 2), then three separable 3x3
  convolutions of stride 1, each fed the ReLU of the sum of everything before it:
  ``out2 = conv1(out1)``, ``out3 = conv2(relu(out1 + out2))``,
  ``out4 = conv3(relu(out1 + out2 + out3))``, block output ``relu(out1 + ... + out4)``;
  "separable" is a depthwise 3x3 then a pointwise 1x1 with bias; padding is TensorFlow's
  SAME (the extra row and column of a stride-2 convolution go at the bottom and right);
- a 7x7 average pool (stride 2, valid) to 256 values, a dense layer to 136: ``(x, y)`` of
  the 68 points as fractions of the input square.

How face-api reads a face: it cuts the detector's box out of the frame, pads it with black
to a centred square, resizes that to 112x112 and maps the points back to the box.
:func:`crop_box` does the same, differentiably; the points in the square map back to the
frame through the square alone (the padding removal of face-api's ``postProcess`` is that
same map).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import alignment, shared
from .alignment import RegionOfInterest

INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
POINT_COUNT = 68
RIGHT_EYE_OUTER = 36  # the person's right eye, on the image left
LEFT_EYE_OUTER = 45
_QUANTISED_TYPES = {"uint8": np.uint8, "uint16": np.uint16}


@dataclass(frozen=True)
class Variant:
    """One of face-api's 68-point networks: its pinned files and its shape."""

    name: str
    weights_asset: str
    manifest_asset: str
    block_channels: tuple[int, ...]
    convs_per_block: int
    pool: int  # the final average pool's window (stride 2, valid) down to 1x1


VARIANTS = {
    "full": Variant("full", "face_landmark_68_model.bin",
                    "face_landmark_68_model-weights_manifest.json", (32, 64, 128, 256), 4, 7),
    "tiny": Variant("tiny", "face_landmark_68_tiny_model.bin",
                    "face_landmark_68_tiny_model-weights_manifest.json", (32, 64, 128), 3, 14),
}
WEIGHTS_ASSET = VARIANTS["full"].weights_asset
MANIFEST_ASSET = VARIANTS["full"].manifest_asset


def variant_of(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown face-api landmark network {name!r}; known: "
                         f"{', '.join(VARIANTS)}")
    return VARIANTS[name]


def _same_padding(images: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's SAME padding for a square kernel: the odd pixel goes bottom and right."""
    padding = []
    for size in (images.shape[-1], images.shape[-2]):  # F.pad lists the last axis first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        padding += [total // 2, total - total // 2]
    return F.pad(images, padding)


class SeparableConv(nn.Module):
    """Depthwise 3x3 (stride 1 or 2, SAME) then pointwise 1x1 with bias."""

    def __init__(self, channels_in: int, channels_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(channels_in, channels_in, 3, stride, groups=channels_in,
                                   bias=False)
        self.pointwise = nn.Conv2d(channels_in, channels_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(_same_padding(x, 3, self.stride)))


class PlainConv(nn.Module):
    """3x3 convolution with bias, stride 2, SAME padding (the first block's entry)."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_same_padding(x, 3, 2))


class DenseBlock(nn.Module):
    """Four (or three) convolutions, each fed the sum of the earlier ones' outputs (see the
    module docstring); halves the resolution."""

    def __init__(self, channels_in: int, channels_out: int, first: bool, convs: int = 4):
        super().__init__()
        self.conv0 = (PlainConv(channels_in, channels_out) if first
                      else SeparableConv(channels_in, channels_out, 2))
        self.later = [f"conv{index}" for index in range(1, convs)]
        for name in self.later:
            setattr(self, name, SeparableConv(channels_out, channels_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = torch.relu(self.conv0(x))
        for conv in (getattr(self, name) for name in self.later):
            # conv1 reads out1 itself: relu(out1) is out1
            total = total + conv(torch.relu(total))
        return torch.relu(total)


class FaceLandmark68Net(nn.Module):
    """The landmark network (``variant``: ``"full"`` or ``"tiny"``). Input
    ``(B, 3, 112, 112)`` RGB in [0, 1]; output ``(B, 68, 2)`` ``(x, y)`` as fractions of the
    input square (0 at its left or top edge, 1 at the other)."""

    def __init__(self, variant: str = "full"):
        super().__init__()
        self.variant = variant_of(variant)
        widths = self.variant.block_channels
        channels = (3, *widths)
        self.blocks = nn.ModuleList(
            DenseBlock(channels[i], channels[i + 1], first=i == 0,
                       convs=self.variant.convs_per_block)
            for i in range(len(widths)))
        self.fc = nn.Linear(widths[-1], 2 * POINT_COUNT)
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1) / 255,
                             persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"FaceLandmark68Net expects (B, 3, {INPUT_SIZE}, {INPUT_SIZE}) "
                             f"images in [0, 1], got {tuple(images.shape)}")
        x = images.to(self.fc.weight.dtype) - self.mean.to(self.fc.weight.dtype)
        for block in self.blocks:
            x = block(x)
        x = F.avg_pool2d(x, self.variant.pool, 2).flatten(1)
        return self.fc(x).unflatten(1, (POINT_COUNT, 2))


# -------------------------------------------------------------------------------------
# Weights


def read_manifest_weights(manifest_path: Path, resolve=None) -> dict[str, np.ndarray]:
    """The tensors a TensorFlow.js weights manifest describes, de-quantised to float32.

    Args:
        manifest_path: the ``*-weights_manifest.json`` file.
        resolve: maps a shard name of the manifest's ``paths`` to a local file; by default
            the file beside the manifest.

    Returns:
        name -> array in TensorFlow's layout (shape as the manifest states it).

    Raises:
        ValueError: a shard holds fewer or more bytes than its tensors need, or a type is
            not one TensorFlow.js writes for these models.
    """
    resolve = resolve or (lambda name: manifest_path.parent / name)
    weights: dict[str, np.ndarray] = {}
    for group in json.loads(Path(manifest_path).read_text()):
        data = b"".join(Path(resolve(name)).read_bytes() for name in group["paths"])
        offset = 0
        for entry in group["weights"]:
            count = int(np.prod(entry["shape"], dtype=np.int64))
            quantisation = entry.get("quantization")
            if quantisation is not None:
                kind = quantisation["dtype"]
                if kind not in _QUANTISED_TYPES or "scale" not in quantisation:
                    raise ValueError(f"{entry['name']}: unsupported quantisation {kind}")
                stored = np.dtype(_QUANTISED_TYPES[kind]).newbyteorder("<")
            elif entry["dtype"] == "float32":
                stored = np.dtype("<f4")
            else:
                raise ValueError(f"{entry['name']}: unsupported type {entry['dtype']}")
            if offset + count * stored.itemsize > len(data):
                raise ValueError(f"{entry['name']} ends past the {len(data)} bytes of "
                                 f"{', '.join(group['paths'])}")
            values = np.frombuffer(data, stored, count, offset)
            if quantisation is not None:
                # TensorFlow.js: value = byte * scale + min, computed in double, kept in float32
                values = values.astype(np.float64) * quantisation["scale"] + quantisation["min"]
            values = values.astype(np.float32)
            offset += count * stored.itemsize
            weights[entry["name"]] = values.reshape(entry["shape"])
        if offset != len(data):
            raise ValueError(f"{manifest_path.name}: the tensors take {offset} bytes, the "
                             f"files hold {len(data)}")
    return weights


def _state_dict(weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """TensorFlow-named, TensorFlow-laid-out tensors -> this module's state dict."""
    state = {}
    for name, value in weights.items():
        tensor = torch.from_numpy(value.copy())
        scope, _, kind = name.rpartition("/")
        if scope == "fc":
            state[f"fc.{'weight' if kind == 'weights' else 'bias'}"] = (
                tensor.T if kind == "weights" else tensor)
            continue
        block, conv = scope.split("/")
        prefix = f"blocks.{int(block.removeprefix('dense'))}.{conv}"
        if kind == "filters":  # (kh, kw, in, out) -> (out, in, kh, kw)
            state[f"{prefix}.conv.weight"] = tensor.permute(3, 2, 0, 1)
        elif kind == "depthwise_filter":  # (kh, kw, channels, 1) -> (channels, 1, kh, kw)
            state[f"{prefix}.depthwise.weight"] = tensor.permute(2, 3, 0, 1)
        elif kind == "pointwise_filter":  # (1, 1, in, out) -> (out, in, 1, 1)
            state[f"{prefix}.pointwise.weight"] = tensor.permute(3, 2, 0, 1)
        elif kind == "bias":
            plain = block == "dense0" and conv == "conv0"
            state[f"{prefix}.{'conv' if plain else 'pointwise'}.bias"] = tensor
        else:
            raise ValueError(f"unexpected tensor {name}")
    return state


def build(variant: str = "full") -> FaceLandmark68Net:
    """A new float32 CPU network with the pinned weights (fetched on first use).

    Raises:
        AssetError: a file cannot be fetched, or does not hold this network's tensors.
    """
    from .. import assets
    from ..errors import AssetError

    network = FaceLandmark68Net(variant)
    manifest_name = network.variant.manifest_asset
    manifest = assets.fetch(manifest_name)
    try:
        # shard names must be pinned assets: nothing else is ever read
        weights = read_manifest_weights(manifest, resolve=assets.fetch)
        network.load_state_dict(_state_dict(weights), strict=True)
    except (ValueError, RuntimeError) as error:
        raise AssetError(f"{manifest_name} does not describe face-api's {variant} 68-point "
                         f"network: {error}") from None
    return network


def load(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
         variant: str = "full") -> FaceLandmark68Net:
    """The shared, frozen network on ``device`` in ``dtype`` (built once per process)."""
    return shared.frozen(build, device, dtype, variant_of(variant).name)


# -------------------------------------------------------------------------------------
# Reading faces from boxes


def box_squares(boxes: torch.Tensor) -> RegionOfInterest:
    """Upright squares centred on ``(B, 4)`` boxes, side the longer box side: the square
    face-api pads a box to."""
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be (B, 4), got {tuple(boxes.shape)}")
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=-1)
    return RegionOfInterest(centre, side, torch.zeros_like(side))


def crop_box(frames: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, RegionOfInterest]:
    """face-api's input for each box, differentiably: ``(crops (B, 3, 112, 112), squares)``.

    The box's pixels, black outside the box within its square (face-api pads the cut-out
    box with zeros), resampled bilinearly (anti-aliased) to 112x112.
    """
    boxes = boxes.to(device=frames.device, dtype=frames.dtype)
    squares = box_squares(boxes)
    crops = alignment.crop(frames, squares, INPUT_SIZE)
    # crop pixel centres in frame coordinates: left/top edge + (i + 0.5) * side / 112
    steps = (torch.arange(INPUT_SIZE, device=frames.device, dtype=frames.dtype) + 0.5) / INPUT_SIZE
    start = squares.center - squares.size[:, None] / 2
    x = start[:, 0, None] + steps * squares.size[:, None]
    y = start[:, 1, None] + steps * squares.size[:, None]
    inside_x = (x >= boxes[:, 0, None]) & (x <= boxes[:, 2, None])
    inside_y = (y >= boxes[:, 1, None]) & (y <= boxes[:, 3, None])
    mask = (inside_y[:, :, None] & inside_x[:, None, :]).unsqueeze(1).to(frames.dtype)
    return crops * mask, squares


class FaceApiLandmarker(nn.Module):
    """68 landmarks of the faces in given boxes, in frame pixels, differentiable from the
    pixels (for fixed boxes).

    Args:
        device, dtype: where the network runs; frames must be on ``device``.
        variant: ``"full"`` (FaceLandmark68Net) or ``"tiny"`` (FaceLandmark68TinyNet).
    """

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 variant: str = "full"):
        super().__init__()
        self.network = load(device, dtype, variant)

    def forward(self, frames: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """``(B, 68, 2)`` points for ``(B, 3, H, W)`` RGB frames in [0, 1] and ``(B, 4)``
        face boxes ``(x_min, y_min, x_max, y_max)`` in frame pixels."""
        if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"frames must be floating-point RGB (B, 3, H, W) in [0, 1], got "
                             f"{frames.dtype} {tuple(frames.shape)}")
        if boxes.shape != (frames.shape[0], 4):
            raise ValueError(f"boxes must be ({frames.shape[0]}, 4), got {tuple(boxes.shape)}")
        crops, squares = crop_box(frames, boxes)
        fractions = self.network(crops).to(frames.dtype)
        return alignment.crop_points_to_frame(fractions * INPUT_SIZE, squares, INPUT_SIZE)
