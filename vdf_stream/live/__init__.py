"""Live protection: a camera (or any source played at its real pace) in, protected frames out
to a virtual camera, a preview window and/or a recording, with bounded added latency.

- :mod:`.protector`: :class:`LiveOptions` (the ``vdf`` filter's options and live's own) and
  :class:`LiveProtector`, the loop: capture -> protect -> outputs;
- :mod:`.optimiser`: the optimiser thread (the same
  :class:`~vdf_stream.protection.protector.Protector` as the ``vdf`` filter) and the
  double-buffered parameter board;
- :mod:`.status`: the figures of a run and the status line;

Cameras and file playback are :mod:`vdf_stream.media.capture`; the virtual camera, preview
and recording :mod:`vdf_stream.media.outputs`; the command :mod:`vdf_stream.cli.live`.
"""

from ..media.capture import (Capture, CapturedFrame, DeviceCapture, LatestFrame,
                             PatternCapture, RealtimeCapture, default_camera, list_cameras,
                             pattern_frame)
from ..media.outputs import (CallbackOutput, OriginalOutput, Output, PreviewOutput,
                             RecordOutput, VirtualCameraOutput)
from .optimiser import Optimiser, ParameterBoard, Published, fallback_params
from .protector import FALLBACKS, LiveOptions, LiveProtector
from .status import LiveStats, Nvml, StatusLine

__all__ = ["Capture", "CapturedFrame", "DeviceCapture", "LatestFrame", "PatternCapture",
           "RealtimeCapture", "default_camera", "list_cameras", "pattern_frame",
           "CallbackOutput", "OriginalOutput", "Output", "PreviewOutput", "RecordOutput",
           "VirtualCameraOutput", "Optimiser", "ParameterBoard",
           "Published", "fallback_params", "FALLBACKS", "LiveOptions", "LiveProtector",
           "LiveStats", "Nvml", "StatusLine"]
