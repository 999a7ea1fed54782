"""How the protection protects: one options object, validated once.

:class:`ProtectionOptions` is the ``vdf`` filter's options (``vdf=strength=high:seed=3``) and
the base of live mode's (:class:`vdf_stream.live.LiveOptions` adds what only a live stream
needs). The presets, the model names the optimiser can attack and every bound live here and
nowhere else.

The presets are chosen by how visible they are: ColorVideoVDP's video JOD at native size
after H.264 CRF 23 (10: no visible difference), measured with ``benchmarks/visibility.py``;
``docs/filter.md`` and ``docs/results.md`` give the figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

Strength = Literal["low", "medium", "high"]
Backend = Literal["auto", "torch", "cupy"]
# none, auto, or one of vdf_stream.models.surrogate.DIRECTIONS (a test keeps them the same)
Toward = Literal["none", "auto", "right", "left", "down", "up", "out", "in"]

# preset -> (eps, keyframe steps)
PRESETS: dict[str, tuple[float, int]] = {
    "low": (3 / 255, 40),
    "medium": (4 / 255, 40),
    "high": (6 / 255, 40),
}
# preset -> expectation over transformations (off for all: what the presets were measured with)
ROBUST_PRESETS: dict[str, bool] = {"low": False, "medium": False, "high": False}
# preset -> attention outside the face region (medium: none, the change on the face only)
REGION_FLOOR_PRESETS: dict[str, float] = {"low": 0.5, "medium": 0.0, "high": 0.5}
# Models the optimiser can attack besides MediaPipe's (vdf_stream.models.surrogate's)
SURROGATES = ("mtcnn", "faceapi68", "faceapi68tiny", "faceapidet")
# The networks the talking-face pipelines themselves run (vdf_stream.models.talking_face's),
# attacked when the user has their weights
PIPELINE_MODELS = ("fan", "bisenet")
TARGETS = ("mesh", "parsing", "detection") + SURROGATES + PIPELINE_MODELS
# against=NAME: what that pipeline reads faces with (the face mesh always, the rest when
# their weights are here). RAD-NeRF, SyncTalk and TalkingGaussian preprocess with
# ER-NeRF's scripts; GeneFace with AD-NeRF's, which run the same two networks.
RECIPES: dict[str, tuple[str, ...]] = {
    name: ("mesh", "fan", "bisenet")
    for name in ("ernerf", "radnerf", "synctalk", "talkinggaussian", "geneface")}
Against = Literal["none", "ernerf", "radnerf", "synctalk", "talkinggaussian", "geneface"]
EPS_RANGE = (1 / 255, 1.0)


def _help(text: str, shown: str | None = None) -> dict:
    """Field metadata: the help line of ``vdf-stream filters`` and, where the value is not
    how a user would type it, the default as they would (``4/255``, ``the preset's``)."""
    return {"help": text, **({"shown": shown} if shown is not None else {})}


@dataclass
class ProtectionOptions:
    """The protection's options (see each field's help, or ``vdf-stream filters``)."""

    strength: Strength = field(default="medium", metadata=_help(
        "how strong, traded against how visible: low (change of at most 3/255, invisible, "
        "little effect), medium (4/255 on the face only: looks the same as the original "
        "after publishing), high (6/255: some viewers will see it)"))
    eps: float | None = field(default=None, metadata=_help(
        "the most any pixel may change, e.g. 5/255; replaces the preset's", "the preset's"))
    steps: int | None = field(default=None, metadata=_help(
        "optimiser steps on a new scene (more: stronger and slower); replaces the preset's "
        "40", "the preset's"))
    share: bool = field(default=True, metadata=_help(
        "reuse the protection of similar earlier frames (off: optimise every frame, "
        "several times slower)"))
    window: int = field(default=8, metadata=_help(
        "how many earlier scenes are remembered for reuse"))
    tau_reuse: float = field(default=0.995, metadata=_help(
        "how similar a frame must be to a remembered scene to reuse its protection as it is"))
    tau_refine: float = field(default=0.90, metadata=_help(
        "how similar it must be to start from that protection and refine it; below this, "
        "the frame is a new scene"))
    refine_steps: int = field(default=10, metadata=_help(
        "optimiser steps of a refined frame"))
    track: bool = field(default=True, metadata=_help(
        "a refined frame replaces its scene's memory, so the protection follows the face as "
        "it moves"))
    learning_rate: float = field(default=3.0, metadata=_help(
        "how far each optimiser step moves the change"))
    early_stop: bool = field(default=True, metadata=_help(
        "stop optimising a frame once the face models read it wrongly enough (saves time; "
        "off: always spend every step)"))
    confirm: int = field(default=3, metadata=_help(
        "steps in a row that must read the face wrongly before a frame stops early"))
    headroom: float = field(default=1.0, metadata=_help(
        "how far past the targets a frame must be before it stops early (1: at the targets)"))
    landmarks: float = field(default=1.0, metadata=_help(
        "weight of moving the face-mesh landmarks"))
    pose: float = field(default=1.0, metadata=_help("weight of turning the read head pose"))
    targets: str = field(default="mesh", metadata=_help(
        "the face models attacked, joined by +: mesh (MediaPipe face mesh: landmarks and "
        "head pose), parsing (selfie segmentation), detection (BlazeFace), mtcnn, faceapi68, "
        "faceapi68tiny, faceapidet (face-api's detector), fan (FAN's 68 points in S3FD's "
        "crop) and bisenet (BiSeNet's head/neck/torso parse), the last two with your copy of "
        "their weights (`vdf-stream models list`); e.g. mesh+mtcnn. More models: slower, "
        "and the same budget shared between them"))
    against: Against = field(default="none", metadata=_help(
        "protect against what a talking-face pipeline reads faces with: ernerf (also "
        "radnerf, synctalk, talkinggaussian, geneface: the face mesh, FAN and BiSeNet), "
        "adding to targets the models whose weights are here and saying in one line which "
        "are missing and how to get them"))
    parsing: float = field(default=1.0, metadata=_help(
        "weight of the segmentation model, when targeted"))
    detection: float = field(default=1.0, metadata=_help(
        "weight of the face detector, when targeted"))
    surrogate_weight: float = field(default=1.0, metadata=_help(
        "weight of each of mtcnn, faceapi68, faceapi68tiny, faceapidet, when targeted"))
    fan: float = field(default=1.0, metadata=_help("weight of FAN, when targeted"))
    bisenet: float = field(default=1.0, metadata=_help("weight of BiSeNet, when targeted"))
    fidelity: float = field(default=1.0, metadata=_help(
        "how hard the optimiser gives back change that does not fool the face models "
        "(higher: a smaller change)"))
    balance: bool = field(default=True, metadata=_help(
        "give every targeted model its weight's share of each step, so that one that is easy "
        "to fool cannot take the whole budget"))
    chroma: float = field(default=0.0, metadata=_help(
        "how much of the change may be colour: 0 changes brightness only (no colour "
        "blotches, and what H.264 keeps best), 1 each colour channel freely"))
    texture_floor: float = field(default=0.15, metadata=_help(
        "how much change flat skin may take, relative to textured areas, in [0, 1] (low: "
        "the change hides in texture)"))
    texture_reference: float = field(default=0.03, metadata=_help(
        "how much local contrast counts as full texture"))
    highpass: float = field(default=0.0, metadata=_help(
        "keep only the fine grain of the change: patterns coarser than this many pixels are "
        "taken out (smooth blotches on skin are what people notice first); 0: off"))
    region_floor: float | None = field(default=None, metadata=_help(
        "how much change may fall outside the face, relative to inside, in [0, 1]",
        "the preset's: 0 for medium, 0.5 for low and high"))
    saturation: float = field(default=12.0, metadata=_help(
        "keeps a protection refined along a long clip from growing into a fixed pattern "
        "that no longer follows the face (in eps; 0: never checked)"))
    toward: Toward = field(default="none", metadata=_help(
        "push every landmark model the same way (right, left, down, up, out, in), or auto: "
        "the way they already drift; none: each its own way"))
    jod: float | None = field(default=None, metadata=_help(
        "a visibility budget instead of trusting eps alone: each optimised frame's change "
        "is scaled down until the frame scores this ColorVideoVDP JOD (10: identical; 9.5: "
        "hard to tell apart) as a still image on a 24-inch 1080p monitor; slower", "none"))
    psnr: float | None = field(default=None, metadata=_help(
        "a fidelity floor in dB: a frame whose change would take it under this PSNR gets a "
        "smaller change", "none"))
    robust: bool | None = field(default=None, metadata=_help(
        "optimise through rescaling, H.264- and JPEG-like compression and blur, so the "
        "protection is made for what survives them (slower)", "the preset's: off"))
    seed: int = field(default=0, metadata=_help(
        "seed of the random starts: the same seed and input give the same output"))
    overlap: bool = field(default=True, metadata=_help(
        "apply each frame's protection on a second thread while the next is optimised "
        "(the same output, sooner)"))
    backend: Backend = field(default="auto", metadata=_help(
        "how the change is applied: auto (CuPy's kernel on an NVIDIA GPU when installed), "
        "torch, cupy"))
    quiet: bool = field(default=False, metadata=_help(
        "no summary line on stderr at the end"))

    # -- what the options resolve to ------------------------------------------------------

    def resolved(self) -> tuple[float, int]:
        """(eps, keyframe steps): the options', else the preset's."""
        eps, steps = PRESETS[self.strength]
        return (self.eps if self.eps is not None else eps,
                self.steps if self.steps is not None else steps)

    def resolved_region_floor(self) -> float:
        """The attention outside the face region: the option's, else the preset's."""
        return (self.region_floor if self.region_floor is not None
                else REGION_FLOOR_PRESETS[self.strength])

    def resolved_robust(self) -> bool:
        return self.robust if self.robust is not None else ROBUST_PRESETS[self.strength]

    def target_models(self) -> list[str]:
        names = [name.strip() for name in self.targets.split("+") if name.strip()]
        unknown = [name for name in names if name not in TARGETS]
        if unknown or not names:
            raise ValueError(f"targets must join some of {', '.join(TARGETS)} with +, got "
                             f"{self.targets!r}")
        return list(dict.fromkeys(names))

    def other_models(self, chosen: list[str]) -> dict[str, float]:
        """The models of ``chosen`` besides MediaPipe's, with their weights (the objective's
        balanced terms)."""
        weights = {"fan": self.fan, "bisenet": self.bisenet}
        return {name: weights.get(name, self.surrogate_weight) for name in chosen
                if name in SURROGATES or name in PIPELINE_MODELS}

    def direction(self) -> str | None:
        """The field every landmark term pushes along (None: each its own way)."""
        return None if self.toward == "none" else self.toward

    def apply_spec(self) -> "ApplySpec":
        """What the apply path needs, frozen."""
        return ApplySpec(self.chroma, self.texture_floor, self.resolved_region_floor(),
                         self.texture_reference, self.psnr, self.highpass)

    # -- the one check ----------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`ValueError` naming the first option out of range."""
        if self.strength not in PRESETS:
            raise ValueError(f"strength must be one of {', '.join(PRESETS)}, got {self.strength!r}")
        self.target_models()
        eps, steps = self.resolved()
        if not (math.isfinite(eps) and EPS_RANGE[0] <= eps <= EPS_RANGE[1]):
            raise ValueError(f"eps must be in [1/255, 1] (e.g. 8/255), got {eps}")
        if steps < 0 or self.refine_steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps} and refine_steps {self.refine_steps}")
        if self.confirm < 1:
            raise ValueError(f"confirm must be at least 1, got {self.confirm}")
        if self.window < 1:
            raise ValueError(f"window must be at least 1, got {self.window}")
        if not (0 <= self.tau_refine <= self.tau_reuse <= 1):
            raise ValueError(f"need 0 <= tau_refine <= tau_reuse <= 1, got {self.tau_refine} "
                             f"and {self.tau_reuse}")
        if not (math.isfinite(self.headroom) and self.headroom > 0):
            raise ValueError(f"headroom must be > 0, got {self.headroom}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.backend not in get_args(Backend):
            raise ValueError(f"backend must be one of {', '.join(get_args(Backend))}")
        for name, value in (("chroma", self.chroma), ("texture_floor", self.texture_floor),
                            ("region_floor", self.resolved_region_floor())):
            if not (0 <= value <= 1):
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.against not in get_args(Against):
            raise ValueError(f"against must be one of {', '.join(get_args(Against))}, got "
                             f"{self.against!r}")
        if self.toward not in get_args(Toward):
            raise ValueError(f"toward must be one of {', '.join(get_args(Toward))}, got "
                             f"{self.toward!r}")
        if not (math.isfinite(self.highpass) and 0 <= self.highpass <= 32):
            raise ValueError(f"highpass must be a sigma in pixels in [0, 32], got {self.highpass}")
        if not (math.isfinite(self.saturation) and self.saturation >= 0):
            raise ValueError(f"saturation must be >= 0, got {self.saturation}")
        if self.jod is not None and not (math.isfinite(self.jod) and 0 < self.jod < 10):
            raise ValueError(f"jod must be a budget between 0 and 10 (e.g. 9.5), got {self.jod}")
        if self.psnr is not None and not (math.isfinite(self.psnr) and 10 <= self.psnr <= 80):
            raise ValueError(f"psnr must be a floor in dB between 10 and 80, got {self.psnr}")
        if not (math.isfinite(self.texture_reference) and self.texture_reference > 0):
            raise ValueError(f"texture_reference must be > 0, got {self.texture_reference}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class ApplySpec:
    """The apply path's settings (:func:`vdf_stream.protection.perturb.perturb`'s keywords)."""

    chroma: float
    texture_floor: float
    region_floor: float
    texture_reference: float
    psnr_floor: float | None = None
    highpass: float = 0.0

    def kwargs(self) -> dict:
        """Keyword arguments of ``perturb`` (those left at their off value are left out)."""
        out = {"chroma": self.chroma, "texture_floor": self.texture_floor,
               "region_floor": self.region_floor, "texture_reference": self.texture_reference}
        if self.psnr_floor is not None:
            out["psnr_floor"] = self.psnr_floor
        if self.highpass > 0:
            out["highpass"] = self.highpass
        return out
