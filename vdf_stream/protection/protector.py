"""The protector: describe -> decide -> optimise -> apply, one home for file and live mode.

For each frame with a face:

1. **describe**: a descriptor of the face (:func:`vdf_stream.protection.sharing.describe`);
2. **decide** against the window of remembered scenes (keyframes): *reuse* the nearest
   one's parameters (similarity >= ``tau_reuse``), *refine* them ``refine_steps`` steps
   (>= ``tau_refine``), or start a *new* keyframe (``steps``); with ``share`` off every
   frame is new;
3. **optimise** (:func:`vdf_stream.protection.objective.optimise`) until ``confirm`` steps
   in a row read the targets, then settle: desaturate, fit the visibility budget's gain
   (``jod``), and remember the result (a refined frame replaces its keyframe: ``track``);
4. **apply** (:func:`vdf_stream.protection.perturb.perturb`): ``|output - input| <= eps``.

The ``vdf`` filter calls :meth:`Protector.parameters` per frame and :meth:`Protector.apply`
(on a second thread in a stream). Live mode's optimiser thread calls :meth:`decide`,
:meth:`optimise` (in publications of a few steps, keeping Adam's state) and :meth:`settle`
on the newest keyframe candidate, while the capture thread applies what was published last.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from .options import ProtectionOptions
from .recipes import resolve_targets

# The surrogates' losses keep pushing up to this NME, past their 0.05 target (more after
# CRF 23 at no cost to the mesh's: docs/filter.md).
SURROGATE_MARGIN = 0.15


def build_surrogates(names, device: torch.device, direction: str | None = None) -> dict:
    """The other models named (of :data:`~.options.SURROGATES` and
    :data:`~.options.PIPELINE_MODELS`), on ``device``; their landmark
    terms push along ``direction`` when given (the detector's box is left as it is)."""
    if not names:
        return {}
    from ..models.surrogate import (FaceApi68Surrogate, FaceApi68TinySurrogate,
                                    FaceApiDetectorSurrogate, MtcnnSurrogate)

    classes = {"mtcnn": MtcnnSurrogate, "faceapi68": FaceApi68Surrogate,
               "faceapi68tiny": FaceApi68TinySurrogate, "faceapidet": FaceApiDetectorSurrogate}
    if "fan" in names or "bisenet" in names:
        from ..models.talking_face import BiSeNetTarget, FanTarget

        classes.update(fan=FanTarget, bisenet=BiSeNetTarget)
    # "auto": the objective points them at every step (Objective.consensus)
    directed = {"direction": direction} if direction not in (None, "auto") else {}
    built = {}
    for name in names:
        if name == "bisenet":  # a parser: no landmark error, no direction
            built[name] = classes[name](device=device)
        else:
            built[name] = classes[name](device=device, nme_target=SURROGATE_MARGIN,
                                        **({} if name == "faceapidet" else directed))
    return built


def resolve_backend(backend: str, device: torch.device) -> str:
    """The apply kernel ``auto`` means on ``device``: CuPy's on a GPU with CuPy, else torch."""
    if backend == "auto":
        from .apply_cuda import cupy_available

        return "cupy" if device.type == "cuda" and cupy_available() else "torch"
    if backend == "cupy" and device.type != "cuda":
        raise ValueError(f"backend=cupy needs a CUDA device, the run uses {device}")
    return backend


class Protector:
    """Makes and applies the protection's parameters for one stream (see the module).

    Args:
        options: validated :class:`ProtectionOptions` (or live mode's).
        device: where the models, the optimiser and the apply path run.
        scale_new_start: a new keyframe starts from the nearest one's parameters scaled by
            their similarity (file mode); off, from them as they are (live mode, where every
            publication is shown at once and a weaker start would show).
        bit_depth: of the stream: the output is rounded to its grid (8: 255 levels; 10:
            1023), so a 10-bit video keeps its 10 bits.
    """

    def __init__(self, options: ProtectionOptions, device: torch.device,
                 scale_new_start: bool = True, bit_depth: int = 8):
        from ..models.mesh import FacePipeline
        from .objective import Objective, ObjectiveWeights, Targets, Transformations
        from .sharing import KeyframeWindow, SharingOptions, SharingStats

        self.options = options
        self.device = device
        self.scale_new_start = scale_new_start
        self.eps, self.keyframe_steps = options.resolved()
        self.backend = resolve_backend(options.backend, device)
        # note: the recipe's models left out for want of weights, for the caller to say
        chosen, self.note = resolve_targets(options)
        # The selfie segmentation is only read by the parsing term.
        self.pipeline = FacePipeline(device=device, segmentation="parsing" in chosen)
        mesh = "mesh" in chosen
        weights = ObjectiveWeights(
            options.landmarks if mesh else 0.0, options.pose if mesh else 0.0,
            options.parsing if "parsing" in chosen else 0.0,
            options.detection if "detection" in chosen else 0.0, options.fidelity,
            balance=options.balance,
            surrogates=options.other_models(chosen),
            direction=options.direction())
        transformations = (Transformations() if options.resolved_robust()
                           else Transformations().none())
        self.objective = Objective(self.pipeline, weights, transformations,
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
        self.spec = options.apply_spec()
        self.apply_options = self.spec.kwargs()
        if bit_depth > 8:
            self.apply_options["levels"] = float(2 ** min(bit_depth, 16) - 1)
        self.budget = None
        if options.jod is not None:
            from ..visibility import VisibilityBudget

            self.budget = VisibilityBudget(options.jod, device)
        self.timings = {"detect": 0.0, "optimise": 0.0, "apply": 0.0}
        self.last_params = None
        self.last_gain = 1.0

    # -- the steps ----------------------------------------------------------------------------

    def initial(self, frame: torch.Tensor, index: int):
        """The start of a first keyframe: a small seeded random spatial term (from exactly
        zero the mesh reads the clean points and every distance-based loss has a zero
        gradient)."""
        from .perturb import make_params

        height, width = frame.shape[-2:]
        generator = torch.Generator().manual_seed(self.options.seed + index)
        return make_params(1, height, width, device=frame.device, init_scale=self.eps / 2,
                           generator=generator)

    def decide(self, frame: torch.Tensor, region, index: int):
        """(descriptor, :class:`~vdf_stream.protection.sharing.Decision`) for a frame with a
        face."""
        from .sharing import NEW, Decision, describe

        descriptor = describe(frame, region, True, index)
        if self.options.share:
            return descriptor, self.window.decide(descriptor)
        return descriptor, Decision(NEW, 0.0, None, self.keyframe_steps)

    def start(self, frame: torch.Tensor, decision, index: int):
        """Where the optimisation of ``decision`` starts."""
        from .sharing import NEW

        if decision.nearest is None:
            return self.initial(frame, index)
        if decision.action == NEW and self.scale_new_start:
            return decision.nearest.params.scaled(decision.similarity)
        return decision.nearest.params

    def optimise(self, frame: torch.Tensor, region, start, steps: int,
                 generator: torch.Generator, start_gain: float = 1.0, state=None,
                 publish_steps: int | None = None,
                 publish: Callable | None = None, stop: Callable[[], bool] | None = None):
        """Optimise ``start`` for up to ``steps`` steps on the clean ``frame``.

        Returns ``(params, steps taken, Adam state)``. With ``publish``, the steps run in
        chunks of ``publish_steps`` and ``publish(params, steps)`` is called after each;
        ``stop()`` ends it between chunks.
        """
        from .objective import optimise

        found = torch.ones(1, dtype=torch.bool, device=frame.device)
        reference = self.objective.reference(frame, region, found)
        options = self.apply_options
        if self.budget is not None:
            # The steps see the scale the budget gave the change they start from: they
            # optimise the change at the amplitude it will have.
            options = {**options, "gain": start_gain}
        chunk = steps if publish is None else max(1, publish_steps or steps)
        params, done = start, 0
        while done < steps:
            size = min(chunk, steps - done)
            with torch.enable_grad():
                result = optimise(frame, reference, params, self.objective, self.eps, size,
                                  self.options.learning_rate, generator, self.targets, options,
                                  state=state, confirm=self.options.confirm)
            params, state = result.params, result.state
            done += result.steps
            if publish is not None:
                publish(params, result.steps)
            if result.steps < size or (stop is not None and stop()):
                break  # early stop: the targets were read
        return params, done, state

    def settle(self, frame: torch.Tensor, region, descriptor, decision, params):
        """After an optimisation: desaturate, fit the budget's gain, remember the scene.
        Returns ``(params, gain)``."""
        from .sharing import NEW

        if self.options.saturation > 0:
            from .perturb import desaturate

            params, _ = desaturate(frame, params, region, self.eps,
                                   torch.ones(1, dtype=torch.bool, device=frame.device),
                                   self.options.saturation, chroma=self.options.chroma)
        gain = self.fit_gain(frame, params, region, True)
        if decision.action == NEW and self.options.share:
            self.window.add(descriptor, params, gain)
        elif decision.action != NEW and self.options.track:
            self.window.update(decision.nearest, descriptor, params, gain)
        return params, gain

    def parameters(self, frame: torch.Tensor, region, has_face: bool, index: int):
        """File mode, one frame: ``(params, gain, action, steps)``."""
        from .sharing import REUSE

        if not has_face:
            # Nothing to align to or to read: the latest parameters' frame term only.
            if self.last_params is None:
                start = self.initial(frame, index)
                return start, self.fit_gain(frame, start, region, False), REUSE, 0
            return self.last_params, self.last_gain, REUSE, 0
        descriptor, decision = self.decide(frame, region, index)
        if decision.action == REUSE:
            params, gain = decision.nearest.params, decision.nearest.gain
        else:
            start = self.start(frame, decision, index)
            generator = torch.Generator().manual_seed(self.options.seed + index)
            start_gain = decision.nearest.gain if decision.nearest is not None else 1.0
            params, decision.steps, _ = self.optimise(frame, region, start, decision.steps,
                                                      generator, start_gain)
            params, gain = self.settle(frame, region, descriptor, decision, params)
        self.last_params, self.last_gain = params, gain
        return params, gain, decision.action, decision.steps

    def apply(self, frame: torch.Tensor, params, region, found, gain: float = 1.0):
        """The parameters applied to frames (any thread)."""
        from .perturb import perturb

        started = time.perf_counter()
        with torch.no_grad():
            output = perturb(frame, params, region, self.eps, face_present=found,
                             backend=self.backend, gain=None if gain == 1.0 else gain,
                             **self.apply_options)
        self.timings["apply"] += time.perf_counter() - started
        return output

    def fit_gain(self, frame: torch.Tensor, params, region, has_face: bool) -> float:
        """The visibility budget's scale of this frame's change (1 without a budget)."""
        if self.budget is None:
            return 1.0
        from .perturb import perturb

        started = time.perf_counter()
        present = torch.full((1,), has_face, dtype=torch.bool, device=frame.device)

        def render(gain: float) -> torch.Tensor:
            return perturb(frame, params, region, self.eps, face_present=present, gain=gain,
                           **self.apply_options)

        with torch.no_grad():
            gain, _ = self.budget.fit(frame, render)
        self.timings["visibility"] = self.timings.get("visibility", 0.0) + (
            time.perf_counter() - started)
        return gain
