"""BiSeNet face parser (19 CelebAMask-HQ classes), as the talking-face pipelines use it.

ER-NeRF, RAD-NeRF, AD-NeRF, GeneFace and their successors parse every training frame with
the BiSeNet of the face-parsing.PyTorch project and its checkpoint ``79999_iter.pth``, then
merge the 19 classes into head / neck / torso / background masks. This module rebuilds that
network with the checkpoint's exact module and parameter names, so the real checkpoint
loads with ``strict=True``, and implements the class merge.

Architecture (names as in the checkpoint):

- ``cp`` context path: ``cp.resnet`` a ResNet-18 trunk (``conv1``, ``bn1``, max pool,
  ``layer1`` .. ``layer4`` of two basic blocks each, ``downsample`` 1x1 conv + BN where the
  shape changes) giving features at 1/8, 1/16 and 1/32; attention refinement modules
  ``cp.arm16`` (256 -> 128) and ``cp.arm32`` (512 -> 128) (3x3 conv-BN-ReLU, then a
  channel attention from the global mean: 1x1 conv, BN, sigmoid); the global context
  ``cp.conv_avg`` (1x1 conv-BN-ReLU of the 1/32 mean); ``cp.conv_head32`` and
  ``cp.conv_head16`` (3x3 conv-BN-ReLU after nearest 2x upsampling).
- spatial path: the checkpoint has none. The project replaced BiSeNet's spatial path by
  the ResNet's 1/8 feature (``layer2``); so does this module.
- ``ffm`` feature fusion: concatenation (128 + 128), ``convblk`` 1x1 conv-BN-ReLU to 256,
  squeeze-excitation attention ``conv1`` (256 -> 64), ReLU, ``conv2`` (64 -> 256),
  sigmoid, ``feature * attention + feature``.
- heads ``conv_out`` (256 -> 256 -> 19), ``conv_out16`` and ``conv_out32`` (128 -> 64 ->
  19, auxiliary, training only): 3x3 conv-BN-ReLU then a 1x1 conv; logits upsampled
  bilinearly (``align_corners=True``) to the input size.

Input: the pipelines resize the frame to 512x512 (bilinear) and normalise with the
ImageNet mean and deviation; :class:`BiSeNet` takes RGB in [0, 1] and normalises itself
(the constants are non-persistent buffers, outside the state dict); :func:`parse` also does
the resizing.

The checkpoint is not on any package registry: a user downloads it and registers it once
with :func:`add_bisenet`, which verifies every parameter name and shape and keeps a copy in
the cache (``cache_dir()/models/bisenet_79999_iter.pth``); :func:`load_bisenet` loads it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..assets import BISENET_FILE as CACHE_NAME  # noqa: F401  (its name in the cache)
from ..errors import AssetError
from . import weights

CLASS_COUNT = 19
INPUT_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# CelebAMask-HQ labels in the checkpoint's output order ("l_" = the person's left).
CLASS_NAMES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
    "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)

# The merge of ER-NeRF's (and AD-NeRF's, RAD-NeRF's) face_parsing/test.py: classes 1-13
# and 17-18 are the head (face parts, ears, earrings, glasses, hair, hat), 14-15 the neck
# (with a necklace), 16 the torso (cloth), 0 the background.
REGION_NAMES = ("background", "head", "neck", "torso")
BACKGROUND, HEAD, NECK, TORSO = range(4)
CLASS_TO_REGION = (
    BACKGROUND,
    HEAD, HEAD, HEAD, HEAD, HEAD, HEAD, HEAD, HEAD, HEAD, HEAD, HEAD, HEAD, HEAD,  # 1-13
    NECK, NECK,  # 14-15
    TORSO,  # 16
    HEAD, HEAD,  # 17-18
)


class ConvBNReLU(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(BasicBlock(in_channels, out_channels, stride),
                         BasicBlock(out_channels, out_channels, 1))


class ResNet18(nn.Module):
    """The trunk: features at 1/8 (128 channels), 1/16 (256) and 1/32 (512)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _stage(64, 64, 1)
        self.layer2 = _stage(64, 128, 2)
        self.layer3 = _stage(128, 256, 2)
        self.layer4 = _stage(256, 512, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        eighth = self.layer2(self.layer1(x))
        sixteenth = self.layer3(eighth)
        return eighth, sixteenth, self.layer4(sixteenth)


class AttentionRefinementModule(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, 3, 1, 1)
        self.conv_atten = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(feature.mean((2, 3), keepdim=True))))
        return feature * attention


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_head16 = ConvBNReLU(128, 128, 3, 1, 1)
        self.conv_avg = ConvBNReLU(512, 128, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        eighth, sixteenth, thirty_second = self.resnet(x)
        context = self.conv_avg(thirty_second.mean((2, 3), keepdim=True))  # broadcast = nearest
        up32 = F.interpolate(self.arm32(thirty_second) + context, size=sixteenth.shape[-2:],
                             mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(sixteenth) + up32, size=eighth.shape[-2:], mode="nearest")
        up16 = self.conv_head16(up16)
        return eighth, up16, up32  # 1/8, 1/8, 1/16


class FeatureFusionModule(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, 1, 1, 0)
        self.conv1 = nn.Conv2d(out_channels, out_channels // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_channels // 4, out_channels, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feature = self.convblk(torch.cat([spatial, context], dim=1))
        attention = feature.mean((2, 3), keepdim=True)
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(attention))))
        return feature * attention + feature


class BiSeNetOutput(nn.Module):
    def __init__(self, in_channels: int, mid_channels: int, classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, 3, 1, 1)
        self.conv_out = nn.Conv2d(mid_channels, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """The face parser. Input ``(B, 3, H, W)`` RGB in [0, 1] (H, W multiples of 32; the
    pipelines use 512x512); output ``(B, 19, H, W)`` class logits.

    Call :meth:`eval` before use (batch-norm statistics); :func:`load_bisenet` does.
    """

    def __init__(self, classes: int = CLASS_COUNT):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, classes)
        self.conv_out16 = BiSeNetOutput(128, 64, classes)
        self.conv_out32 = BiSeNetOutput(128, 64, classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, auxiliary: bool = False):
        """Logits ``(B, 19, H, W)``; with ``auxiliary`` also the two training heads' logits."""
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"images must be floating-point RGB (B, 3, H, W) in [0, 1], got "
                             f"{images.dtype} {tuple(images.shape)}")
        size = images.shape[-2:]
        x = (images.to(self.mean.dtype) - self.mean) / self.std
        eighth, context8, context16 = self.cp(x)
        logits = self._upsample(self.conv_out(self.ffm(eighth, context8)), size)
        if not auxiliary:
            return logits
        return (logits, self._upsample(self.conv_out16(context8), size),
                self._upsample(self.conv_out32(context16), size))

    @staticmethod
    def _upsample(logits: torch.Tensor, size) -> torch.Tensor:
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=True)


def parse(model: BiSeNet, frames: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Class logits at frame size for ``(B, 3, H, W)`` frames in [0, 1], as the pipelines
    run it: the frame resized to ``size`` x ``size`` (bilinear, anti-aliased), parsed, and
    the logits resized back (bilinear). Differentiable."""
    height, width = frames.shape[-2:]
    resized = frames
    if (height, width) != (size, size):
        resized = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False,
                                antialias=True)
    logits = model(resized)
    if (height, width) != (size, size):
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    return logits


def _region_index(like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(CLASS_TO_REGION, device=like.device)


def region_logits(class_logits: torch.Tensor) -> torch.Tensor:
    """``(B, 19, H, W)`` class logits -> ``(B, 4, H, W)`` region logits (log-sum-exp of each
    region's classes: their softmax is the regions' summed class probabilities). Regions in
    :data:`REGION_NAMES` order: background, head, neck, torso. Differentiable."""
    if class_logits.dim() != 4 or class_logits.shape[1] != CLASS_COUNT:
        raise ValueError(f"class logits must be (B, {CLASS_COUNT}, H, W), got {tuple(class_logits.shape)}")
    index = _region_index(class_logits)
    return torch.stack([class_logits[:, index == region].logsumexp(dim=1)
                        for region in range(len(REGION_NAMES))], dim=1)


def region_probabilities(class_logits: torch.Tensor) -> torch.Tensor:
    """``(B, 4, H, W)`` probabilities of background, head, neck, torso (sum to 1)."""
    return torch.softmax(region_logits(class_logits), dim=1)


def region_labels(class_logits: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` int64 region of each pixel as the pipelines decide it: the arg-max
    class, then its region (0 background, 1 head, 2 neck, 3 torso)."""
    if class_logits.dim() != 4 or class_logits.shape[1] != CLASS_COUNT:
        raise ValueError(f"class logits must be (B, {CLASS_COUNT}, H, W), got {tuple(class_logits.shape)}")
    return _region_index(class_logits)[class_logits.argmax(dim=1)]


def region_masks(class_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Boolean ``(B, H, W)`` masks by region name (from :func:`region_labels`)."""
    labels = region_labels(class_logits)
    return {name: labels == index for index, name in enumerate(REGION_NAMES)}


def expected_state_shapes(classes: int = CLASS_COUNT) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the checkpoint and its shape (built without weights)."""
    with torch.device("meta"):
        model = BiSeNet(classes)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


NETWORK = "the face-parsing.PyTorch BiSeNet checkpoint (79999_iter.pth, 19 classes)"
# What a user is told when the checkpoint is asked for and not added.
MISSING_MESSAGE = (
    "BiSeNet's checkpoint (79999_iter.pth) is not added: download it from the "
    "face-parsing.PyTorch project, then run `vdf-stream models add bisenet 79999_iter.pth`")


def verify_state_dict(state: object, source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """Check a loaded BiSeNet state dict; return it cleaned
    (:func:`vdf_stream.models.weights.verify_state_dict`).

    Raises:
        AssetError: not a state dict, or a key missing, unexpected or of the wrong shape.
    """
    if not isinstance(state, Mapping):
        raise AssetError(f"{source} is not a BiSeNet state dict (a mapping of parameter names "
                         f"to tensors); it holds a {type(state).__name__}")
    return weights.verify_state_dict(state, expected_state_shapes(), NETWORK, source)


def cached_path() -> Path:
    """Where the registered checkpoint is kept (whether or not it is there)."""
    from ..assets import bisenet_path

    return bisenet_path()


def add_bisenet(path: str | os.PathLike) -> Path:
    """Verify a downloaded ``79999_iter.pth`` and keep it in the cache; return the cached path.

    The file is read without running code from it (:func:`weights.read_checkpoint`), every
    expected parameter name and shape is checked, and the cleaned state dict is written
    atomically to :func:`cached_path`.

    Raises:
        AssetError: the file is missing, unreadable, or not this network's checkpoint.
    """
    source = Path(path).expanduser()
    return weights.keep(verify_state_dict(weights.read_checkpoint(source), str(source)),
                        cached_path())


def load_bisenet(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 path: str | os.PathLike | None = None) -> BiSeNet:
    """The face parser with the registered checkpoint (or ``path``), eval mode, frozen.

    Raises:
        AssetError: no checkpoint registered (:data:`MISSING_MESSAGE`), or the file does not
            verify.
    """
    source = Path(path).expanduser() if path is not None else cached_path()
    if path is None and not source.is_file():
        raise AssetError(MISSING_MESSAGE)
    state = verify_state_dict(weights.read_checkpoint(source), source=str(source))
    model = BiSeNet()
    model.load_state_dict(state, strict=True)
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    return model
