"""``vdf``: the protection. A bounded, invisible, dual-domain perturbation optimised against
the face pipeline of the model zoo, shared between similar frames.

Per batch, in the main thread:

1. the face detector reads the clean frames once (regions the parameters align to);
2. each frame gets a descriptor (:mod:`vdf_stream.protection.sharing`); with ``share=on`` the keyframe
   window decides: *reuse* the nearest keyframe's parameters (similarity >= 0.995),
   *refine* them 10 steps (>= 0.90), or start a *new* keyframe (warm-started, full
   budget); a refined frame's parameters replace its keyframe's (``track``), so the
   keyframe follows the face and the refinements of consecutive frames add up; with
   ``share=off`` every frame is optimised from zero with the full budget (the per-frame
   baseline);
3. the optimiser (:func:`vdf_stream.protection.objective.optimise`) runs where needed, until
   ``confirm`` (3) steps in a row read the targets (``headroom`` raises them; 1.0 measured
   best, see docs/protection.md);
4. the parameters are applied (:func:`vdf_stream.protection.perturb.perturb`; the fused CuPy kernel on
   a GPU with CuPy, torch otherwise): ``|output - input| <= eps`` on the 8-bit grid. In a
   stream (``protect``, pipes, ``batch``: the engine's runs), with ``overlap`` (the
   default), this runs on a second thread while the next frames are detected and
   optimised; frames come out in order, at most :data:`APPLY_LAG` frames later, and the
   same as without it.

Strength presets (``strength``; ``eps`` and ``steps`` override them), chosen by how visible
they are: ColorVideoVDP's video JOD at native size after H.264 CRF 23 (10 = no visible
difference; the codec floor, the clip re-encoded alone, reads 9.73 on single_face and 9.71
on WolfgangLanger's first 96 frames), measured with ``benchmarks/visibility.py``
(docs/visibility.md):

======== ======= ====== ==================== ==========================================
preset   eps     steps  video JOD (SF / WL)  efficacy after CRF 23 (mesh NME / pose)
======== ======= ====== ==================== ==========================================
low      3/255   40     9.67 / --            invisible; next to nothing (0.011 / 1.4 deg)
medium   4/255   40     9.63 / 9.56          the default, the change on the face only
                                             (``region_floor`` 0): looks the same (>= 9.5,
                                             within 0.3 of the floor at native size and at
                                             full screen); 0.014-0.026 / 1.6-3.3 deg
high     6/255   40     9.14 / 9.27          some viewers see it; 0.046-0.059 / 7.9-9.7 deg
======== ======= ====== ==================== ==========================================

The white-box targets the filter was built for (NME 0.10, pose 10 degrees) are reached only
where the change is visible (eps 8/255: JOD 8.74, NME 0.096, pose 14.5 degrees on
single_face). ``jod=`` sets a visibility budget instead of trusting a fixed eps: the change
of each optimised frame is scaled until the frame scores that JOD as a still image.

The change is luma only by default (``chroma=0``: no colour blotches, and what 4:2:0 H.264
keeps) and flat areas get 15% of the budget (``texture_floor=0.15``). The expectation over
transformations (``robust``) is off for low and medium and on for high: what measured best
after the real encoder on single_face.mp4 at these step budgets. ``psnr=DB`` adds a floor
on fidelity frame by frame: a frame whose change would take it under that PSNR gets its
change scaled down, before encoding (the optimiser's steps see the cap too).

At close, a summary line goes to stderr: frames, keyframes, reuse rate, optimiser steps
per frame; :attr:`VdfFilter.stats` holds the same.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch

from vdf_stream.errors import UsageError
from vdf_stream.pipeline.filter import Filter
from vdf_stream.media.frames import Frames, VideoInfo

Strength = Literal["low", "medium", "high"]
Backend = Literal["auto", "torch", "cupy"]
# none, auto, or one of vdf_stream.models.surrogate.DIRECTIONS (a test keeps them the same)
Toward = Literal["none", "auto", "right", "left", "down", "up", "out", "in"]

# preset -> (eps, keyframe steps)
# (video JOD after CRF 23 decides them: docs/visibility.md)
PRESETS: dict[str, tuple[float, int]] = {
    "low": (3 / 255, 40),
    "medium": (4 / 255, 40),
    "high": (6 / 255, 40),
}
# preset -> expectation over transformations on or off (off: what the presets' JOD and
# efficacy were measured with).
ROBUST_PRESETS: dict[str, bool] = {"low": False, "medium": False, "high": False}
# preset -> attention outside the face region (VdfOptions.region_floor). medium: none, the
# change on the face only: with half the budget outside it, WolfgangLanger at full screen
# fell 0.35 JOD under its codec floor (0.26 with none).
REGION_FLOOR_PRESETS: dict[str, float] = {"low": 0.5, "medium": 0.0, "high": 0.5}
# Models the optimiser can attack (``targets``); those of SURROGATES are
# vdf_stream.models.surrogate's, built on first use.
SURROGATES = ("mtcnn", "faceapi68", "faceapi68tiny", "faceapidet")
SURROGATE_MARGIN = 0.15
# Frames the apply thread may be behind the optimiser (``overlap``) before process() waits.
APPLY_LAG = 2
TARGETS = ("mesh", "parsing", "detection") + SURROGATES


def build_surrogates(names, device: torch.device, direction: str | None = None) -> dict:
    """The surrogate models named (of :data:`SURROGATES`), on ``device``; their landmark
    terms push along ``direction`` when given (the detector's box is left as it is)."""
    if not names:
        return {}
    from vdf_stream.models.surrogate import (FaceApi68Surrogate, FaceApi68TinySurrogate,
                                             FaceApiDetectorSurrogate, MtcnnSurrogate)

    classes = {"mtcnn": MtcnnSurrogate, "faceapi68": FaceApi68Surrogate,
               "faceapi68tiny": FaceApi68TinySurrogate, "faceapidet": FaceApiDetectorSurrogate}
    # The losses keep pushing up to NME 0.15, past the 0.05 target: measured on 8 frames
    # (benchmarks/transfer.py --techniques margin), it raises the models' own figures after
    # CRF 23 (face-api alone 0.026 -> 0.044) at no cost to the mesh's.
    # "auto": the objective points them at every step (Objective.consensus)
    directed = {"direction": direction} if direction not in (None, "auto") else {}
    return {name: classes[name](device=device, nme_target=SURROGATE_MARGIN,
                                **({} if name == "faceapidet" else directed))
            for name in names}


@dataclass
class VdfOptions:
    strength: Strength = field(default="medium", metadata={
        "help": "how strong, by how visible: low (eps 3/255: invisible, next to no effect), "
                "medium (4/255 on the face only, the default: looks the same, video JOD "
                "9.6 after CRF 23), "
                "high (6/255: some viewers see it, JOD 9.1); 40 optimiser steps per keyframe"})
    eps: float | None = field(default=None, metadata={
        "help": "L-inf budget, overrides the preset's, e.g. 8/255"})
    steps: int | None = field(default=None, metadata={
        "help": "optimiser steps of a keyframe (and of every frame with share=off), "
                "overrides the preset's"})
    share: bool = field(default=True, metadata={
        "help": "similarity-guided parameter sharing (off: optimise every frame, the baseline)"})
    window: int = field(default=8, metadata={"help": "keyframes kept for sharing"})
    tau_reuse: float = field(default=0.995, metadata={
        "help": "similarity at or above which a keyframe's parameters are reused as they are"})
    tau_refine: float = field(default=0.90, metadata={
        "help": "similarity at or above which they are refined; below, a new keyframe"})
    refine_steps: int = field(default=10, metadata={"help": "optimiser steps of a refined frame"})
    track: bool = field(default=True, metadata={
        "help": "a refined frame's parameters replace its keyframe's, so the keyframe follows "
                "the face and refinements add up (off: each refines the keyframe's anew)"})
    learning_rate: float = field(default=3.0, metadata={
        "help": "scale of the optimiser's per-group learning rates"})
    early_stop: bool = field(default=True, metadata={
        "help": "stop optimising a frame once confirm steps in a row read every targeted "
                "model's target (mesh: NME >= 0.10 and pose >= 10 deg; parsing: flip >= 0.5; "
                "mtcnn, faceapi68, faceapi68tiny: their NME >= 0.05; faceapidet: its box moved "
                "0.05 of its side), times headroom"})
    confirm: int = field(default=3, metadata={
        "help": "steps in a row that must read the targets before a frame stops early (3: "
                "measured to raise NME and pose error after CRF 23 over 2 for about a fifth "
                "more steps; 4 gave no more, see docs/protection.md)"})
    headroom: float = field(default=1.0, metadata={
        "help": "early stop only once the step's reading exceeds the targets this many times "
                "(1.0: measured to give the same efficacy after the encoder as 1.5 with about "
                "a third fewer optimiser steps)"})
    landmarks: float = field(default=1.0, metadata={"help": "weight of the landmark term"})
    pose: float = field(default=1.0, metadata={"help": "weight of the head-pose term"})
    targets: str = field(default="mesh", metadata={
        "help": "the face models optimised against, joined by +: mesh (MediaPipe face mesh: "
                "landmarks and head pose), parsing (selfie segmentation), detection "
                "(BlazeFace), mtcnn (MTCNN's R/O-Net: 5 points and face score), faceapi68 "
                "(face-api's 68-point network), faceapi68tiny (face-api's tiny 68-point "
                "network), faceapidet (face-api's tiny face detector: its box and face "
                "score); e.g. mesh+mtcnn+faceapi68"})
    parsing: float = field(default=1.0, metadata={
        "help": "weight of the parsing term when targeted"})
    detection: float = field(default=1.0, metadata={
        "help": "weight of the detection term when targeted"})
    surrogate_weight: float = field(default=1.0, metadata={
        "help": "weight of each other model (mtcnn, faceapi68, faceapi68tiny, faceapidet) "
                "when targeted"})
    fidelity: float = field(default=1.0, metadata={
        "help": "weight of the fidelity term, mean((change / eps)^2): budget that does not "
                "move the face models is given back (1.0: measured to keep efficacy and raise "
                "SSIM; 0.05 before)"})
    balance: bool = field(default=True, metadata={
        "help": "give the parsing, detection and other models' terms their weight's share of "
                "each step (their gradients rescaled to weight x the mesh terms' gradient "
                "norm) instead of a plain weighted sum"})
    chroma: float = field(default=0.0, metadata={
        "help": "share of the change's colour part kept: 0 = luma only (a grey change, the "
                "same offset on R, G and B: no colour blotches, and what 4:2:0 H.264 keeps), "
                "1 = per colour channel"})
    texture_floor: float = field(default=0.15, metadata={
        "help": "attention on flat areas (e.g. cheeks) relative to textured ones, in [0, 1]"})
    texture_reference: float = field(default=0.03, metadata={
        "help": "local 5x5 luma standard deviation that counts as full texture (> 0)"})
    highpass: float = field(default=0.0, metadata={
        "help": "keep only the change's fine texture: what is coarser than a Gaussian of this "
                "many pixels is taken out before the bound (smooth blotches on skin are what "
                "people see first); 0: off"})
    region_floor: float | None = field(default=None, metadata={
        "help": "how much of the change may fall outside the face region, relative to "
                "inside, in [0, 1]; default: the preset's (medium 0: on the face only; low "
                "and high 0.5)"})
    saturation: float = field(default=12.0, metadata={
        "help": "after each optimisation, parameters whose unbounded change reaches this "
                "many eps (99th percentile) are scaled back to it, so that a keyframe "
                "refined along a long clip does not grow without end into a saturated "
                "pattern that no longer follows the face (12: what single_face reaches "
                "anyway, its figures kept; 3 halved them); 0: never"})
    toward: Toward = field(default="none", metadata={
        "help": "push every landmark reader optimised against (the mesh's points and each "
                "other model's) the same way: right, left, down, up, out (the face read "
                "larger) or in; auto: the direction in which the readers together already "
                "see the face move, kept along the stream; none (the default): each away "
                "from its clean points in its own direction. Measured after CRF 23 with "
                "face-api left out (docs/protection.md): right raises it on single_face "
                "(0.050 -> 0.057) and lowers it on WolfgangLanger (0.058 -> 0.041); auto "
                "reads as none to within 0.005"})
    jod: float | None = field(default=None, metadata={
        "help": "visibility budget: the least JOD (ColorVideoVDP, 10 = no visible "
                "difference) a protected frame may score as a still image at its own size "
                "on a 24-inch 1080p monitor; the change of each optimised frame is scaled "
                "down until it does (frames that reuse its parameters take the same scale). "
                "Default: none, the preset's eps alone bounds the change"})
    psnr: float | None = field(default=None, metadata={
        "help": "fidelity floor in dB: a frame whose change would take its PSNR against the "
                "input under this gets its change scaled down to meet it, before encoding "
                "(the encoder takes more: with eps=10/255, 38 kept every frame of "
                "WolfgangLanger's first 96 at 35.4 dB or more after H.264 CRF 23, see "
                "docs/protection.md); default: no floor, eps alone bounds the change"})
    robust: bool | None = field(default=None, metadata={
        "help": "expectation over rescaling, H.264-like and JPEG-like quantisation and blur "
                "(off by default: the presets were measured without it)"})
    seed: int = field(default=0, metadata={"help": "seed of the random transformations"})
    overlap: bool = field(default=True, metadata={
        "help": "in a stream, apply each frame's parameters on a second thread while the "
                "next frame is optimised (the same output; off: all on one thread)"})
    backend: Backend = field(default="auto", metadata={
        "help": "apply kernel: auto (CuPy on a GPU when installed), torch, cupy"})
    quiet: bool = field(default=False, metadata={"help": "no summary line on stderr at close"})

    def target_models(self) -> list[str]:
        names = [name.strip() for name in self.targets.split("+") if name.strip()]
        unknown = [name for name in names if name not in TARGETS]
        if unknown or not names:
            raise ValueError(f"targets must join some of {', '.join(TARGETS)} with +, got "
                             f"{self.targets!r}")
        return list(dict.fromkeys(names))

    def direction(self) -> str | None:
        """The field every landmark term pushes along (None: each its own way)."""
        return None if self.toward == "none" else self.toward

    def resolved_region_floor(self) -> float:
        """The attention outside the face region: the option's, else the preset's."""
        return (self.region_floor if self.region_floor is not None
                else REGION_FLOOR_PRESETS[self.strength])

    def resolved_robust(self) -> bool:
        return self.robust if self.robust is not None else ROBUST_PRESETS[self.strength]

    def resolved(self) -> tuple[float, int]:
        eps, steps = PRESETS[self.strength]
        return (self.eps if self.eps is not None else eps,
                self.steps if self.steps is not None else steps)

    def validate(self) -> None:
        self.target_models()
        if self.strength not in PRESETS:
            raise ValueError(f"strength must be one of {', '.join(PRESETS)}, got {self.strength!r}")
        eps, steps = self.resolved()
        if not (math.isfinite(eps) and 1 / 255 <= eps <= 1):
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


class VdfFilter(Filter):
    name = "vdf"
    description = ("protect faces against talking-face deepfakes: bounded dual-domain "
                   "perturbation against the face pipeline, shared between similar frames")
    Options = VdfOptions
    formats = ("rgbf32",)
    protects = True

    def __init__(self, options=None):
        super().__init__(options)
        self.stats = None
        self.timings = {"detect": 0.0, "optimise": 0.0, "apply": 0.0}
        self._pipeline = None
        self._applier = None  # the apply thread (overlap), started on the first frame
        self._pending = deque()  # (pts, index, future) of frames being applied, in order
        self._time_base = None
        self._empty = None

    def setup(self, info: VideoInfo, device: torch.device) -> VideoInfo:
        from vdf_stream.models.mesh import FacePipeline
        from vdf_stream.protection.objective import Objective, ObjectiveWeights, Targets, Transformations
        from vdf_stream.protection.sharing import KeyframeWindow, SharingOptions, SharingStats

        output = super().setup(info, device)  # validates the options first
        options = self.options
        self.eps, self.keyframe_steps = options.resolved()
        backend = options.backend
        if backend == "auto":
            from vdf_stream.protection.apply_cuda import cupy_available

            backend = "cupy" if device.type == "cuda" and cupy_available() else "torch"
        elif backend == "cupy" and device.type != "cuda":
            raise UsageError(f"{self.name}: backend=cupy needs a CUDA device, the run uses {device}")
        self.backend = backend
        self._pipeline = FacePipeline(device=device, segmentation=True)
        chosen = options.target_models()
        mesh = "mesh" in chosen
        weights = ObjectiveWeights(
            options.landmarks if mesh else 0.0, options.pose if mesh else 0.0,
            options.parsing if "parsing" in chosen else 0.0,
            options.detection if "detection" in chosen else 0.0, options.fidelity,
            balance=options.balance,
            surrogates={name: options.surrogate_weight for name in chosen if name in SURROGATES},
            direction=options.direction())
        transformations = (Transformations() if options.resolved_robust()
                           else Transformations().none())
        self.objective = Objective(self._pipeline, weights, transformations,
                                   build_surrogates(weights.surrogates, device,
                                                    weights.direction))
        targets = Targets()
        self.targets = Targets(targets.landmark_nme * options.headroom,
                               targets.pose_degrees * options.headroom,
                               min(1.0, targets.parse_flip * options.headroom),
                               targets.surrogate_nme * options.headroom
                               ) if options.early_stop else None
        self.window = KeyframeWindow(SharingOptions(options.window, options.tau_reuse,
                                                    options.tau_refine, self.keyframe_steps,
                                                    options.refine_steps))
        self.stats = SharingStats()
        self.last_params = None
        self.perturb_options = {"chroma": options.chroma, "texture_floor": options.texture_floor,
                                "region_floor": options.resolved_region_floor(),
                                "texture_reference": options.texture_reference}
        if options.psnr is not None:
            self.perturb_options["psnr_floor"] = options.psnr
        if options.highpass > 0:
            self.perturb_options["highpass"] = options.highpass
        self.budget = None
        if options.jod is not None:
            from vdf_stream.visibility import VisibilityBudget

            self.budget = VisibilityBudget(options.jod, device)
        self.last_gain = 1.0
        self.gains: list[float] = []  # the budget's scale of each frame's change
        return output

    def process(self, frames: Frames) -> Frames:
        import time

        from vdf_stream.protection.objective import optimise
        from vdf_stream.protection.perturb import make_params
        from vdf_stream.protection.sharing import NEW, REUSE, describe

        if frames.format not in self.formats:
            raise ValueError(f"{self.name} accepts rgbf32 frames, got {frames.format}")
        if len(frames) == 0:
            return frames.with_data(frames.data.clone())
        data = frames.data
        started = time.perf_counter()
        regions, found, _ = self._pipeline.regions(data)
        self.timings["detect"] += time.perf_counter() - started
        overlap = self.streaming and self.options.overlap
        if overlap and self._applier is None:
            self._applier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vdf-apply")
            self._time_base = frames.time_base
            self._empty = data[:0]
        outputs = []
        for position, index in enumerate(frames.indices):
            frame = data[position:position + 1]
            region = regions[position]
            has_face = bool(found[position])
            started = time.perf_counter()
            params, gain, action, steps = self._parameters(frame, region, has_face, int(index),
                                                           describe, optimise, make_params,
                                                           NEW, REUSE)
            self.timings["optimise"] += time.perf_counter() - started
            self.stats.record(action, steps)
            self.gains.append(gain)
            job = (frame, params, region, found[position:position + 1], gain)
            if overlap:
                self._pending.append((frames.pts[position], index,
                                      self._applier.submit(self._apply, *job)))
            else:
                outputs.append(self._apply(*job))
        if overlap:
            return self._release(wait=False)
        return frames.with_data(torch.cat(outputs), frames.format)

    def _apply(self, frame, params, region, found, gain=None) -> torch.Tensor:
        """The parameters applied to one frame (either thread)."""
        import time

        from vdf_stream.protection.perturb import perturb

        started = time.perf_counter()
        with torch.no_grad():
            output = perturb(frame, params, region, self.eps, face_present=found,
                             backend=self.backend, gain=None if gain == 1.0 else gain,
                             **self.perturb_options)
        self.timings["apply"] += time.perf_counter() - started
        return output

    def _release(self, wait: bool) -> Frames:
        """The applied frames at the front of the queue, in order: those done, and any
        more than :data:`APPLY_LAG` behind (waited for); with ``wait``, all of them."""
        pts, indices, outputs = [], [], []
        while self._pending and (wait or len(self._pending) > APPLY_LAG
                                 or self._pending[0][2].done()):
            stamp, index, future = self._pending.popleft()
            outputs.append(future.result())  # an apply error is raised here
            pts.append(stamp)
            indices.append(index)
        data = torch.cat(outputs) if outputs else self._empty
        return Frames(data, "rgbf32", pts, indices, self._time_base)

    def flush(self) -> Frames | None:
        if not self._pending:
            return None
        return self._release(wait=True)

    def _parameters(self, frame, region, has_face, index, describe, optimise, make_params,
                    NEW, REUSE):
        height, width = frame.shape[-2:]
        def zeros():
            # A small seeded random start of the spatial term: from exactly zero, the mesh
            # reads the clean points and every distance-based loss has a zero gradient.
            generator = torch.Generator().manual_seed(self.options.seed + index)
            return make_params(1, height, width, device=frame.device, init_scale=self.eps / 2,
                               generator=generator)

        if not has_face:
            # Nothing to align to or to read: the latest parameters' frame term only.
            if self.last_params is None:
                start = zeros()
                return start, self._fit_gain(frame, start, region, False), REUSE, 0
            return self.last_params, self.last_gain, REUSE, 0
        descriptor = describe(frame, region, True, index)
        if self.options.share:
            decision = self.window.decide(descriptor)
        else:
            from vdf_stream.protection.sharing import Decision

            decision = Decision(NEW, 0.0, None, self.keyframe_steps)
        if decision.action == REUSE:
            params = decision.nearest.params
            gain = decision.nearest.gain
        else:
            if decision.nearest is None:
                start = zeros()
            elif decision.action == NEW:
                start = decision.nearest.params.scaled(decision.similarity)
            else:
                start = decision.nearest.params
            reference = self.objective.reference(frame, region, torch.ones(1, dtype=torch.bool,
                                                                           device=frame.device))
            generator = torch.Generator().manual_seed(self.options.seed + index)
            # Under a visibility budget the steps see the scale the budget gave the change
            # they start from: they optimise the change at the amplitude it will have.
            options = self.perturb_options
            if self.budget is not None:
                start_gain = decision.nearest.gain if decision.nearest is not None else 1.0
                options = {**options, "gain": start_gain}
            with torch.enable_grad():
                result = optimise(frame, reference, start, self.objective, self.eps,
                                  decision.steps, self.options.learning_rate, generator,
                                  self.targets, options, confirm=self.options.confirm)
            params = result.params
            decision.steps = result.steps
            if self.options.saturation > 0:
                from vdf_stream.protection.perturb import desaturate

                params, _ = desaturate(frame, params, region, self.eps,
                                       torch.ones(1, dtype=torch.bool, device=frame.device),
                                       self.options.saturation, chroma=self.options.chroma)
            gain = self._fit_gain(frame, params, region, True)
            if decision.action == NEW and self.options.share:
                self.window.add(descriptor, params, gain)
            elif decision.action != NEW and self.options.track:
                self.window.update(decision.nearest, descriptor, params, gain)
        self.last_params, self.last_gain = params, gain
        return params, gain, decision.action, decision.steps

    def _fit_gain(self, frame, params, region, has_face: bool) -> float:
        """The visibility budget's scale of this frame's change (1 without a budget)."""
        if self.budget is None:
            return 1.0
        import time

        from vdf_stream.protection.perturb import perturb

        started = time.perf_counter()
        present = torch.full((1,), has_face, dtype=torch.bool, device=frame.device)

        def render(gain: float) -> torch.Tensor:
            return perturb(frame, params, region, self.eps, face_present=present, gain=gain,
                           **self.perturb_options)

        with torch.no_grad():
            gain, _ = self.budget.fit(frame, render)
        self.timings["visibility"] = self.timings.get("visibility", 0.0) + (
            time.perf_counter() - started)
        return gain

    def summary(self) -> dict:
        summary = self.stats.summary() if self.stats else {}
        summary["seconds"] = {name: round(value, 3) for name, value in self.timings.items()}
        if self._median_gain() is not None:
            summary["jod_budget"] = self.budget.target
            summary["gain_median"] = round(self._median_gain(), 4)
        return summary

    def _median_gain(self) -> float | None:
        """The budget's median scale of the frames' changes (``None`` without a budget)."""
        if self.budget is None or not self.gains:
            return None
        return float(torch.tensor(self.gains).median())

    def close(self) -> None:
        if self._applier is not None:
            for _, _, future in self._pending:
                future.cancel()
            self._pending.clear()
            self._applier.shutdown(wait=True)
            self._applier = None
        # the engine sets frames_written: a run stopped early counts only the frames written
        written = getattr(self, "frames_written", None)
        if self.stats is not None and self.stats.frames and written != 0 \
                and not self.options.quiet:
            from vdf_stream.protection.sharing import NEW, REFINE

            s = self.stats
            actions = s.actions[:written]
            keyframes, refined = actions.count(NEW), actions.count(REFINE)
            reuse = (len(actions) - keyframes - refined) / len(actions)
            gains = self.gains[:len(actions)] if self.budget is not None else []
            print(f"vdf: {len(actions)} frames, {keyframes} keyframes, {refined} refined, "
                  f"reuse rate {reuse:.0%}, " + (
                      f"{s.steps_per_frame:.2f} optimiser steps per frame ({s.steps} in all), "
                      if len(actions) == s.frames else "") +
                  f"eps {self.eps * 255:.3g}/255, share "
                  f"{'on' if self.options.share else 'off'}" + (
                      f", visibility budget JOD {self.budget.target:g} (change scaled to "
                      f"{float(torch.tensor(gains).median()):.2f} of eps, median)"
                      if gains else ""), file=sys.stderr)
