"""The live protector: capture -> protect -> outputs, with the optimiser beside it.

Shape::

    capture (thread) -> [latest] -> prepare (thread) -> [latest] -> protector -> outputs
                                                                   |       ^
                                                   newest keyframe |       | newest parameters
                                                                   v       |
                                       optimiser (a process on a CPU, a thread on a GPU)

The prepare thread (:meth:`LiveProtector._prepare`, the capture's ``prepare``) finds the face
region of the newest decoded frame and makes what the apply path takes from the frame
alone, while the protector (the calling thread) applies the newest published parameters to
the frame prepared before (the cheap apply path: no optimisation) and hands it to the
outputs, in capture order. The protector offers the clean frame to the optimiser
(:mod:`vdf_stream.live.optimiser`, :mod:`vdf_stream.live.worker`) as its next keyframe
candidate.

**Before the first optimised parameters**, frames are protected with the *fallback*: the
optimiser's own seeded random start, bounded by ``eps`` like every output but not optimised,
so weaker. ``fallback="hold"`` holds those frames back instead. Either way no unprotected
frame reaches an output.

Every output is closed (the recording finalised) on every exit path, Ctrl-C included.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..media.capture import Capture, pattern_frame
from ..media.outputs import Output
from ..media.colour import to_uint8
from ..media.frames import image_to_batch, to_pixels
from ..resources import keep_freed_memory
from ..protection.options import ProtectionOptions
from .optimiser import Keyframe, Optimiser, ParameterBoard, Published, fallback_params
from .status import LiveStats, StatusLine, _percentile

if TYPE_CHECKING:
    import torch

FALLBACKS = ("perturb", "hold")


@dataclass
class LiveOptions(ProtectionOptions):
    """How a live run protects: the ``vdf`` filter's options
    (:class:`~vdf_stream.protection.options.ProtectionOptions`, the same presets and
    decisions), and what only a live stream needs.

    Attributes:
        confirm: 2, not the filter's 3: live, 3 measured no better (docs/live.md).
        publish_steps: the optimiser publishes after at most this many steps.
        fallback: ``perturb`` (the seeded random start before the first optimised set) or
            ``hold`` (no frame delivered before it).
        optimise: run the optimiser (off: the fallback only; for tests and measurements).
        detect_every: run the face detector on every N-th frame (1: every frame); the
            region of the last detection is used in between.
    """

    confirm: int = 2
    publish_steps: int = 5
    fallback: str = "perturb"
    optimise: bool = True
    detect_every: int = 1

    def validate(self) -> None:
        super().validate()
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)}")
        if self.detect_every < 1 or self.publish_steps < 1:
            raise ValueError("detect_every and publish_steps must be at least 1")
        if self.jod is not None:
            raise ValueError("jod (a visibility budget) is not available live: fitting it "
                             "takes seconds per keyframe; use a lower strength or eps")

    def check(self) -> None:
        """:meth:`validate`, raised as a :class:`~vdf_stream.errors.UsageError`."""
        try:
            self.validate()
        except ValueError as error:
            raise UsageError(str(error)) from None


class LiveProtector:
    """Runs a live protection: ``capture`` -> protect -> ``outputs`` until the capture ends
    or Ctrl-C / :meth:`stop`.

    Args:
        capture: a started or not yet started :class:`Capture` (started by :meth:`run`).
        outputs: :class:`Output` objects; closed by :meth:`run` on every exit path.
        options: :class:`LiveOptions`.
        device: where the face detector, the apply path and the optimiser run.
        status: a :class:`StatusLine`, or ``None`` for none.
        slow_down: extra seconds per frame in the protector (tests: force drops).
        max_seconds: stop after this long (``None``: until the capture ends).
        threads: torch's threads on a CPU during the run (0: half the cores, as ``protect``;
            ``None``: as they are set).
    """

    def __init__(self, capture: Capture, outputs: list[Output], options: LiveOptions | None = None,
                 device: torch.device | str = "cpu", status: StatusLine | None = None,
                 slow_down: float = 0.0, max_seconds: float | None = None,
                 threads: int | None = 0):
        import torch

        from ..pipeline.engine import torch_threads

        self.capture = capture
        self.outputs = outputs
        self._region = None  # the last face detection's (region, found), and frames since
        self._handled = 0
        self.options = options or LiveOptions()
        self.options.check()
        self.eps, self.keyframe_steps = self.options.resolved()
        self.apply_options = self.options.apply_spec().kwargs()
        self.device = torch.device(device)
        self.status = status
        self.slow_down = slow_down
        self.max_seconds = max_seconds
        # torch's threads on a CPU: 0 = half the cores (protect's default), None = as set
        self.threads = torch_threads(threads) if threads is not None else None
        self.stats = LiveStats()
        self._stop = threading.Event()
        info = capture.info
        fallback = fallback_params(info.height, info.width, self.eps, self.options.seed,
                                   self.device)
        self.board = ParameterBoard(Published(fallback, 0, None, time.perf_counter()))
        self.optimiser = None
        if self.options.optimise:
            if self.device.type == "cpu":
                # a process of its own: as a thread it would hold up every frame
                from ..environment import usable_cores
                from .worker import OptimiserProcess

                self.optimiser = OptimiserProcess(self.board, self.device, self.options,
                                                  threads=max(1, usable_cores() - 1))
            else:
                self.optimiser = Optimiser(self.board, self.device, self.options)

    def stop(self) -> None:
        self._stop.set()

    def status_text(self, elapsed: float, line: StatusLine) -> str:
        stats = self.stats
        captured = self.capture.captured
        delivered = stats.delivered
        capture_fps = (captured - line.captured) / elapsed
        output_fps = (delivered - line.delivered) / elapsed
        line.captured, line.delivered = captured, delivered
        published = self.board.latest()
        if published.generation == 0:
            params = "params: fallback (optimising)" if self.optimiser else "params: fallback"
        else:
            params = (f"params #{published.generation} "
                      f"age {time.perf_counter() - published.published_at:.1f} s")
        text = (f"capture {capture_fps:4.1f} fps | out {output_fps:4.1f} fps | "
                f"dropped {self.capture.dropped} | latency p50 "
                f"{_percentile(line.window, 0.5) * 1000:3.0f} ms p95 "
                f"{_percentile(line.window, 0.95) * 1000:3.0f} ms | {params}")
        if self.optimiser is not None:
            text += f" | reuse {self.optimiser.reuse_rate:.0%}"
        gpu = line.nvml.read() if line.nvml is not None else None
        if gpu is not None:
            text += f" | GPU {gpu[0]}% {gpu[1]:.1f} GiB"
        return text

    def run(self) -> LiveStats:
        """Protect until the capture ends, :meth:`stop`, ``max_seconds`` or Ctrl-C (which
        is re-raised after every output was closed). Errors of the capture, optimiser or
        outputs are raised after the same clean-up."""
        from ..models.detection import FaceDetector

        import torch

        keep_freed_memory()  # frame-sized tensors reuse freed memory (vdf_stream.resources)
        previous_threads = torch.get_num_threads()
        if self.device.type == "cpu" and self.threads:
            # half the cores, as protect: on 2 cores one thread delivered every frame at
            # 640x360 and two dropped some (docs/speed.md)
            torch.set_num_threads(self.threads)
        self.detector = FaceDetector(device=self.device)
        failure: BaseException | None = None
        started = time.perf_counter()
        try:
            if self.optimiser is not None:
                self.optimiser.start()
                self.optimiser.warm_up(self.capture.info.height, self.capture.info.width)
            self._warm_up()
            started = time.perf_counter()
            if self.capture._thread is None:
                self.capture.prepare = self._prepare
                self.capture.start()
            self._loop(started)
        except BaseException as error:
            failure = error
        finally:
            self.stats.seconds = time.perf_counter() - started
            self.capture.consumer_ready.set()
            self.capture.stop()
            if self.optimiser is not None:
                self.optimiser.stop()
            for output in self.outputs:
                try:
                    output.close()
                except BaseException as error:  # the first failure wins
                    failure = failure or error
            if self.status is not None:
                self.status.finish()
            self._collect()
            torch.set_num_threads(previous_threads)
        if failure is not None:
            raise failure
        for error in (self.capture.error, self.optimiser.error if self.optimiser else None):
            if error is not None:
                raise error
        return self.stats

    def _warm_up(self) -> None:
        """One pass of the apply path on a test pattern before the capture starts, so that
        the first frames do not pay for lazy initialisation (kernels, allocator)."""
        import torch

        from ..models.mesh import choose_regions
        from ..protection.perturb import perturb

        info = self.capture.info
        clean = image_to_batch(pattern_frame(info.width, info.height, 0), self.device)
        with torch.no_grad():
            for _ in range(2):
                region, found = choose_regions(self.detector.detect(clean),
                                               tuple(clean.shape[-2:]), device=self.device)
                perturb(clean, self.board.latest().params, region, self.eps, face_present=found,
                        **self.apply_options)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _collect(self) -> None:
        stats = self.stats
        stats.captured = self.capture.captured
        stats.dropped = self.capture.dropped
        stats.publications = self.board.publications
        if self.optimiser is not None:
            stats.optimiser_steps = self.optimiser.steps
            stats.decisions = dict(self.optimiser.decisions)

    def _loop(self, started: float) -> None:
        import torch

        from ..protection.perturb import perturb

        while not self._stop.is_set():
            if self.max_seconds is not None and time.perf_counter() - started > self.max_seconds:
                return
            frame = self.capture.slot.get(timeout=0.5)
            if frame is None:
                if self.capture.slot.closed:
                    if self.capture.error is not None:
                        raise self.capture.error
                    return
                continue
            if self.optimiser is not None and self.optimiser.error is not None:
                raise self.optimiser.error
            # made by the prepare thread while the frame before was protected (or here,
            # when the capture was started without it)
            clean, region, found, prepared = (frame.prepared if frame.prepared is not None
                                              else self._prepare(frame.pixels))
            with torch.no_grad():
                moment_applied = time.perf_counter()
                published = self.board.latest()
                if published.generation == 0 and self.options.fallback == "hold":
                    self.stats.held += 1
                    self._offer(clean, region, found, frame)
                    self.capture.consumer_ready.set()
                    continue
                protected = perturb(clean, published.params, region, self.eps,
                                    face_present=found,
                                    gain=None if published.gain == 1.0 else published.gain,
                                    prepared=prepared, box_only=True, **self.apply_options)
                (out,) = to_pixels(to_uint8(protected), "rgb24")
                if prepared.in_box:  # the rest of the frame is the captured pixels
                    x0, y0, x1, y1 = prepared.box
                    box, out = out, frame.pixels.copy()
                    out[y0:y1, x0:x1] = box
                self.stats.apply_seconds += time.perf_counter() - moment_applied
            self._offer(clean, region, found, frame)
            if self.slow_down:
                time.sleep(self.slow_down)
            for output in self.outputs:
                output.write(out, frame)
            latency = time.perf_counter() - frame.captured_at
            self.stats.delivered += 1
            self.capture.consumer_ready.set()
            self.stats.latencies.append(latency)
            self.stats.delivered_indices.append(frame.index)
            if published.generation == 0:
                self.stats.fallback_frames += 1
            elif self.stats.first_parameters_seconds is None:
                self.stats.first_parameters_seconds = time.perf_counter() - started
            if self.status is not None:
                self.status.update(self, latency)

    def _prepare(self, pixels):
        """``(frame as a float batch, face region, found, prepared)``: the per-frame work
        that needs no parameters (the face detection, and what the apply path takes from
        the frame alone: :func:`~vdf_stream.protection.perturb.prepare_apply`). Set as the
        capture's ``prepare``, it runs on the capture's prepare thread, on another core than the
        protection of the frame before it."""
        import torch

        from ..models.mesh import choose_regions
        from ..protection.perturb import prepare_apply

        started = time.perf_counter()
        clean = image_to_batch(pixels, self.device)
        with torch.no_grad():
            if self._region is None or self._handled % self.options.detect_every == 0:
                detections = self.detector.detect(clean)
                self._region = choose_regions(detections, tuple(clean.shape[-2:]),
                                              device=self.device)
            region, found = self._region
            prepared = prepare_apply(clean, region, self.eps, found, self.board.latest().params,
                                     **self.apply_options)
        self._handled += 1
        self.stats.detect_seconds += time.perf_counter() - started
        return clean, region, found, prepared

    def _offer(self, clean, region, found, frame) -> None:
        if self.optimiser is not None and bool(found[0]):
            ready = None
            if self.device.type == "cuda":
                import torch

                ready = torch.cuda.Event()
                ready.record()
            self.optimiser.offer(Keyframe(clean, region, frame.index, ready), frame.pixels)
