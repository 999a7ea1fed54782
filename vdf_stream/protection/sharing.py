"""Similarity-guided parameter sharing: a rolling window of keyframes and the decision, for
each new frame, to reuse, refine or start a keyframe.

Consecutive video frames are alike, so the parameters optimised for one frame protect its
neighbours too (VDF shares them by SSIM). Here every frame gets a cheap descriptor:

* ``face``: a 32 x 32 luma patch cut in the frame's face-aligned region (the same region
  the parameters are aligned to), zero mean and unit norm;
* ``scene``: a 16 x 9 luma thumbnail of the whole frame, zero mean and unit norm;
* the region itself (centre, size, angle) and whether a face was found.

:func:`similarity` of two descriptors is the smaller of the normalised cross-correlations
of their face patches and of their thumbnails, times a penalty for a change of face size
(``min(s1, s2) / max(s1, s2)``) and of the region's angle (``cos``); 0 when one frame has
a face and the other none. Because the parameters live in the face's frame, a head that
moves but keeps its look keeps a high similarity.

:meth:`KeyframeWindow.decide` compares a frame with the keyframes of the window:

* similarity >= ``tau_reuse`` (0.995): apply the nearest keyframe's parameters, no optimisation;
* ``tau_refine`` (0.90) <= similarity < ``tau_reuse``: warm-start from them and refine
  ``refine_steps`` (10); the refined parameters are used for this frame and, with ``track``
  (the filter's default), replace the keyframe's together with this frame's descriptor
  (:meth:`KeyframeWindow.update`): the keyframe follows the face, so the refinements of
  consecutive frames add up instead of each restarting from the keyframe's parameters;
  without ``track`` they are not kept;
* below ``tau_refine``: a new keyframe, warm-started from the nearest keyframe's parameters
  scaled by the similarity (VDF's rule; zeros when the window is empty), full
  ``keyframe_steps``; it enters the window (the oldest leaves when full).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..models import alignment
from ..media.pixels import luma as _luma
from ..models.alignment import RegionOfInterest
from .perturb import PerturbParams

PATCH_SIZE = 32
THUMBNAIL_SIZE = (9, 16)  # (height, width)

REUSE = "reuse"
REFINE = "refine"
NEW = "new"


@dataclass
class Descriptor:
    face: torch.Tensor | None   # (PATCH_SIZE * PATCH_SIZE,) or None without a face
    scene: torch.Tensor         # (9 * 16,)
    region: RegionOfInterest | None
    index: int = -1


def _normalise(values: torch.Tensor) -> torch.Tensor:
    values = values.flatten().float()
    values = values - values.mean()
    return values / values.norm().clamp_min(1e-6)


@torch.no_grad()
def describe(frame: torch.Tensor, region: RegionOfInterest | None, found: bool,
             index: int = -1) -> Descriptor:
    """Descriptor of one frame ``(1, 3, H, W)`` in [0, 1] and its face region."""
    if frame.dim() != 4 or frame.shape[0] != 1:
        raise ValueError(f"describe takes one frame (1, 3, H, W), got {tuple(frame.shape)}")
    luma = _luma(frame.float())
    scene = F.interpolate(luma, size=THUMBNAIL_SIZE, mode="bilinear", align_corners=False,
                          antialias=True)
    face = None
    if found and region is not None:
        patch = alignment.crop(luma, region, PATCH_SIZE)
        face = _normalise(patch).cpu()
        region = region.detach().to(device="cpu")
    else:
        region = None
    return Descriptor(face, _normalise(scene).cpu(), region, index)


def similarity(first: Descriptor, second: Descriptor) -> float:
    """In [0, 1] (negative correlations count as 0); see the module docstring."""
    scene = float(first.scene @ second.scene)
    if (first.face is None) != (second.face is None):
        return 0.0
    if first.face is None:
        return max(0.0, scene)
    face = float(first.face @ second.face)
    size_a, size_b = float(first.region.size[0]), float(second.region.size[0])
    size = min(size_a, size_b) / max(size_a, size_b, 1e-6)
    turn = float(torch.cos(first.region.angle[0] - second.region.angle[0]))
    return max(0.0, min(face, scene) * size * max(turn, 0.0))


@dataclass
class SharingOptions:
    window: int = 8
    tau_reuse: float = 0.995
    tau_refine: float = 0.90
    keyframe_steps: int = 40
    refine_steps: int = 10


@dataclass
class Keyframe:
    descriptor: Descriptor
    params: PerturbParams
    gain: float = 1.0  # the visibility budget's scale of the change (1: none)


@dataclass
class Decision:
    action: str                 # REUSE, REFINE or NEW
    similarity: float           # to the nearest keyframe (0 with an empty window)
    nearest: Keyframe | None
    steps: int                  # optimiser budget for this frame


@dataclass
class SharingStats:
    frames: int = 0
    keyframes: int = 0
    reused: int = 0
    refined: int = 0
    steps: int = 0
    actions: list = field(default_factory=list)

    def record(self, action: str, steps: int) -> None:
        self.frames += 1
        self.steps += steps
        self.actions.append(action)
        if action == NEW:
            self.keyframes += 1
        elif action == REUSE:
            self.reused += 1
        else:
            self.refined += 1

    @property
    def reuse_rate(self) -> float:
        return self.reused / self.frames if self.frames else 0.0

    @property
    def steps_per_frame(self) -> float:
        return self.steps / self.frames if self.frames else 0.0

    def summary(self) -> dict:
        return {"frames": self.frames, "keyframes": self.keyframes, "reused": self.reused,
                "refined": self.refined, "reuse_rate": round(self.reuse_rate, 4),
                "optimiser_steps": self.steps, "steps_per_frame": round(self.steps_per_frame, 3)}


class KeyframeWindow:
    """The rolling window of keyframes (descriptor + optimised parameters)."""

    def __init__(self, options: SharingOptions | None = None):
        self.options = options or SharingOptions()
        self.keyframes: list[Keyframe] = []

    def __len__(self) -> int:
        return len(self.keyframes)

    def nearest(self, descriptor: Descriptor) -> tuple[Keyframe | None, float]:
        best, best_similarity = None, 0.0
        for keyframe in self.keyframes:
            value = similarity(descriptor, keyframe.descriptor)
            if best is None or value > best_similarity:
                best, best_similarity = keyframe, value
        return best, best_similarity

    def decide(self, descriptor: Descriptor) -> Decision:
        options = self.options
        nearest, value = self.nearest(descriptor)
        if nearest is not None and value >= options.tau_reuse:
            return Decision(REUSE, value, nearest, 0)
        if nearest is not None and value >= options.tau_refine:
            return Decision(REFINE, value, nearest, options.refine_steps)
        return Decision(NEW, value, nearest, options.keyframe_steps)

    def update(self, keyframe: Keyframe, descriptor: Descriptor, params: PerturbParams,
               gain: float = 1.0) -> None:
        """Let ``keyframe`` follow the face: it takes a refined frame's descriptor and
        parameters (see ``track`` in the module docstring), and their visibility gain."""
        keyframe.descriptor = descriptor
        keyframe.params = params.detach()
        keyframe.gain = gain

    def add(self, descriptor: Descriptor, params: PerturbParams, gain: float = 1.0) -> None:
        self.keyframes.append(Keyframe(descriptor, params.detach(), gain))
        while len(self.keyframes) > max(1, self.options.window):
            self.keyframes.pop(0)
