"""Live protection: a camera (or any source played at its real pace) in, protected frames out
to a virtual camera, a preview window and/or a recording, with bounded added latency.

Shape::

    capture (thread) -> [one-slot latest frame] -> protector (calling thread) -> outputs
                                                        |        ^
                                          newest keyframe|        |newest parameters
                                                        v        |
                                                   optimiser (thread)

* **capture** (:class:`DeviceCapture`, :class:`RealtimeCapture`, :class:`PatternCapture`)
  decodes with low-delay settings (no frame threads, ``nobuffer``) and puts each frame into
  a :class:`LatestFrame` slot. A newer frame replaces one the protector has not taken yet:
  that frame is *dropped at capture* and counted. Nothing ever queues up, so a slow machine
  delivers fewer frames, never late ones in a pile.
* **protector** (:class:`LiveProtector`): takes the newest frame, finds the face region
  (the detector, a few ms), applies the newest published parameters with
  :func:`vdf_stream.protection.perturb.perturb` (the cheap apply path: no optimisation), and hands
  the frame to the outputs, in capture order. It also offers the clean frame to the
  optimiser as its next keyframe candidate.
* **optimiser** (a thread; its own CUDA stream on a GPU) takes the newest keyframe
  candidate, compares it with the keyframe of the current parameters
  (:func:`vdf_stream.protection.sharing.similarity`): *reuse* (similar: nothing to do), *refine*
  (``refine_steps``) or *new* keyframe (``keyframe_steps``), optimised with
  :func:`vdf_stream.protection.objective.optimise` warm-started from the parameters on screen, and
  publishes every ``publish_steps`` steps. Publishing swaps one reference to an immutable
  :class:`Published` set (double buffering: the optimiser works on its own copy; a set the
  protector reads is never written again), after the optimiser's stream finished.

**Before the first optimised parameters** (the optimiser needs a face and a few steps),
frames are protected with the *fallback*: the optimiser's own seeded random start
(:func:`fallback_params`: a random spatial face term of ``eps / 2`` and a random phase of
the frame term), bounded by ``eps`` like every output, visibly identical, but not
optimised, so weaker. ``fallback="hold"`` holds those frames back instead (nothing is
delivered until the first optimised set exists). Either way no unprotected frame reaches an
output: every delivered frame went through :func:`perturb` with a parameter set.

Errors are raised as :mod:`vdf_stream.errors` types with one-line messages: a missing,
busy or unsupported camera is an :class:`InputError` (exit 3), a camera that stops part-way
a :class:`DamagedInputError` (exit 5), a missing virtual camera or pyvirtualcam an
:class:`OutputError` (exit 4). Every output is closed (the recording finalised) on every
exit path, Ctrl-C included.
"""

from __future__ import annotations

import errno
import math
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from typing import TYPE_CHECKING

from ..errors import DamagedInputError, InputError, OutputError, UsageError

if TYPE_CHECKING:  # torch is imported only when a run starts (``--help`` stays fast)
    import torch

    from ..media.frames import VideoInfo

FALLBACKS = ("perturb", "hold")
VIRTUAL_CAMERA_HELP = ("load the v4l2loopback driver (`sudo modprobe v4l2loopback devices=1 "
                       "exclusive_caps=1`) on Linux, or start OBS's virtual camera once "
                       "(Windows, macOS)")
LIVE_EXTRA = 'pip install "vdf-stream[live]"'
CLOCK_TIME_BASE = Fraction(1, 1000)  # recordings: capture clock in milliseconds


# -------------------------------------------------------------------------------------
# Frames and the one-slot buffer


@dataclass
class CapturedFrame:
    """One captured frame.

    Attributes:
        index: position in the capture order (counting dropped frames too).
        seconds: capture clock, seconds since the first frame (the recording's timestamps).
        captured_at: ``time.perf_counter()`` when the frame was decoded (latency origin).
        pixels: ``(H, W, 3)`` uint8 RGB.
    """

    index: int
    seconds: float
    captured_at: float
    pixels: np.ndarray


class LatestFrame:
    """A one-slot buffer holding the newest frame. :meth:`put` never blocks: a frame not
    taken yet is replaced and counted in :attr:`dropped`. :meth:`get` waits for a frame."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item) -> None:
        with self._condition:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._condition.notify_all()

    def get(self, timeout: float | None = None):
        """The newest item (the slot is emptied); ``None`` after :meth:`close` with nothing
        left, or when ``timeout`` passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._item is None and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                # short waits so that Ctrl-C reaches the calling thread promptly
                self._condition.wait(0.1 if remaining is None else min(0.1, remaining))
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


# -------------------------------------------------------------------------------------
# Capture


class Capture:
    """Base class: a thread filling a :class:`LatestFrame`. Subclasses implement
    :meth:`_frames` (an iterator of ``(seconds, pixels)``) and set :attr:`info`
    (size and nominal rate) in ``__init__``, before the thread starts, so that opening
    errors are raised in the caller."""

    info: VideoInfo
    name = "camera"

    def __init__(self) -> None:
        self.slot = LatestFrame()
        self.error: BaseException | None = None
        self.captured = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None  # perf_counter of the first frame
        self.last_frame_at: float | None = None  # and of the latest

    def _frames(self):
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"capture {self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for seconds, pixels in self._frames():
                if self._stop.is_set():
                    break
                now = time.perf_counter()
                if self.started_at is None:
                    self.started_at = now
                self.slot.put(CapturedFrame(self.captured, seconds, now, pixels))
                self.captured += 1
                self.last_frame_at = now
        except BaseException as error:  # handed to the protector's thread
            self.error = error
        finally:
            self.slot.close()
            self._release()

    def _release(self) -> None:
        pass

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def dropped(self) -> int:
        return self.slot.dropped


def _clock_info(width: int, height: int, rate: Fraction | None) -> VideoInfo:
    from ..media.frames import VideoInfo
    from ..media.sources import resolve_colour

    matrix, colour_range = resolve_colour(2, 0, height)
    return VideoInfo(width=width, height=height, time_base=CLOCK_TIME_BASE,
                     frame_rate=rate, pix_fmt="rgb24", colorspace=matrix,
                     color_range="full", tag_color_range=2)


def device_format() -> str:
    """FFmpeg's capture device format for this platform."""
    system = platform.system()
    if system == "Darwin":
        return "avfoundation"
    if system == "Windows":
        return "dshow"
    return "v4l2"


@dataclass
class CameraInfo:
    device: str
    name: str
    loopback: bool


def list_cameras() -> list[CameraInfo]:
    """Video capture devices (Linux: ``/dev/video*`` with their driver names; loopback
    devices, the virtual cameras, are marked). Other platforms: an empty list (see
    :func:`list_cameras_hint`)."""
    if platform.system() != "Linux":
        return []
    cameras = []
    for path in sorted(Path("/dev").glob("video*"), key=lambda p: (len(p.name), p.name)):
        sys_folder = Path("/sys/class/video4linux") / path.name
        try:
            name = (sys_folder / "name").read_text().strip()
        except OSError:
            name = "?"
        # v4l2loopback devices have no hardware behind them (/sys/devices/virtual/...); their
        # default label is "Dummy video device", OBS names its own "OBS Virtual Camera"
        virtual = "/virtual/" in os.path.realpath(sys_folder)
        lowered = name.lower()
        loopback = virtual or any(word in lowered for word in ("loopback", "dummy", "virtual",
                                                               "obs"))
        cameras.append(CameraInfo(str(path), name, loopback))
    return cameras


def list_cameras_hint() -> str:
    system = platform.system()
    if system == "Darwin":
        return 'list them with: ffmpeg -f avfoundation -list_devices true -i ""'
    if system == "Windows":
        return "list them with: ffmpeg -f dshow -list_devices true -i dummy"
    return "no /dev/video* device found"


def default_camera() -> str:
    system = platform.system()
    if system == "Darwin":
        return "0"
    if system == "Windows":
        raise UsageError('give the camera with --camera "video=NAME" (' + list_cameras_hint() + ")")
    for camera in list_cameras():
        if not camera.loopback:
            return camera.device
    raise InputError("no camera found (no /dev/video* capture device); plug one in, or give "
                     "--camera DEV or --realtime FILE")


class DeviceCapture(Capture):
    """A camera through FFmpeg's capture devices (v4l2, avfoundation, dshow) with PyAV,
    low-delay settings: ``fflags=nobuffer``, ``flags=low_delay``, no frame threads.

    ``input_format`` (``mjpeg`` by default, the usual format of USB cameras at 720p30) is
    asked for first; when the camera refuses it, its own default format is used.
    """

    def __init__(self, device: str, size: tuple[int, int] | None = None,
                 rate: Fraction | None = None, input_format: str | None = "mjpeg",
                 format: str | None = None):
        super().__init__()
        import av

        self.name = device
        self.format = format or device_format()
        if self.format == "v4l2" and not os.path.exists(device):
            raise InputError(f"camera {device}: no such device (see vdf-stream live "
                             "--list-cameras)")
        options = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "32768",
                   "analyzeduration": "0"}
        if size is not None:
            options["video_size"] = f"{size[0]}x{size[1]}"
        if rate is not None:
            options["framerate"] = str(rate)
        attempts = [dict(options, input_format=input_format)] if input_format else []
        attempts.append(options)
        last = None
        for attempt in attempts:
            try:
                self.container = av.open(device, "r", format=self.format, options=attempt)
                break
            except av.error.FileNotFoundError:
                raise InputError(f"camera {device}: no such device (see vdf-stream live "
                                 "--list-cameras)") from None
            except av.error.PermissionError:
                raise InputError(f"camera {device}: permission denied (add yourself to the "
                                 "video group)") from None
            except (av.error.FFmpegError, OSError) as error:
                last = error
                if getattr(error, "errno", None) == errno.EBUSY:
                    raise InputError(f"camera {device}: busy, another program is using it; "
                                     "close it and try again") from None
        else:
            wanted = " ".join(filter(None, [options.get("video_size"),
                                            options.get("framerate") and
                                            f"at {options['framerate']} fps"]))
            raise InputError(f"camera {device}: cannot capture {wanted or 'with its defaults'}"
                             f" ({last}); try another --size/--fps") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"camera {device}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "SLICE"  # frame threads would add frames of delay
        context = self.stream.codec_context
        rate = self.stream.average_rate or self.stream.guessed_rate or rate
        self.info = _clock_info(context.width, context.height,
                                Fraction(rate) if rate else None)
        self.size = (context.width, context.height)

    def _frames(self):
        import av

        from ..media.sources import frame_to_array

        first = None
        try:
            for packet in self.container.demux(self.stream):
                for frame in packet.decode():
                    if frame.width != self.size[0] or frame.height != self.size[1]:
                        raise InputError(f"camera {self.name}: the frame size changed from "
                                         f"{self.size[0]}x{self.size[1]} to "
                                         f"{frame.width}x{frame.height}")
                    stamp = float(frame.time) if frame.time is not None else time.perf_counter()
                    first = stamp if first is None else first
                    yield stamp - first, frame_to_array(frame, "rgb24", self._frame_info(frame))
        except (av.error.FFmpegError, OSError) as error:
            if self._stop.is_set():
                return
            raise DamagedInputError(f"camera {self.name} stopped delivering frames (unplugged?):"
                                    f" {error}") from None
        if not self._stop.is_set():
            raise DamagedInputError(f"camera {self.name} stopped delivering frames (unplugged?)")

    def _frame_info(self, frame) -> VideoInfo:
        from ..media.frames import VideoInfo
        from ..media.sources import resolve_colour

        matrix, colour_range = resolve_colour(int(frame.colorspace or 2),
                                              int(frame.color_range or 0), frame.height,
                                              frame.format.name)
        return VideoInfo(frame.width, frame.height, CLOCK_TIME_BASE, colorspace=matrix,
                         color_range=colour_range)

    def _release(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass


class RealtimeCapture(Capture):
    """Any source the engine reads (a file, ``-`` for y4m / NUT on stdin) played at its
    real pace, frames released at their timestamps, optionally scaled to ``size`` (swscale,
    in the capture thread) and looped ``loops`` times (files only)."""

    def __init__(self, spec: str, size: tuple[int, int] | None = None, loops: int = 1,
                 speed: float = 1.0):
        super().__init__()
        from ..media.sources import open_source

        self.name = spec
        self.spec = spec
        self.size = size
        self.loops = max(1, loops)
        self.speed = speed
        if loops > 1 and spec == "-":
            raise UsageError("a pipe cannot be looped")
        self.source = open_source(spec)
        info = self.source.info
        width, height = size or (info.width, info.height)
        self.info = _clock_info(width, height, info.frame_rate)

    def _frames(self):
        from ..media.sources import open_source

        period = float(1 / self.info.frame_rate) if self.info.frame_rate else 1 / 30
        offset = 0.0
        started = time.perf_counter()
        for loop in range(self.loops):
            source = self.source if loop == 0 else open_source(self.spec)
            try:
                last = 0.0
                for decoded in source.frames("rgb24"):
                    seconds = offset + float(decoded.pts * source.info.time_base)
                    last = seconds
                    wait = started + seconds / self.speed - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    if self._stop.is_set():
                        return
                    pixels = decoded.pixels
                    if self.size is not None and (pixels.shape[1], pixels.shape[0]) != self.size:
                        pixels = _resize(pixels, self.size)
                    yield seconds, pixels
                offset = last + period
                if source.damage:
                    raise DamagedInputError(f"{self.spec}: {source.damage}")
            finally:
                source.close()

    def _release(self) -> None:
        self.source.close()


def _resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import av

    frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    return frame.reformat(width=size[0], height=size[1], interpolation="BICUBIC").to_ndarray()


def pattern_frame(width: int, height: int, index: int) -> np.ndarray:
    """A moving test pattern ``(H, W, 3)`` uint8: colour bars, a gradient, a moving square
    and fine texture (so that every frame has content the perturbation can change)."""
    x = np.arange(width)[None, :]
    y = np.arange(height)[:, None]
    frame = np.empty((height, width, 3), np.uint8)
    bars = (x * 8 // width) % 8
    frame[..., 0] = np.where(bars & 1, 200, 40)
    frame[..., 1] = np.where(bars & 2, 190, 30)
    frame[..., 2] = (y * 255 // max(1, height - 1)).astype(np.uint8)
    frame ^= (((x + y + index) % 7) * 3).astype(np.uint8)[..., None]
    side = max(8, min(width, height) // 6)
    left = (index * 7) % max(1, width - side)
    top = (index * 3) % max(1, height - side)
    frame[top:top + side, left:left + side] = (255, 255, 255)
    return frame


class PatternCapture(Capture):
    """A generated test pattern (:func:`pattern_frame`) at ``rate`` frames per second, for
    ``frames`` frames (``None``: until stopped)."""

    def __init__(self, size: tuple[int, int] = (640, 360), rate: Fraction = Fraction(30),
                 frames: int | None = None):
        super().__init__()
        self.name = "pattern"
        self.count = frames
        self.info = _clock_info(size[0], size[1], Fraction(rate))

    def _frames(self):
        period = float(1 / self.info.frame_rate)
        started = time.perf_counter()
        index = 0
        while self.count is None or index < self.count:
            wait = started + index * period - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            yield index * period, pattern_frame(self.info.width, self.info.height, index)
            index += 1


# -------------------------------------------------------------------------------------
# Outputs


class Output:
    """Where protected frames go. ``write`` is called in capture order from the protector."""

    name = "output"

    def write(self, pixels: np.ndarray, frame: CapturedFrame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def import_pyvirtualcam():
    try:
        import pyvirtualcam
    except ImportError:
        raise OutputError(f"--virtual-cam needs pyvirtualcam: {LIVE_EXTRA}") from None
    return pyvirtualcam


class VirtualCameraOutput(Output):
    """A virtual camera through pyvirtualcam (v4l2loopback on Linux, the OBS virtual camera
    on Windows and macOS), RGB frames. Frames are sent as they are protected: the capture
    paces the output, so ``sleep_until_next_frame`` (which would add latency) is not used."""

    name = "virtual camera"

    def __init__(self, width: int, height: int, fps: float, device: str | None = None,
                 backend: str | None = None):
        pyvirtualcam = import_pyvirtualcam()
        try:
            self.camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                              device=device, backend=backend)
        except Exception as error:  # pyvirtualcam raises RuntimeError / ValueError
            detail = " ".join(str(error).split())
            raise OutputError(f"no virtual camera available ({detail}); "
                              f"{VIRTUAL_CAMERA_HELP}") from None
        self.device = self.camera.device

    def write(self, pixels: np.ndarray, frame: CapturedFrame) -> None:
        try:
            self.camera.send(pixels)
        except Exception as error:
            raise OutputError(f"virtual camera {self.device}: sending failed: {error}") from None

    def close(self) -> None:
        self.camera.close()


def display_available() -> bool:
    if platform.system() in ("Windows", "Darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class PreviewOutput(Output):
    """A local window (OpenCV's ``imshow``); only where a display exists."""

    name = "preview"

    def __init__(self, title: str = "vdf-stream live (protected)"):
        if not display_available():
            raise UsageError("--preview needs a display (DISPLAY / WAYLAND_DISPLAY is not "
                             "set); use --virtual-cam or --record instead")
        try:
            import cv2
        except ImportError:
            raise UsageError("--preview needs OpenCV: pip install opencv-python") from None
        self.cv2 = cv2
        self.title = title

    def write(self, pixels: np.ndarray, frame: CapturedFrame) -> None:
        self.cv2.imshow(self.title, pixels[:, :, ::-1])
        if self.cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise KeyboardInterrupt()

    def close(self) -> None:
        try:
            self.cv2.destroyWindow(self.title)
        except Exception:
            pass


class RecordOutput(Output):
    """A file (:class:`vdf_stream.media.sinks.FileSink`) timestamped by the capture clock
    (milliseconds), encoded in its own thread so that encoding adds no latency; a bounded
    queue in between (when the encoder falls behind, the protector waits: frames are
    then dropped at capture, never left out of the recording)."""

    name = "recording"

    def __init__(self, path: str, info: VideoInfo, crf: float = 18.0, preset: str = "veryfast",
                 overwrite: bool = False, queue_size: int = 16):
        import queue

        from ..media.sinks import EncodeOptions, FileSink

        if os.path.exists(path) and not overwrite:
            raise OutputError(f"{path} exists; use -y to overwrite it")
        self.sink = FileSink(path, info, EncodeOptions(crf=crf, preset=preset, copy_audio=False),
                             warn=lambda message: print(message, file=sys.stderr))
        self.sink.set_accepts("rgb24")
        self.path = path
        self.queue: queue.Queue = queue.Queue(queue_size)
        self.error: BaseException | None = None
        self.last_pts = -1
        self.thread = threading.Thread(target=self._run, name=f"record {path}", daemon=True)
        self.thread.start()

    def write(self, pixels: np.ndarray, frame: CapturedFrame) -> None:
        if self.error is not None:
            raise self.error
        pts = max(round(frame.seconds / CLOCK_TIME_BASE), self.last_pts + 1)
        self.last_pts = pts
        self.queue.put((pixels, pts))

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.sink.write(*item)
                except BaseException as error:
                    self.error = error

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        self.sink.close()
        if self.error is not None:
            raise self.error


class CallbackOutput(Output):
    """Calls ``function(pixels, frame)`` (tests, embedding)."""

    def __init__(self, function: Callable[[np.ndarray, CapturedFrame], None], name="callback"):
        self.function = function
        self.name = name

    def write(self, pixels: np.ndarray, frame: CapturedFrame) -> None:
        self.function(pixels, frame)


# -------------------------------------------------------------------------------------
# Parameters: the fallback and the double-buffered board


def fallback_params(height: int, width: int, eps: float, seed: int = 0, device=None):
    """The fallback set (and the optimiser's start): a seeded random spatial face term of
    standard deviation ``eps / 2`` (the vdf filter's start) and a seeded random phase of the
    frame term (0.1 radians), so frames without a face are changed too."""
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


class ParameterBoard:
    """The newest published parameters; :meth:`publish` swaps one reference under a lock."""

    def __init__(self, initial: Published):
        self._lock = threading.Lock()
        self._current = initial
        self.publications = 0

    def latest(self) -> Published:
        with self._lock:
            return self._current

    def publish(self, params, keyframe_index: int, steps: int) -> Published:
        with self._lock:
            self.publications += 1
            published = Published(params, self._current.generation + 1, keyframe_index,
                                  time.perf_counter(), steps)
            self._current = published
            return published


# -------------------------------------------------------------------------------------
# The optimiser thread


@dataclass
class Keyframe:
    frame: torch.Tensor  # (1, 3, H, W) clean, on the device
    region: object  # RegionOfInterest (1)
    index: int
    ready: object = None  # CUDA: an event recorded on the protector's stream after both


class Optimiser:
    """Optimises on the newest keyframe candidate and publishes (see the module docstring)."""

    def __init__(self, board: ParameterBoard, device: torch.device, eps: float,
                 keyframe_steps: int, refine_steps: int = 5, publish_steps: int = 5,
                 tau_reuse: float = 0.97, tau_refine: float = 0.90, learning_rate: float = 3.0,
                 seed: int = 0, perturb_options: dict | None = None, robust: bool = False,
                 confirm: int = 2):
        self.board = board
        self.confirm = confirm
        self.robust = robust
        self.perturb_options = dict(perturb_options or {})
        self.device = device
        self.eps = eps
        self.keyframe_steps = keyframe_steps
        self.refine_steps = refine_steps
        self.publish_steps = max(1, publish_steps)
        self.tau_reuse = tau_reuse
        self.tau_refine = tau_refine
        self.learning_rate = learning_rate
        self.seed = seed
        self.slot = LatestFrame()
        self.error: BaseException | None = None
        self.decisions = {"reuse": 0, "refine": 0, "new": 0}
        self.steps = 0
        self.busy_seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._descriptor = None
        self._adam = None  # the optimiser's Adam state, kept across publications

    def start(self) -> None:
        from ..models.mesh import FacePipeline
        from ..protection.objective import Objective, ObjectiveWeights, Targets, Transformations

        self.pipeline = FacePipeline(device=self.device, segmentation=False)
        transformations = Transformations() if self.robust else Transformations().none()
        weights = ObjectiveWeights(fidelity=_vdf_default("fidelity"))  # as in file mode
        self.objective = Objective(self.pipeline, weights, transformations)
        self.targets = Targets()
        self._thread = threading.Thread(target=self._run, name="optimiser", daemon=True)
        self._thread.start()

    def warm_up(self, height: int, width: int) -> None:
        """One optimiser step on a test pattern, before the capture starts: the first real
        step would otherwise pay for lazy initialisation (seconds on a CPU), delaying the
        first optimised parameters."""
        import torch

        from ..models.alignment import full_frame_roi
        from ..protection.objective import optimise

        frame = torch.from_numpy(pattern_frame(width, height, 0)).to(self.device)
        frame = frame.permute(2, 0, 1).unsqueeze(0).float().div_(255)
        region = full_frame_roi(1, (height, width), device=self.device)
        found = torch.ones(1, dtype=torch.bool, device=self.device)
        reference = self.objective.reference(frame, region, found)
        with torch.enable_grad():
            optimise(frame, reference, self.board.latest().params, self.objective, self.eps, 1,
                     self.learning_rate, torch.Generator().manual_seed(0), None,
                     self.perturb_options)

    def offer(self, keyframe: Keyframe) -> None:
        self.slot.put(keyframe)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.slot.close()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def reuse_rate(self) -> float:
        total = sum(self.decisions.values())
        return self.decisions["reuse"] / total if total else 0.0

    def _run(self) -> None:
        import torch

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
        import torch

        from ..protection.objective import optimise
        from ..protection.sharing import describe, similarity

        generator = torch.Generator().manual_seed(self.seed)
        while not self._stop.is_set():
            keyframe = self.slot.get(timeout=0.2)
            if keyframe is None:
                continue
            if stream is not None and keyframe.ready is not None:
                # the protector's stream wrote the frame and the region: wait for it, and
                # tell the allocator this stream uses them
                stream.wait_event(keyframe.ready)
                for tensor in (keyframe.frame, keyframe.region.center, keyframe.region.size,
                               keyframe.region.angle):
                    tensor.record_stream(stream)
            started = time.perf_counter()
            descriptor = describe(keyframe.frame, keyframe.region, True, keyframe.index)
            value = similarity(descriptor, self._descriptor) if self._descriptor else 0.0
            if value >= self.tau_reuse:
                self.decisions["reuse"] += 1
                continue
            action = "refine" if value >= self.tau_refine else "new"
            self.decisions[action] += 1
            budget = self.refine_steps if action == "refine" else self.keyframe_steps
            # Warm start from the parameters on screen (not scaled down as in file mode:
            # every publication is applied at once, so a weaker start would show).
            params = self.board.latest().params
            reference = self.objective.reference(
                keyframe.frame, keyframe.region, torch.ones(1, dtype=torch.bool,
                                                            device=keyframe.frame.device))
            if action == "new":
                self._adam = None  # a new scene: Adam's moments belong to the old one
            done = 0
            while done < budget and not self._stop.is_set():
                chunk = min(self.publish_steps, budget - done)
                with torch.enable_grad():
                    result = optimise(keyframe.frame, reference, params, self.objective,
                                      self.eps, chunk, self.learning_rate, generator,
                                      self.targets, self.perturb_options, state=self._adam,
                                      confirm=self.confirm)
                done += result.steps
                params = result.params
                # go on with the same Adam across publications and refined keyframes
                self._adam = result.state
                if stream is not None:
                    stream.synchronize()  # the set is complete before anyone reads it
                self.board.publish(params, keyframe.index, result.steps)
                if result.steps < chunk:
                    break  # early stop: the targets were reached
            self.steps += done
            # The keyframe follows the face (the vdf filter's ``track``): the next candidate
            # is compared with the frame the parameters on screen were last refined on.
            self._descriptor = descriptor
            self.busy_seconds += time.perf_counter() - started


# -------------------------------------------------------------------------------------
# Status


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[position]


class Nvml:
    """GPU utilisation and memory through NVML (nvidia-ml-py), when available."""

    def __init__(self, device: torch.device):
        self.handle = None
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            self.pynvml = pynvml
        except Exception:
            self.handle = None

    def read(self) -> tuple[int, float] | None:
        if self.handle is None:
            return None
        try:
            rates = self.pynvml.nvmlDeviceGetUtilizationRates(self.handle)
            memory = self.pynvml.nvmlDeviceGetMemoryInfo(self.handle)
            return int(rates.gpu), memory.used / 2**30
        except Exception:
            return None


@dataclass
class LiveStats:
    """What a live run measured (``latencies`` in seconds, one per delivered frame)."""

    captured: int = 0
    delivered: int = 0
    dropped: int = 0
    held: int = 0
    fallback_frames: int = 0
    seconds: float = 0.0
    latencies: list = field(default_factory=list)
    delivered_indices: list = field(default_factory=list)
    publications: int = 0
    optimiser_steps: int = 0
    decisions: dict = field(default_factory=dict)
    first_parameters_seconds: float | None = None
    apply_seconds: float = 0.0
    detect_seconds: float = 0.0

    @property
    def delivered_fps(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def capture_fps(self) -> float:
        return self.captured / self.seconds if self.seconds else 0.0

    def latency_ms(self, share: float) -> float:
        return _percentile(self.latencies, share) * 1000

    def summary(self) -> dict:
        total = sum(self.decisions.values())
        return {
            "captured": self.captured, "delivered": self.delivered,
            "dropped_at_capture": self.dropped, "held_back": self.held,
            "fallback_frames": self.fallback_frames, "seconds": round(self.seconds, 3),
            "capture_fps": round(self.capture_fps, 2), "delivered_fps": round(self.delivered_fps, 2),
            "added_latency_ms": {"p50": round(self.latency_ms(0.50), 1),
                                 "p95": round(self.latency_ms(0.95), 1),
                                 "max": round(max(self.latencies, default=0) * 1000, 1)},
            "publications": self.publications, "optimiser_steps": self.optimiser_steps,
            "optimiser_decisions": dict(self.decisions),
            "reuse_rate": round(self.decisions.get("reuse", 0) / total, 3) if total else 0.0,
            "first_parameters_seconds": (round(self.first_parameters_seconds, 2)
                                         if self.first_parameters_seconds is not None else None),
            "protector_seconds": {"detect": round(self.detect_seconds, 3),
                                  "apply": round(self.apply_seconds, 3)},
        }


class StatusLine:
    """The status line on stderr, every ``interval`` seconds (``\\r``-updated on a
    terminal, one line per interval otherwise)."""

    def __init__(self, stream=None, interval: float = 1.0, nvml: Nvml | None = None):
        self.stream = stream or sys.stderr
        self.interval = interval
        self.nvml = nvml
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = time.perf_counter()
        self.captured = self.delivered = 0
        self.window: list[float] = []
        self.shown = False

    def update(self, run: LiveProtector, latency: float) -> None:
        self.window.append(latency)
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.stream.write(("\r" if self.tty else "") + run.status_text(now - self.last, self)
                          + ("" if self.tty else "\n"))
        self.stream.flush()
        self.shown = True
        self.last = now
        self.window = []

    def finish(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# -------------------------------------------------------------------------------------
# The protector


def _vdf_default(name: str):
    """The ``vdf`` filter's default of an option: live and file mode share decisions."""
    from ..filters.vdf import VdfOptions

    return getattr(VdfOptions(), name)


@dataclass
class LiveOptions:
    """How a live run protects.

    Attributes:
        strength: the vdf filter's presets (eps and keyframe steps).
        eps, keyframe_steps: override the preset's.
        refine_steps, tau_reuse, tau_refine: the optimiser's sharing decisions (by
            default the ``vdf`` filter's).
        confirm: steps in a row that must read the targets before the optimiser stops a
            keyframe early, counted within one publication of ``publish_steps``. 2, not
            the ``vdf`` filter's 3: live, 3 measured no better (docs/live.md).
        publish_steps: the optimiser publishes after at most this many steps.
        fallback: ``perturb`` (the seeded random start before the first optimised set) or
            ``hold`` (no frame delivered before it).
        seed: seed of the fallback and of the optimiser's transformations.
        optimise: run the optimiser (off: the fallback only; for tests and measurements).
        detect_every: run the face detector on every N-th frame (1: every frame); the
            region of the last detection is used in between.
    """

    strength: str = "medium"
    eps: float | None = None
    keyframe_steps: int | None = None
    refine_steps: int = field(default_factory=lambda: _vdf_default("refine_steps"))
    tau_reuse: float = field(default_factory=lambda: _vdf_default("tau_reuse"))
    tau_refine: float = field(default_factory=lambda: _vdf_default("tau_refine"))
    confirm: int = 2
    publish_steps: int = 5
    fallback: str = "perturb"
    seed: int = 0
    optimise: bool = True
    detect_every: int = 1

    def perturb_options(self) -> dict:
        """The apply options (chroma, attention) of the ``vdf`` filter's defaults, so that
        live and file mode protect alike."""
        import inspect

        from ..filters.vdf import VdfOptions
        from ..protection.perturb import perturb

        defaults = VdfOptions(strength=self.strength)
        accepted = inspect.signature(perturb).parameters
        options = {name: getattr(defaults, name)
                   for name in ("chroma", "texture_floor", "texture_reference")
                   if hasattr(defaults, name) and name in accepted}
        options["region_floor"] = defaults.resolved_region_floor()
        return options

    def resolved_robust(self) -> bool:
        """The expectation over transformations of the preset, as in file mode."""
        from ..filters.vdf import ROBUST_PRESETS

        return ROBUST_PRESETS.get(self.strength, False)

    def resolved(self) -> tuple[float, int]:
        from ..filters.vdf import PRESETS

        if self.strength not in PRESETS:
            raise UsageError(f"--strength must be one of {', '.join(PRESETS)}, got "
                             f"{self.strength!r}")
        eps, steps = PRESETS[self.strength]
        eps = self.eps if self.eps is not None else eps
        steps = self.keyframe_steps if self.keyframe_steps is not None else steps
        if not (1 / 255 <= eps <= 1):
            raise UsageError(f"eps must be in [1/255, 1], got {eps}")
        if self.fallback not in FALLBACKS:
            raise UsageError(f"fallback must be one of {', '.join(FALLBACKS)}")
        if self.detect_every < 1 or self.publish_steps < 1 or self.confirm < 1:
            raise UsageError("detect_every, publish_steps and confirm must be at least 1")
        return eps, steps


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
    """

    def __init__(self, capture: Capture, outputs: list[Output], options: LiveOptions | None = None,
                 device: torch.device | str = "cpu", status: StatusLine | None = None,
                 slow_down: float = 0.0, max_seconds: float | None = None):
        import torch

        self.capture = capture
        self.outputs = outputs
        self.options = options or LiveOptions()
        self.eps, self.keyframe_steps = self.options.resolved()
        self.perturb_options = self.options.perturb_options()
        self.device = torch.device(device)
        self.status = status
        self.slow_down = slow_down
        self.max_seconds = max_seconds
        self.stats = LiveStats()
        self._stop = threading.Event()
        info = capture.info
        fallback = fallback_params(info.height, info.width, self.eps, self.options.seed,
                                   self.device)
        self.board = ParameterBoard(Published(fallback, 0, None, time.perf_counter()))
        self.optimiser = None
        if self.options.optimise:
            self.optimiser = Optimiser(self.board, self.device, self.eps, self.keyframe_steps,
                                       self.options.refine_steps, self.options.publish_steps,
                                       self.options.tau_reuse, self.options.tau_refine,
                                       seed=self.options.seed,
                                       perturb_options=self.perturb_options,
                                       robust=self.options.resolved_robust(),
                                       confirm=self.options.confirm)

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
                self.capture.start()
            self._loop(started)
        except BaseException as error:
            failure = error
        finally:
            self.stats.seconds = time.perf_counter() - started
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
        pattern = torch.from_numpy(pattern_frame(info.width, info.height, 0)).to(self.device)
        clean = pattern.permute(2, 0, 1).unsqueeze(0).float().div_(255)
        with torch.no_grad():
            for _ in range(2):
                region, found = choose_regions(self.detector.detect(clean),
                                               tuple(clean.shape[-2:]), device=self.device)
                perturb(clean, self.board.latest().params, region, self.eps, face_present=found,
                        **self.perturb_options)
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

        from ..models.mesh import choose_regions
        from ..protection.perturb import perturb

        region = found = None
        handled = 0
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
            pixels = torch.from_numpy(frame.pixels).to(self.device, non_blocking=True)
            clean = pixels.permute(2, 0, 1).unsqueeze(0).float().div_(255)
            with torch.no_grad():
                moment = time.perf_counter()
                if region is None or handled % self.options.detect_every == 0:
                    detections = self.detector.detect(clean)
                    region, found = choose_regions(detections, tuple(clean.shape[-2:]),
                                                   device=self.device)
                handled += 1
                moment_applied = time.perf_counter()
                self.stats.detect_seconds += moment_applied - moment
                published = self.board.latest()
                if published.generation == 0 and self.options.fallback == "hold":
                    self.stats.held += 1
                    self._offer(clean, region, found, frame)
                    continue
                protected = perturb(clean, published.params, region, self.eps,
                                    face_present=found, **self.perturb_options)
                out = protected[0].mul(255).round_().clamp_(0, 255).to(torch.uint8)
                out = out.permute(1, 2, 0).contiguous().cpu().numpy()
                self.stats.apply_seconds += time.perf_counter() - moment_applied
            self._offer(clean, region, found, frame)
            if self.slow_down:
                time.sleep(self.slow_down)
            for output in self.outputs:
                output.write(out, frame)
            latency = time.perf_counter() - frame.captured_at
            self.stats.delivered += 1
            self.stats.latencies.append(latency)
            self.stats.delivered_indices.append(frame.index)
            if published.generation == 0:
                self.stats.fallback_frames += 1
            elif self.stats.first_parameters_seconds is None:
                self.stats.first_parameters_seconds = time.perf_counter() - started
            if self.status is not None:
                self.status.update(self, latency)

    def _offer(self, clean, region, found, frame) -> None:
        if self.optimiser is not None and bool(found[0]):
            ready = None
            if self.device.type == "cuda":
                import torch

                ready = torch.cuda.Event()
                ready.record()
            self.optimiser.offer(Keyframe(clean, region, frame.index, ready))


# -------------------------------------------------------------------------------------
# The command


def add_parser(commands, common, size_type, rate_type) -> None:
    """``vdf-stream live`` (called by :func:`vdf_stream.cli.build_parser`)."""
    import argparse

    from ..errors import EXIT_CODES_HELP

    examples = """\
examples:
  vdf-stream live --virtual-cam                      first camera -> virtual camera
  vdf-stream live --camera /dev/video2 --size 1280x720 --fps 30 --virtual-cam --record me.mp4
  vdf-stream live --list-cameras
  vdf-stream live --realtime talk.mp4 --record talk_live.mp4   a file played at its pace

status line (stderr): capture fps | output fps | frames dropped at capture | added latency
p50/p95 (capture to delivery) | parameters in use (fallback, or set #N and its age) |
reuse rate of the optimiser | GPU utilisation and memory (NVML, when available)

before the first optimised parameters frames get the fallback perturbation (bounded by
eps, not optimised); --hold delivers nothing until then. See docs/live.md.
"""
    live = commands.add_parser(
        "live", help="protect a camera live, out to a virtual camera / preview / recording",
        description="Capture a camera (or play INPUT at its real pace with --realtime), "
                    "protect every frame with the newest optimised parameters, and send it "
                    "to a virtual camera, a preview window and/or a recording. No "
                    "unprotected frame is delivered; when the machine cannot keep up, "
                    "frames are dropped at capture (counted), never delivered late.",
        epilog=examples + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    source = live.add_argument_group("input")
    source.add_argument("--camera", metavar="DEV",
                        help="camera device: /dev/video0 (Linux), 0 (macOS), "
                             '"video=NAME" (Windows); default: the first camera found')
    source.add_argument("--list-cameras", action="store_true",
                        help="list the cameras and exit")
    source.add_argument("--size", type=size_type, metavar="WxH",
                        help="capture size, e.g. 1280x720 (with --realtime: frames are scaled)")
    source.add_argument("--fps", type=rate_type, metavar="N",
                        help="capture frame rate, e.g. 30 (default: the camera's)")
    source.add_argument("--input-format", default="mjpeg", metavar="FMT",
                        help="camera pixel format asked for first (default mjpeg; the "
                             "camera's default when refused)")
    source.add_argument("--realtime", metavar="INPUT",
                        help="instead of a camera: a file, or - for y4m / NUT on stdin, "
                             "played at its real pace")
    sinks = live.add_argument_group("outputs")
    sinks.add_argument("--virtual-cam", action="store_true",
                       help="send to a virtual camera (pyvirtualcam: v4l2loopback on Linux, "
                            "OBS virtual camera on Windows / macOS)")
    sinks.add_argument("--virtual-cam-device", metavar="DEV",
                       help="which virtual camera, e.g. /dev/video10 (default: the first)")
    sinks.add_argument("--preview", action="store_true",
                       help="show the protected video in a window (needs a display and "
                            "opencv-python)")
    sinks.add_argument("--record", metavar="PATH",
                       help="record the protected stream (H.264, capture-clock timestamps)")
    sinks.add_argument("--record-original", metavar="PATH",
                       help="record the captured frames that were delivered, unprotected "
                            "(lossless), to measure with `vdf-stream eval ORIGINAL RECORD`")
    sinks.add_argument("-y", "--overwrite", action="store_true",
                       help="overwrite the recordings if they exist")
    protection = live.add_argument_group("protection")
    protection.add_argument("--strength", choices=("low", "medium", "high"), default="medium",
                            help="low, medium (default) or high, as in protect (eps 3/255, "
                                 "4/255 or 6/255)")
    protection.add_argument("--hold", action="store_true",
                            help="deliver nothing until the first optimised parameters "
                                 "(default: the fallback perturbation meanwhile)")
    protection.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    protection.add_argument("--device", default="auto", metavar="DEVICE",
                            help="auto (a CUDA GPU when present), cpu, cuda")
    protection.add_argument("--seconds", type=float, metavar="S",
                            help="stop after S seconds (default: until Ctrl-C or the input ends)")
    common(live)


def run_command(args) -> int:
    """``vdf-stream live``: returns the exit code (errors are raised as VdfError)."""
    from ..pipeline.engine import resolve_device
    from ..errors import EXIT_OK

    if args.list_cameras:
        cameras = list_cameras()
        for camera in cameras:
            note = "  (loopback: a virtual camera)" if camera.loopback else ""
            print(f"{camera.device}\t{camera.name}{note}")
        if not cameras:
            print(list_cameras_hint(), file=sys.stderr)
        return EXIT_OK
    if not (args.virtual_cam or args.preview or args.record):
        raise UsageError("choose at least one output: --virtual-cam, --preview or --record PATH")
    if args.realtime and args.camera:
        raise UsageError("give either --camera or --realtime, not both")
    options = LiveOptions(strength=args.strength, seed=args.seed,
                          fallback="hold" if args.hold else "perturb")
    options.resolved()
    device = resolve_device(args.device)
    for path in (args.record, args.record_original):
        if path and os.path.exists(path) and not args.overwrite:
            raise OutputError(f"{path} exists; use -y to overwrite it")
    if args.preview:
        if not display_available():
            raise UsageError("--preview needs a display (DISPLAY / WAYLAND_DISPLAY is not set);"
                             " use --virtual-cam or --record instead")
    if args.virtual_cam:
        import_pyvirtualcam()
    if args.realtime:
        capture: Capture = RealtimeCapture(args.realtime, size=args.size)
    else:
        capture = DeviceCapture(args.camera or default_camera(), size=args.size, rate=args.fps,
                                input_format=args.input_format or None)
    outputs: list[Output] = []
    try:
        info = capture.info
        rate = float(args.fps or info.frame_rate or 30)
        if args.virtual_cam:
            outputs.append(VirtualCameraOutput(info.width, info.height, rate,
                                               device=args.virtual_cam_device))
        if args.preview:
            outputs.append(PreviewOutput())
        if args.record:
            outputs.append(RecordOutput(args.record, info, overwrite=args.overwrite))
        original = None
        if args.record_original:
            original = RecordOutput(args.record_original, info, crf=0, preset="veryfast",
                                    overwrite=args.overwrite)
            outputs.append(OriginalOutput(original))
    except BaseException:
        for output in outputs:
            try:
                output.close()
            except BaseException:
                pass
        capture.stop()
        capture._release()
        raise
    show = not args.quiet
    status = StatusLine(nvml=Nvml(device)) if show else None
    if show:
        where = ", ".join(filter(None, [
            f"virtual camera {outputs[0].device}" if args.virtual_cam else None,
            "preview" if args.preview else None, args.record]))
        print(f"live: {capture.name} {info.width}x{info.height} -> {where}; Ctrl-C stops",
              file=sys.stderr)
    run = LiveProtector(capture, outputs, options, device=device, status=status,
                        max_seconds=args.seconds)
    stats = run.run()
    if show:
        summary = stats.summary()
        print(f"live: {stats.delivered} frames delivered of {stats.captured} captured "
              f"({stats.dropped} dropped at capture, {stats.held} held back), "
              f"{summary['delivered_fps']} fps, added latency p50 "
              f"{summary['added_latency_ms']['p50']} ms p95 {summary['added_latency_ms']['p95']}"
              f" ms, {stats.publications} parameter sets published", file=sys.stderr)
    return EXIT_OK


class OriginalOutput(Output):
    """Records the captured (unprotected) frame of every delivered frame: the reference
    of ``vdf-stream eval`` (the pair is aligned frame by frame)."""

    name = "original recording"

    def __init__(self, recorder: RecordOutput):
        self.recorder = recorder

    def write(self, pixels: np.ndarray, frame: CapturedFrame) -> None:
        self.recorder.write(frame.pixels, frame)

    def close(self) -> None:
        self.recorder.close()
