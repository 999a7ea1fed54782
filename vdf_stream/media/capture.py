"""Live capture: a camera, or a file played at its real pace, into a one-slot buffer.

Each capture decodes with low-delay settings (no frame threads, ``nobuffer``) on its own
thread and puts each frame into a :class:`LatestFrame` slot. A newer frame replaces one the
consumer has not taken yet: that frame is *dropped at capture* and counted. Nothing queues
up, so a slow machine delivers fewer frames, never late ones in a pile.

A missing, busy or unsupported camera is an :class:`~vdf_stream.errors.InputError`, a camera
that stops part-way a :class:`~vdf_stream.errors.DamagedInputError`.
"""

from __future__ import annotations

import errno
import os
import platform
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DamagedInputError, InputError, UsageError
from .frames import VideoInfo

CLOCK_TIME_BASE = Fraction(1, 1000)  # capture clock in milliseconds


@dataclass
class CapturedFrame:
    """One captured frame.

    Attributes:
        index: position in the capture order (counting dropped frames too).
        seconds: capture clock, seconds since the first frame (the recording's timestamps).
        captured_at: ``time.perf_counter()`` when the frame was decoded (latency origin).
        pixels: ``(H, W, 3)`` uint8 RGB.
        prepared: what the capture's :attr:`Capture.prepare` made of the pixels (``None``
            without one).
    """

    index: int
    seconds: float
    captured_at: float
    pixels: np.ndarray
    prepared: object = None


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
        # Set by the consumer once it delivered its first frame. A file played at its pace
        # starts its clock then, so that start-up (the first frame's detection and
        # optimisation) does not eat the clip; a camera does not wait (it drops at capture).
        self.consumer_ready = threading.Event()
        # Run on the newest decoded frame on a thread of its own, before the slot (its time
        # counts in the frame's latency): the consumer's per-frame work that needs no
        # parameters (live mode's face detection), beside the protection of the frame before.
        self.prepare: Callable[[np.ndarray], object] | None = None
        self._decoded: LatestFrame | None = None
        self._preparer: threading.Thread | None = None

    def _frames(self):
        raise NotImplementedError

    def start(self) -> None:
        if self.prepare is not None:
            # decoding keeps the camera's pace on its own thread; the newest decoded frame
            # is prepared on another (a frame it has not taken yet is dropped, and counted)
            self._decoded = LatestFrame()
            self._preparer = threading.Thread(target=self._prepare_frames,
                                              name=f"prepare {self.name}", daemon=True)
            self._preparer.start()
        self._thread = threading.Thread(target=self._run, name=f"capture {self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        slot = self._decoded if self._decoded is not None else self.slot
        try:
            for seconds, pixels in self._frames():
                if self._stop.is_set():
                    break
                now = time.perf_counter()
                if self.started_at is None:
                    self.started_at = now
                slot.put(CapturedFrame(self.captured, seconds, now, pixels))
                self.captured += 1
                self.last_frame_at = now
        except BaseException as error:  # handed to the protector's thread
            self.error = error
        finally:
            slot.close()
            self._release()

    def _prepare_frames(self) -> None:
        try:
            while True:
                frame = self._decoded.get(timeout=0.5)
                if frame is None:
                    if self._decoded.closed:
                        return
                    continue
                frame.prepared = self.prepare(frame.pixels)
                self.slot.put(frame)
        except BaseException as error:  # handed to the protector's thread
            self.error = self.error or error
            self._stop.set()
        finally:
            self.slot.close()

    def _release(self) -> None:
        pass

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._preparer is not None:
            self._preparer.join(timeout)

    @property
    def dropped(self) -> int:
        """Frames decoded and never delivered: replaced before they were prepared or taken."""
        return self.slot.dropped + (self._decoded.dropped if self._decoded is not None else 0)


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
        started = None  # the clock starts when the consumer took the first frame
        for loop in range(self.loops):
            source = self.source if loop == 0 else open_source(self.spec)
            try:
                last = 0.0
                for decoded in source.frames("rgb24"):
                    seconds = offset + float(decoded.pts * source.info.time_base)
                    last = seconds
                    if started is None and self.captured:
                        while not (self.consumer_ready.wait(0.1) or self._stop.is_set()):
                            pass
                        started = time.perf_counter() - seconds / self.speed
                    if started is not None:
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
