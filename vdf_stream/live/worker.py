"""Live mode's optimiser in a process of its own: the CPU path.

On a CPU the optimiser and the per-frame path share a few cores, and as two threads of one
Python process they also share its interpreter lock: each waits on the other for the lock
between every two tensor operations, and the frames pay for it (measured on 2 cores at
640x360: 198-200 of 216 frames delivered with the optimiser as a thread, the per-frame path
slowed from 26 to 35 ms; 216 of 216 with the same optimisation in another process,
``docs/speed.md``). :class:`OptimiserProcess` runs the same
:class:`~vdf_stream.live.optimiser.Optimiser` in a child process at the scheduler's lowest
priority, so it gets the time the frames leave.

The two sides talk through two queues:

* the protector sends a keyframe candidate (its 8-bit pixels and face region) only when the
  child asks for one, that is when it is idle: a frame a second or so, never a backlog;
* the child sends each published parameter set (a few hundred kB), which a thread of the
  protector puts on the :class:`~vdf_stream.live.optimiser.ParameterBoard` the apply path
  reads, and its counters.

The child ignores Ctrl-C (the protector stops it), is stopped and joined when the run ends,
and an error in it is raised by the protector like one of the optimiser thread.
"""

from __future__ import annotations

import pickle
import queue
import threading
import time
from typing import TYPE_CHECKING

from ..errors import VdfError

if TYPE_CHECKING:
    import torch

    from .optimiser import Keyframe, ParameterBoard
    from .protector import LiveOptions

START_SECONDS = 120.0  # the child's start-up (imports, models, one step) may take this long


class OptimiserProcessError(VdfError):
    """The optimiser process ended without being asked to."""


def _arrays(params) -> list:
    return [tensor.detach().cpu().numpy() for tensor in params.tensors()]


def _params(arrays: list, device):
    import torch

    from ..protection.perturb import PerturbParams

    return PerturbParams(*[torch.from_numpy(array).to(device) for array in arrays])


class OptimiserProcess:
    """:class:`~vdf_stream.live.optimiser.Optimiser`'s interface (``start``, ``warm_up``,
    ``offer``, ``stop``, ``error``, ``steps``, ``decisions``, ``reuse_rate``) over a child
    process (see the module docstring)."""

    def __init__(self, board: ParameterBoard, device: torch.device, options: LiveOptions,
                 threads: int = 1):
        self.board = board
        self.device = device
        self.options = options
        self.threads = threads
        self.error: BaseException | None = None
        self.decisions = {"reuse": 0, "refine": 0, "new": 0}
        self.steps = 0
        self.busy_seconds = 0.0
        self._process = None
        self._receiver: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping = False

    def start(self) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # safe beside threads, on every OS
        self._requests = context.Queue()
        self._results = context.Queue()
        self._want = context.Event()  # set by the child when it waits for a keyframe
        self._halt = context.Event()  # set by the protector: stop between two steps
        initial = self.board.latest()
        self._process = context.Process(
            target=_serve, name="vdf-stream optimiser", daemon=True,
            args=(self.options, _arrays(initial.params), self.threads, self._requests,
                  self._results, self._want, self._halt))
        self._process.start()
        self._receiver = threading.Thread(target=self._receive, name="optimiser results",
                                          daemon=True)
        self._receiver.start()

    def warm_up(self, height: int, width: int) -> None:
        """Wait until the child loaded its models and took one step (its start-up)."""
        self._requests.put(("warm_up", height, width))
        deadline = time.monotonic() + START_SECONDS
        while not self._ready.wait(0.1):
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise OptimiserProcessError(
                    f"the optimiser process did not start within {START_SECONDS:.0f} s")

    def offer(self, keyframe: Keyframe, pixels=None) -> None:
        """Send the keyframe candidate when the child waits for one (``pixels``: its 8-bit
        ``(H, W, 3)`` RGB, which the child turns into the same float frame); otherwise
        nothing: the child takes the newest frame once it is done with the last."""
        if not self._want.is_set() or self._stopping:
            return
        self._want.clear()
        if pixels is None:
            pixels = (keyframe.frame[0].detach().mul(255).round_().byte().permute(1, 2, 0)
                      .cpu().numpy())
        region = keyframe.region
        self._requests.put(("keyframe", pixels, keyframe.index,
                            region.center.detach().cpu().numpy(),
                            region.size.detach().cpu().numpy(),
                            region.angle.detach().cpu().numpy()))

    @property
    def reuse_rate(self) -> float:
        from .optimiser import reuse_rate

        return reuse_rate(self.decisions)

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping = True
        process = self._process
        if process is None:
            return
        self._halt.set()
        try:
            self._requests.put(("stop",))
        except (OSError, ValueError):
            pass
        process.join(timeout)
        if process.is_alive():
            process.terminate()
            process.join(5)
        if self._receiver is not None:
            self._receiver.join(5)
        for channel in (self._requests, self._results):
            channel.close()
            channel.cancel_join_thread()

    def _receive(self) -> None:
        """The protector's side of the results queue: publishes each set as it arrives."""
        while True:
            try:
                message = self._results.get(timeout=0.5)
            except queue.Empty:
                if not self._process.is_alive():
                    if not self._stopping and self.error is None:
                        self.error = OptimiserProcessError(
                            f"the optimiser process ended unexpectedly (exit code "
                            f"{self._process.exitcode})")
                    return
                continue
            except (OSError, EOFError, ValueError):
                return
            kind = message[0]
            if kind == "published":
                _, arrays, index, steps, gain = message
                self.board.publish(_params(arrays, self.device), index, steps, gain)
            elif kind == "counters":
                _, self.decisions, self.steps, self.busy_seconds = message
            elif kind == "ready":
                self._ready.set()
            elif kind == "error":
                self.error = message[1]
                return
            elif kind == "stopped":
                return


class _ForwardingBoard:
    """The child's board: keeps the newest set (the optimiser warm-starts from it) and sends
    each publication to the protector."""

    def __init__(self, board, results):
        self.board = board
        self.results = results

    def latest(self):
        return self.board.latest()

    def publish(self, params, keyframe_index: int, steps: int, gain: float = 1.0):
        published = self.board.publish(params, keyframe_index, steps, gain)
        self.results.put(("published", _arrays(params), keyframe_index, steps, gain))
        return published


def _sendable(error: BaseException) -> BaseException:
    try:
        pickle.dumps(error)
        return error
    except Exception:
        return OptimiserProcessError(f"optimiser: {type(error).__name__}: {error}")


def _serve(options, initial: list, threads: int, requests, results, want, halt) -> None:
    """The child process: the optimiser, fed one keyframe at a time."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the protector stops this process
    try:
        import torch

        from ..media.frames import image_to_batch
        from ..models.alignment import RegionOfInterest
        from ..resources import keep_freed_memory, lower_priority
        from .optimiser import Keyframe, Optimiser, ParameterBoard, Published

        lower_priority()
        keep_freed_memory()
        torch.set_num_threads(max(1, threads))
        device = torch.device("cpu")
        board = _ForwardingBoard(ParameterBoard(Published(_params(initial, device), 0, None,
                                                          time.perf_counter())), results)
        optimiser = Optimiser(board, device, options)
        optimiser.prepare()
        while True:
            want.set()
            message = requests.get()
            want.clear()
            kind = message[0]
            if kind == "stop":
                break
            if kind == "warm_up":
                optimiser.warm_up(message[1], message[2])
                results.put(("ready",))
                continue
            _, pixels, index, center, size, angle = message
            region = RegionOfInterest(torch.from_numpy(center), torch.from_numpy(size),
                                      torch.from_numpy(angle))
            optimiser.handle(Keyframe(image_to_batch(pixels, device), region, index),
                             stop=halt.is_set)
            results.put(("counters", dict(optimiser.decisions), optimiser.steps,
                         optimiser.busy_seconds))
        results.put(("stopped",))
    except BaseException as error:  # handed to the protector, raised there
        results.put(("error", _sendable(error)))
