"""The MediaPipe face models as differentiable PyTorch modules, with their real weights.

``load(name, device, dtype)`` returns a shared module (built once per process, eval mode,
parameters frozen). Every module takes RGB images ``(B, 3, S, S)``, float, values in
``[0, 1]``, at the model's own input size ``S``, applies the model's input normalisation
itself, and returns a ``NamedTuple`` of tensors in the module's dtype:

==================== ===== ========== =====================================================
name                 S     input      outputs
==================== ===== ========== =====================================================
face_detection       128   [-1, 1]    regressors (B, 896, 16), scores (B, 896, 1) logits
face_landmark        192   [0, 1]     landmarks (B, 468, 3) input pixels, presence (B,) logit
iris_landmark        64    [0, 1]     eye_contour (B, 71, 3), iris (B, 5, 3) input pixels
selfie_segmentation  256   [0, 1]     mask (B, 1, 256, 256) probability, logits (same shape)
==================== ===== ========== =====================================================

The "input" column is the range the network itself was trained on, as MediaPipe 0.10.9's
graphs feed it (detector: ``output_tensor_float_range {-1, 1}`` in its FaceDetection
graph; landmarks and selfie segmentation: ``{0, 1}``; iris: ``zero_center: false``), read
from the graphs inside that wheel. (Trying both ranges on real crops does not settle it:
all four networks give nearly the same answers either way.) The modules map ``[0, 1]`` to
it; callers always pass ``[0, 1]``.

The models are the ``.tflite`` files of the pinned ``mediapipe==0.10.9`` wheel
(:mod:`vdf_stream.assets`), converted by :mod:`vdf_stream.models.tflite` each time a
process first asks for them (about 0.1 s each; nothing converted is written to disk).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import nn

from . import shared
from .tflite import TFLiteModule, read_graph

MODEL_NAMES = ("face_detection", "face_landmark", "iris_landmark", "selfie_segmentation")


class FaceDetectionOutput(NamedTuple):
    """Raw BlazeFace (short range) outputs for 896 anchors.

    regressors: ``(B, 896, 16)``, pixels of the 128 x 128 input, relative to the anchor
        centre: box centre offset x, y, box width, height, then 6 keypoints x, y (the
        person's right eye, left eye, nose tip, mouth centre, right ear tragion, left ear
        tragion). :mod:`vdf_stream.models.detection` has the anchors and the decoding.
    scores: ``(B, 896, 1)`` logits, unbounded; ``sigmoid`` gives the face probability
        (MediaPipe clips the logits to [-100, 100] and keeps anchors with probability
        >= 0.5 before non-maximum suppression).
    """

    regressors: torch.Tensor
    scores: torch.Tensor


class FaceLandmarkOutput(NamedTuple):
    """Face mesh outputs.

    landmarks: ``(B, 468, 3)``: x, y in pixels of the 192 x 192 input (x / 192 = 0 at the
        left edge, 1 at the right edge; y likewise from the top), z relative depth in the
        same pixel scale (smaller is nearer the camera, roughly centred on the face).
    presence: ``(B,)`` face presence logit; ``sigmoid`` gives the probability (MediaPipe
        drops a face under 0.5 when tracking).
    """

    landmarks: torch.Tensor
    presence: torch.Tensor


class IrisLandmarkOutput(NamedTuple):
    """Iris model outputs for a LEFT-eye crop (flip a right-eye crop horizontally first).

    eye_contour: ``(B, 71, 3)``: eye contour and brow points, x, y in pixels of the
        64 x 64 input, z relative depth in the same scale.
    iris: ``(B, 5, 3)``: iris centre then 4 points on the iris boundary, same units.
    """

    eye_contour: torch.Tensor
    iris: torch.Tensor


class SelfieSegmentationOutput(NamedTuple):
    """Person segmentation.

    mask: ``(B, 1, 256, 256)`` person probability in [0, 1].
    logits: ``(B, 1, 256, 256)`` the same before the sigmoid (better for losses).
    """

    mask: torch.Tensor
    logits: torch.Tensor


class _ImageModel(nn.Module):
    """Shared input checking and normalisation around a converted graph."""

    input_size: int
    input_range: tuple[float, float]

    def __init__(self, graph: TFLiteModule):
        super().__init__()
        self.graph = graph

    @property
    def dtype(self) -> torch.dtype:
        return self.graph.dtype

    def _network_input(self, images: torch.Tensor) -> torch.Tensor:
        """Check ``images`` and map [0, 1] to the network's own input range."""
        size = self.input_size
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
            raise ValueError(
                f"{type(self).__name__} expects images of shape (B, 3, {size}, {size}), "
                f"got {tuple(images.shape)}"
            )
        if not torch.is_floating_point(images):
            raise TypeError(
                f"{type(self).__name__} expects float images in [0, 1], got {images.dtype}"
            )
        parameter = next(self.graph.parameters())
        if images.device != parameter.device:
            raise ValueError(
                f"images are on {images.device}, the {type(self).__name__} model is on "
                f"{parameter.device}"
            )
        low, high = self.input_range
        images = images.to(parameter.dtype)
        if (low, high) == (0.0, 1.0):
            return images
        return images * (high - low) + low


class FaceDetector(_ImageModel):
    """BlazeFace short range. Input: ``(B, 3, 128, 128)`` RGB in [0, 1] (MediaPipe
    letterboxes the whole frame to 128 x 128 with black bars). Output:
    :class:`FaceDetectionOutput`."""

    input_size = 128
    input_range = (-1.0, 1.0)

    def forward(self, images: torch.Tensor) -> FaceDetectionOutput:
        regressors, scores = self.graph(self._network_input(images))
        return FaceDetectionOutput(regressors, scores)


class FaceLandmarker(_ImageModel):
    """468-point face mesh. Input: ``(B, 3, 192, 192)`` RGB in [0, 1], a face crop (MediaPipe
    crops a square around the face, 1.5 x the detection box, rotated upright). Output:
    :class:`FaceLandmarkOutput`."""

    input_size = 192
    input_range = (0.0, 1.0)

    def forward(self, images: torch.Tensor) -> FaceLandmarkOutput:
        landmarks, presence = self.graph(self._network_input(images))
        batch = landmarks.shape[0]
        return FaceLandmarkOutput(landmarks.reshape(batch, 468, 3), presence.reshape(batch))


class IrisLandmarker(_ImageModel):
    """Iris and eye contour. Input: ``(B, 3, 64, 64)`` RGB in [0, 1], a crop around a left
    eye (MediaPipe: a square 2.3 x the eye width; a right eye is flipped horizontally and the
    x outputs flipped back). Output: :class:`IrisLandmarkOutput`."""

    input_size = 64
    input_range = (0.0, 1.0)

    def forward(self, images: torch.Tensor) -> IrisLandmarkOutput:
        contour, iris = self.graph(self._network_input(images))
        batch = contour.shape[0]
        return IrisLandmarkOutput(contour.reshape(batch, 71, 3), iris.reshape(batch, 5, 3))


class SelfieSegmenter(_ImageModel):
    """Selfie (person) segmentation, square model. Input: ``(B, 3, 256, 256)`` RGB in
    [0, 1] (MediaPipe stretches the frame to 256 x 256). Output:
    :class:`SelfieSegmentationOutput`."""

    input_size = 256
    input_range = (0.0, 1.0)

    def forward(self, images: torch.Tensor) -> SelfieSegmentationOutput:
        (logits,) = self.graph(self._network_input(images))
        return SelfieSegmentationOutput(torch.sigmoid(logits), logits)


_MODELS: dict[str, tuple[str, type[_ImageModel]]] = {
    "face_detection": ("face_detection_short_range.tflite", FaceDetector),
    "face_landmark": ("face_landmark.tflite", FaceLandmarker),
    "iris_landmark": ("iris_landmark.tflite", IrisLandmarker),
    "selfie_segmentation": ("selfie_segmentation.tflite", SelfieSegmenter),
}


def build(name: str) -> _ImageModel:
    """A new, unshared float32 CPU module for model ``name`` (trainable parameters).

    Fetches the model file on first use (see :func:`vdf_stream.assets.fetch`).

    Raises:
        ValueError: unknown name.
        AssetError: the file cannot be fetched or converted.
    """
    from .. import assets

    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    asset, wrapper = _MODELS[name]
    spec = read_graph(assets.fetch(asset))
    outputs = None
    if wrapper is SelfieSegmenter:
        # Return the logits feeding the final LOGISTIC; the wrapper applies the sigmoid.
        final = next(op for op in spec.operators if op.outputs[0] == spec.outputs[0])
        if final.kind != "LOGISTIC":
            raise AssertionError(f"selfie segmentation ends in {final.kind}, not LOGISTIC")
        outputs = [spec.tensors[final.inputs[0]].name]
    return wrapper(TFLiteModule(spec, outputs=outputs))


def load(
    name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> _ImageModel:
    """The shared module for model ``name`` on ``device`` in ``dtype``.

    Built once per process and per (name, device, dtype), then reused: eval mode,
    ``requires_grad`` False on every parameter (gradients still flow to the input images).
    Do not modify it; use :func:`build` for a private copy.

    Args:
        name: one of ``MODEL_NAMES``.
        device: where the weights live; inputs must be on the same device.
        dtype: ``torch.float32`` or ``torch.bfloat16`` (or float16 on CUDA); inputs are
            cast to it and outputs come in it.
    """
    return _load_cached(name, shared.canonical_device(device), dtype)


@functools.lru_cache(maxsize=None)
def _load_cached(name: str, device: torch.device, dtype: torch.dtype) -> _ImageModel:
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point type, got {dtype}")
    module = build(name).to(device=device, dtype=dtype).eval()
    module.requires_grad_(False)
    if device.type == "cpu":
        channels_last(module)
    return module


def channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Store the module's 4-D weights channels-last (NHWC in memory; shapes and values
    unchanged), in place. On the CPU, oneDNN's convolutions then run channels-last: the
    face mesh's forward + backward on 2 threads took 25 ms NCHW and 16 ms so (inputs may
    stay NCHW)."""
    for child in module.modules():
        for table in (child._parameters, child._buffers):
            for name, tensor in table.items():
                if tensor is not None and tensor.dim() == 4:
                    tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module


# Anchor grids of the face detector: SSD layers of strides 8, 16, 16, 16 on the 128 x 128
# input; layers of equal stride share one grid: 16 x 16 cells x 2 anchors, 8 x 8 cells x 6.
_DETECTION_GRIDS = ((16, 2), (8, 6))


def face_detection_anchors(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Anchor centres of the face detector, ``(896, 2)`` as (x, y) in [0, 1] of its input,
    in the order of its outputs (cells row by row, the anchors of a cell together).

    Kept next to the model as an independent statement of its layout; the decoding that
    uses anchors lives in :mod:`vdf_stream.models.detection`, whose tests check its own
    anchors against these.
    """
    centres = []
    for grid, per_cell in _DETECTION_GRIDS:
        steps = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
        y, x = torch.meshgrid(steps, steps, indexing="ij")
        cells = torch.stack([x, y], dim=-1).reshape(-1, 2)
        centres.append(cells.repeat_interleave(per_cell, dim=0))
    return torch.cat(centres).to(device=device, dtype=dtype)
