"""``vdf-stream live``: its options, and the run (:mod:`vdf_stream.live` does the work)."""

from __future__ import annotations

import os
import sys

from ..errors import OutputError, UsageError
from ..live.protector import LiveOptions, LiveProtector
from ..live.status import Nvml, StatusLine
from ..media.capture import (Capture, DeviceCapture, RealtimeCapture, default_camera,
                             list_cameras, list_cameras_hint)
from ..media.outputs import (OriginalOutput, Output, PreviewOutput, RecordOutput,
                             VirtualCameraOutput, display_available, import_pyvirtualcam)
from ..protection.recipes import resolve_targets
from .common import add_common_options, add_strength_options, parse_rate, parse_size


def add_parser(commands) -> None:
    """``vdf-stream live`` (called by :func:`vdf_stream.cli.main.build_parser`)."""
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
    source.add_argument("--size", type=parse_size, metavar="WxH",
                        help="capture size, e.g. 1280x720 (with --realtime: frames are scaled)")
    source.add_argument("--fps", type=parse_rate, metavar="N",
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
    add_strength_options(protection)
    protection.add_argument("--hold", action="store_true",
                            help="deliver nothing until the first optimised parameters "
                                 "(default: the fallback perturbation meanwhile)")
    protection.add_argument("--seconds", type=float, metavar="S",
                            help="stop after S seconds (default: until Ctrl-C or the input ends)")
    add_common_options(live)


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
    options = LiveOptions(strength=args.strength or "medium", seed=args.seed or 0,
                          against=args.against or "none",
                          fallback="hold" if args.hold else "perturb")
    options.check()
    # weights named but absent: exit 6 before the camera opens
    _, note = resolve_targets(options)
    if note is not None:
        print(f"note: {note}", file=sys.stderr)
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
