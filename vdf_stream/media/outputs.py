"""Where live frames go: a virtual camera (OBS, v4l2loopback), a preview window, a recording.

A missing virtual camera or pyvirtualcam is an :class:`~vdf_stream.errors.OutputError` with
the one line that says how to get it.
"""

from __future__ import annotations

import os
import sys
import threading
import platform
from typing import Callable

import numpy as np

from ..errors import OutputError, UsageError
from ..resources import lower_priority
from .capture import CLOCK_TIME_BASE, CapturedFrame
from .frames import VideoInfo

RECORDING_NICENESS = 10  # a recording yields to the frames, and not to the optimiser

VIRTUAL_CAMERA_HELP = ("load the v4l2loopback driver (`sudo modprobe v4l2loopback devices=1 "
                       "exclusive_caps=1`) on Linux, or start OBS's virtual camera once "
                       "(Windows, macOS)")
LIVE_EXTRA = 'pip install "vdf-stream[live]"'


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
                 overwrite: bool = False, queue_size: int = 16, codec: str = "libx264"):
        import queue

        from ..media.sinks import EncodeOptions, FileSink

        if os.path.exists(path) and not overwrite:
            raise OutputError(f"{path} exists; use -y to overwrite it")
        self.sink = FileSink(path, info, EncodeOptions(codec=codec, crf=crf, preset=preset,
                                                      copy_audio=False),
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
        # below the frames' priority (the encoder's own threads, started from this one on
        # its first frame, too): a live stream's frames first, the recording after them
        lower_priority(RECORDING_NICENESS)
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
