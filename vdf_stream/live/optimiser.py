"""Live mode's parameters: the fallback, the double-buffered board, the optimiser thread.

The optimiser thread runs the :class:`~vdf_stream.protection.protector.Protector` that the
``vdf`` filter runs, on the newest keyframe candidate only: it describes the frame, decides
against the scenes it remembers (reuse: nothing to do; refine; new), optimises warm-started
from the parameters on screen and publishes every ``publish_steps`` steps. Publishing swaps
one reference to an immutable :class:`Published` set (double buffering: the optimiser works
on its own copy; a set the capture loop reads is never written again), after the
optimiser's CUDA stream finished.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..media.capture import LatestFrame, pattern_frame
from ..resources import lower_priority

if TYPE_CHECKING:
    import torch

    from .protector import LiveOptions


def fallback_params(height: int, width: int, eps: float, seed: int = 0, device=None):
    """The fallback set (and the optimiser's first start): a seeded random spatial face term
    of standard deviation ``eps / 2`` (the vdf filter's start) and a seeded random phase of
    the frame term (0.1 radians), so frames without a face are changed too."""
    import torch

    from ..protection.perturb import make_params

    generator = torch.Generator().manual_seed(seed)
    params = make_params(1, height, width, init_scale=eps / 2, generator=generator)
    params.frame_phase = torch.randn(params.frame_phase.shape, generator=generator) * 0.1
    return params.to(device)


@dataclass(frozen=True)
class Published:
    """An immutable parameter set as published: never written after publication."""

    params: object  # PerturbParams
    generation: int  # 0: the fallback
    keyframe_index: int | None  # capture index of the frame it was optimised on
    published_at: float
    steps: int = 0
    gain: float = 1.0


class ParameterBoard:
    """The newest published parameters; :meth:`publish` swaps one reference under a lock."""

    def __init__(self, initial: Published):
        self._lock = threading.Lock()
        self._current = initial
        self.publications = 0

    def latest(self) -> Published:
        with self._lock:
            return self._current

    def publish(self, params, keyframe_index: int, steps: int, gain: float = 1.0) -> Published:
        with self._lock:
            self.publications += 1
            published = Published(params, self._current.generation + 1, keyframe_index,
                                  time.perf_counter(), steps, gain)
            self._current = published
            return published


@dataclass
class Keyframe:
    frame: torch.Tensor  # (1, 3, H, W) clean, on the device
    region: object  # RegionOfInterest (1)
    index: int
    ready: object = None  # CUDA: an event recorded on the protector's stream after both


def reuse_rate(decisions: dict) -> float:
    """The share of keyframe candidates whose scene was reused as it was."""
    total = sum(decisions.values())
    return decisions["reuse"] / total if total else 0.0


class Optimiser:
    """Optimises on the newest keyframe candidate and publishes (see the module docstring)."""

    def __init__(self, board: ParameterBoard, device: torch.device, options: LiveOptions):
        self.board = board
        self.device = device
        self.options = options
        self.slot = LatestFrame()
        self.error: BaseException | None = None
        self.decisions = {"reuse": 0, "refine": 0, "new": 0}
        self.steps = 0
        self.busy_seconds = 0.0
        self.protector = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._adam = None  # the optimiser's Adam state, kept across publications
        self._generator = None  # the seeded generator of the random transformations

    def prepare(self) -> None:
        """Load the face models (the protector); :meth:`start` does it first."""
        from ..protection.protector import Protector

        # Every publication is shown at once: a new scene starts from the parameters on
        # screen as they are (a start scaled down, as in file mode, would show).
        self.protector = Protector(self.options, self.device, scale_new_start=False)

    def start(self) -> None:
        self.prepare()
        self._thread = threading.Thread(target=self._run, name="optimiser", daemon=True)
        self._thread.start()

    def warm_up(self, height: int, width: int) -> None:
        """One optimiser step on a test pattern, before the capture starts: the first real
        step would otherwise pay for lazy initialisation (seconds on a CPU), delaying the
        first optimised parameters."""
        import torch

        from ..media.frames import image_to_batch
        from ..models.alignment import full_frame_roi

        frame = image_to_batch(pattern_frame(width, height, 0), self.device)
        region = full_frame_roi(1, (height, width), device=self.device)
        self.protector.optimise(frame, region, self.board.latest().params, 1,
                                torch.Generator().manual_seed(0))

    def offer(self, keyframe: Keyframe, pixels=None) -> None:
        """The newest keyframe candidate (``pixels``: for :class:`~vdf_stream.live.worker.
        OptimiserProcess`'s interface; unused here)."""
        self.slot.put(keyframe)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.slot.close()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def reuse_rate(self) -> float:
        return reuse_rate(self.decisions)

    def _run(self) -> None:
        import torch

        if self.device.type == "cpu":
            lower_priority()
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        try:
            if stream is not None:
                with torch.cuda.stream(stream):
                    self._loop(stream)
            else:
                self._loop(None)
        except BaseException as error:
            self.error = error

    def _loop(self, stream) -> None:
        while not self._stop.is_set():
            keyframe = self.slot.get(timeout=0.2)
            if keyframe is not None:
                self.handle(keyframe, stream, self._stop.is_set)

    def handle(self, keyframe: Keyframe, stream=None, stop=lambda: False) -> None:
        """Decide on one keyframe and optimise it when it is a new scene or to be refined,
        publishing on the way (``stream``: the optimiser's CUDA stream; ``stop``: polled
        between steps)."""
        import torch

        from ..protection.sharing import NEW, REUSE

        protector = self.protector
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.options.seed)
        generator = self._generator
        if stream is not None and keyframe.ready is not None:
            # the capture loop's stream wrote the frame and the region: wait for it, and
            # tell the allocator this stream uses them
            stream.wait_event(keyframe.ready)
            for tensor in (keyframe.frame, keyframe.region.center, keyframe.region.size,
                           keyframe.region.angle):
                tensor.record_stream(stream)
        started = time.perf_counter()
        frame, region = keyframe.frame, keyframe.region
        descriptor, decision = protector.decide(frame, region, keyframe.index)
        self.decisions[decision.action] += 1
        if decision.action == REUSE:
            if decision.nearest.params is not self.board.latest().params:
                # back to a remembered scene: show its parameters again
                self.board.publish(decision.nearest.params, keyframe.index, 0,
                                   decision.nearest.gain)
            return
        if decision.action == NEW:
            self._adam = None  # a new scene: Adam's moments belong to the old one
        # Warm start from the parameters on screen.
        start = self.board.latest().params
        gain = self.board.latest().gain

        def publish(params, steps):
            if stream is not None:
                stream.synchronize()  # the set is complete before anyone reads it
            self.board.publish(params, keyframe.index, steps, gain)

        params, done, self._adam = protector.optimise(
            frame, region, start, decision.steps, generator, gain, state=self._adam,
            publish_steps=self.options.publish_steps, publish=publish,
            stop=stop)
        settled, gain = protector.settle(frame, region, descriptor, decision, params)
        if settled is not params or gain != 1.0:
            publish(settled, 0)
        self.steps += done
        self.busy_seconds += time.perf_counter() - started
