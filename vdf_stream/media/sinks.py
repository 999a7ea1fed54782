"""Where frames go: container files (encoded with PyAV), or y4m, NUT or raw frames on stdout.

A sink is built once from the description of the stream it will receive, then takes frames
one at a time (:meth:`Sink.write`, called from the encoder thread) and must be closed
(:meth:`Sink.close`), which flushes the encoder and writes the container's trailer, so the
output is playable even when the run stopped early. A file sink that received no frame at
all removes its file instead of leaving an empty container behind.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import y4m
from ..errors import OutputError, ReaderClosed, UsageError
from .frames import VideoInfo
from .sources import SWSCALE_COLORSPACE

STDOUT_FORMATS = ("y4m", "nut", "rawvideo")
HARDWARE_ENCODERS = ("h264_nvenc", "hevc_nvenc", "av1_nvenc")


@dataclass(frozen=True)
class EncodeOptions:
    """How a file output is encoded (ignored for uncompressed stdout formats)."""

    codec: str = "libx264"
    crf: float | None = 18.0
    preset: str | None = "medium"
    pix_fmt: str | None = None  # None: yuv420p
    copy_audio: bool = True  # audio and subtitle streams copied without re-encoding
    threads: int = 0  # 0: the encoder decides


class Sink:
    """Base class. ``accepts`` is the pixel layout :meth:`write` wants (rgb24 or yuv420p)."""

    accepts: str = "rgb24"

    def __init__(self) -> None:
        self.frames_written = 0

    def write(self, pixels: np.ndarray, pts: int) -> None:
        raise NotImplementedError

    def mux_copy(self, packet) -> None:
        """Copy a packet of another stream (audio, subtitles) unchanged."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Stop after a failure: finalise what was written (or remove an empty output)."""
        self.close()


def _check_even(info: VideoInfo, pix_fmt: str) -> None:
    if pix_fmt in ("yuv420p", "yuvj420p", "nv12") and (info.width % 2 or info.height % 2):
        raise OutputError(
            f"{info.width}x{info.height} has an odd side, which {pix_fmt} (4:2:0) cannot store; "
            f"add a scale to even sides (--vf \"...,scale=w=-2:h={info.height // 2 * 2}\") "
            "or choose --pix-fmt yuv444p"
        )


def _frame_from_pixels(pixels: np.ndarray, accepts: str, pix_fmt: str, info: VideoInfo):
    """Build an ``av.VideoFrame`` in ``pix_fmt`` carrying the stream's colour tags."""
    import av

    if accepts == "yuv420p":
        frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
        if pix_fmt != "yuv420p":
            frame = frame.reformat(format=pix_fmt)
    else:
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        if pix_fmt != "rgb24":
            frame = frame.reformat(
                format=pix_fmt,
                dst_colorspace=SWSCALE_COLORSPACE[info.colorspace],
                src_color_range="JPEG",
                dst_color_range="JPEG" if info.color_range == "full" else "MPEG",
            )
    frame.colorspace = info.tag_colorspace
    frame.color_range = info.tag_color_range
    frame.color_primaries = info.tag_color_primaries
    frame.color_trc = info.tag_color_trc
    return frame


# -------------------------------------------------------------------------------------
# Files


def _usable_encoder(name: str, info: VideoInfo, pix_fmt: str) -> str | None:
    """None when ``name`` can encode here, else the reason it cannot."""
    import av

    try:
        context = av.CodecContext.create(name, "w")
    except Exception as error:  # PyAV raises several types for an unknown codec
        return f"this FFmpeg build has no encoder {name} ({error})"
    try:
        context.width, context.height = info.width, info.height
        context.pix_fmt = pix_fmt
        context.time_base = Fraction(1, 25)
        context.framerate = Fraction(25, 1)
        context.open()
    except (av.error.FFmpegError, ValueError, OSError) as error:
        return str(error)
    finally:
        try:
            context.close()
        except Exception:
            pass
    return None


class FileSink(Sink):
    """Encode to a container file chosen from the extension of ``path``."""

    accepts = "rgb24"

    def __init__(self, path: str, info: VideoInfo, options: EncodeOptions,
                 copy_from: list | None = None, container_format: str | None = None,
                 warn=None):
        super().__init__()
        import av

        self.path = Path(path)
        self.info = info
        self.warn = warn or (lambda message: print(message, file=sys.stderr))
        self.lock = threading.Lock()
        self.closed = False
        pix_fmt = options.pix_fmt or "yuv420p"
        _check_even(info, pix_fmt)
        codec = options.codec
        if codec not in av.codecs_available:
            if codec in HARDWARE_ENCODERS:
                reason = "this FFmpeg build has no such encoder"
            else:
                raise UsageError(f"unknown codec {codec!r}; try libx264, libx265, h264_nvenc, "
                                 "hevc_nvenc, mpeg4 or ffv1")
        else:
            reason = _usable_encoder(codec, info, pix_fmt)
        if reason is not None:
            if codec in HARDWARE_ENCODERS:
                self.warn(f"warning: {codec} is not usable here ({reason}); "
                          "encoding with libx264 instead")
                codec = "libx264"
            else:
                raise OutputError(f"encoder {codec} cannot encode {info.width}x{info.height} "
                                  f"{pix_fmt}: {reason}")
        self.codec = codec
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"{path}: the folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise OutputError(f"{path}: the folder {parent} is not writable")
        if self.path.is_dir():
            raise OutputError(f"{path}: is a folder")
        try:
            self.container = av.open(str(self.path), "w", format=container_format)
        except ValueError:
            raise OutputError(
                f"{path}: cannot tell the container from the extension "
                f"{self.path.suffix or '(none)'}; use .mp4, .mkv, .mov or .nut"
            ) from None
        except (av.error.FFmpegError, OSError) as error:
            raise OutputError(f"{path}: cannot create: {error}") from None
        try:
            self._add_streams(options, pix_fmt, copy_from or [])
        except BaseException:
            self._discard()
            raise

    def _add_streams(self, options: EncodeOptions, pix_fmt: str, copy_from: list) -> None:
        import av

        info = self.info
        rate = info.frame_rate.limit_denominator(1_000_000) if info.frame_rate else None
        stream = self.container.add_stream(self.codec, rate=rate)
        stream.width = info.width
        stream.height = info.height
        stream.pix_fmt = pix_fmt
        stream.time_base = info.time_base
        context = stream.codec_context
        context.time_base = info.time_base
        if info.sample_aspect_ratio:
            context.sample_aspect_ratio = info.sample_aspect_ratio
        context.colorspace = info.tag_colorspace
        context.color_range = info.tag_color_range
        context.color_primaries = info.tag_color_primaries
        context.color_trc = info.tag_color_trc
        encoder_options = {}
        if self.codec in ("libx264", "libx265", "libx264rgb"):
            if options.crf is not None:
                encoder_options["crf"] = f"{options.crf:g}"
            if options.preset:
                encoder_options["preset"] = options.preset
        elif self.codec in HARDWARE_ENCODERS:
            if options.crf is not None:
                encoder_options["cq"] = f"{options.crf:g}"
                encoder_options["rc"] = "vbr"
            if options.preset:
                encoder_options["preset"] = {"ultrafast": "p1", "superfast": "p2",
                                             "veryfast": "p3", "faster": "p4", "fast": "p4",
                                             "medium": "p5", "slow": "p6", "slower": "p7",
                                             "veryslow": "p7"}.get(options.preset,
                                                                   options.preset)
        context.options = encoder_options
        # frame threads, as the ffmpeg command line uses (PyAV's default is slice threads,
        # which make larger files at the same quality)
        context.thread_type = "AUTO"
        if options.threads:
            context.thread_count = options.threads
        if info.rotation and hasattr(stream, "set_display_rotation"):
            stream.set_display_rotation(info.rotation)
        self.video = stream
        self.pix_fmt = pix_fmt
        self.copies = {}
        if options.copy_audio:
            for source_stream in copy_from:
                try:
                    copied = self.container.add_stream_from_template(source_stream)
                except (ValueError, av.error.FFmpegError) as error:
                    self.warn(f"warning: {source_stream.type} stream {source_stream.index} "
                              f"({source_stream.codec_context.name}) cannot be stored in "
                              f"{self.path.suffix} ({error}); it is left out")
                    continue
                self.copies[source_stream.index] = copied
        self.accepts = "yuv420p" if pix_fmt == "yuv420p" else "rgb24"

    def set_accepts(self, layout: str) -> None:
        """Frames may arrive as I420 (``yuv420p``) when the graph kept them so."""
        self.accepts = layout

    def write(self, pixels: np.ndarray, pts: int) -> None:
        import av

        frame = _frame_from_pixels(pixels, self.accepts, self.pix_fmt, self.info)
        frame.pts = pts
        frame.time_base = self.info.time_base
        try:
            packets = self.video.encode(frame)
            with self.lock:
                self.container.mux(packets)
        except (av.error.FFmpegError, OSError) as error:
            raise OutputError(f"{self.path}: writing failed: {error}") from None
        self.frames_written += 1

    def mux_copy(self, packet) -> None:
        import av

        target = self.copies.get(packet.stream.index)
        if target is None:
            return
        packet.stream = target
        try:
            with self.lock:
                self.container.mux(packet)
        except (av.error.FFmpegError, OSError) as error:
            raise OutputError(f"{self.path}: writing a copied packet failed: {error}") from None

    def close(self) -> None:
        import av

        if self.closed:
            return
        self.closed = True
        if self.frames_written == 0:
            self._discard()
            return
        try:
            with self.lock:
                self.container.mux(self.video.encode(None))
                self.container.close()
        except (av.error.FFmpegError, OSError) as error:
            raise OutputError(f"{self.path}: finishing the file failed: {error}") from None

    def _discard(self) -> None:
        self.closed = True
        try:
            self.container.close()
        except Exception:
            pass
        try:
            self.path.unlink()
        except OSError:
            pass


# -------------------------------------------------------------------------------------
# stdout


def _write_or_closed(stream: BinaryIO, data) -> None:
    try:
        stream.write(data)
    except BrokenPipeError:
        raise ReaderClosed() from None
    except OSError as error:
        if error.errno == errno.EPIPE:
            raise ReaderClosed() from None
        raise OutputError(f"stdout: {error.strerror}") from None


class Y4mSink(Sink):
    """YUV4MPEG2 on a byte stream; the layout ffmpeg reads with ``-i -``."""

    def __init__(self, stream: BinaryIO, info: VideoInfo, pix_fmt: str | None = None):
        super().__init__()
        self.stream = stream
        self.info = info
        self.pix_fmt = pix_fmt or "yuv420p"
        if self.pix_fmt not in ("yuv420p", "yuv444p", "gray"):
            raise UsageError(f"y4m output supports yuv420p, yuv444p and gray, not {self.pix_fmt}")
        _check_even(info, self.pix_fmt)
        self.accepts = "yuv420p" if self.pix_fmt == "yuv420p" else "rgb24"
        rate = info.frame_rate or (1 / info.time_base)
        self.header = y4m.format_header(info.width, info.height, Fraction(rate), self.pix_fmt,
                                        info.color_range, info.sample_aspect_ratio)
        self.started = False

    def set_accepts(self, layout: str) -> None:
        if self.pix_fmt == "yuv420p":
            self.accepts = layout

    def write(self, pixels: np.ndarray, pts: int) -> None:
        if not self.started:
            _write_or_closed(self.stream, self.header)
            self.started = True
        if self.accepts == "yuv420p" and self.pix_fmt == "yuv420p":
            data = np.ascontiguousarray(pixels)
        else:
            frame = _frame_from_pixels(pixels, self.accepts, self.pix_fmt, self.info)
            data = _planes_bytes(frame)
        _write_or_closed(self.stream, b"FRAME\n")
        _write_or_closed(self.stream, memoryview(data).cast("B") if isinstance(
            data, np.ndarray) else data)
        self.frames_written += 1

    def close(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise ReaderClosed() from None
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise ReaderClosed() from None


def _planes_bytes(frame) -> bytes:
    """The planes of an ``av.VideoFrame`` packed without line padding."""
    chunks = []
    for plane in frame.planes:
        bytes_per_row = plane.width * (3 if frame.format.name in ("rgb24", "bgr24") else 1)
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        chunks.append(rows[:, :bytes_per_row].tobytes())
    return b"".join(chunks)


class RawSink(Sink):
    """Headerless frames, one after another, in ``pix_fmt``."""

    def __init__(self, stream: BinaryIO, info: VideoInfo, pix_fmt: str | None = None):
        super().__init__()
        self.stream = stream
        self.info = info
        self.pix_fmt = pix_fmt or "yuv420p"
        if self.pix_fmt not in ("rgb24", "bgr24", "yuv420p", "yuv444p", "gray"):
            raise UsageError(f"raw output supports rgb24, bgr24, yuv420p, yuv444p and gray, "
                             f"not {self.pix_fmt}")
        _check_even(info, self.pix_fmt)
        self.accepts = "yuv420p" if self.pix_fmt == "yuv420p" else "rgb24"

    def set_accepts(self, layout: str) -> None:
        if self.pix_fmt == "yuv420p":
            self.accepts = layout

    def write(self, pixels: np.ndarray, pts: int) -> None:
        if self.pix_fmt == self.accepts:
            data = np.ascontiguousarray(pixels)
        elif self.pix_fmt == "bgr24" and self.accepts == "rgb24":
            data = np.ascontiguousarray(pixels[:, :, ::-1])
        else:
            data = np.frombuffer(_planes_bytes(
                _frame_from_pixels(pixels, self.accepts, self.pix_fmt, self.info)), np.uint8)
        _write_or_closed(self.stream, memoryview(data).cast("B"))
        self.frames_written += 1

    def close(self) -> None:
        Y4mSink.close(self)  # type: ignore[arg-type]


class NutSink(Sink):
    """NUT with uncompressed video on a byte stream: keeps every timestamp (VFR survives)."""

    def __init__(self, stream: BinaryIO, info: VideoInfo, pix_fmt: str | None = None):
        super().__init__()
        import av

        self.info = info
        self.pix_fmt = pix_fmt or "yuv420p"
        _check_even(info, self.pix_fmt)
        self.stream_out = stream
        self.container = av.open(stream, "w", format="nut")
        rate = info.frame_rate.limit_denominator(1_000_000) if info.frame_rate else None
        self.video = self.container.add_stream("rawvideo", rate=rate)
        self.video.width, self.video.height = info.width, info.height
        self.video.pix_fmt = self.pix_fmt
        self.video.time_base = info.time_base
        self.video.codec_context.time_base = info.time_base
        self.accepts = "yuv420p" if self.pix_fmt == "yuv420p" else "rgb24"
        self.closed = False

    def set_accepts(self, layout: str) -> None:
        if self.pix_fmt == "yuv420p":
            self.accepts = layout

    def write(self, pixels: np.ndarray, pts: int) -> None:
        frame = _frame_from_pixels(pixels, self.accepts, self.pix_fmt, self.info)
        frame.pts = pts
        frame.time_base = self.info.time_base
        self._mux(self.video.encode(frame))
        self.frames_written += 1

    def _mux(self, packets) -> None:
        import av

        try:
            self.container.mux(packets)
        except BrokenPipeError:
            raise ReaderClosed() from None
        except (av.error.FFmpegError, OSError) as error:
            if getattr(error, "errno", None) == errno.EPIPE or "Broken pipe" in str(error):
                raise ReaderClosed() from None
            raise OutputError(f"stdout: writing NUT failed: {error}") from None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._mux(self.video.encode(None))
        try:
            self.container.close()
        except BrokenPipeError:
            raise ReaderClosed() from None
        except Exception as error:
            if "Broken pipe" in str(error):
                raise ReaderClosed() from None
            raise OutputError(f"stdout: finishing NUT failed: {error}") from None


def open_sink(spec: str, info: VideoInfo, options: EncodeOptions | None = None,
              stdout_format: str = "y4m", copy_from: list | None = None,
              stdout: BinaryIO | None = None, input_spec: str | None = None,
              container_format: str | None = None, warn=None) -> Sink:
    """Open ``spec`` (a path, or ``-`` for stdout) for a stream described by ``info``.

    Raises:
        OutputError: the output cannot be written (or is the input itself).
        UsageError: an unknown codec or stdout format.
    """
    options = options or EncodeOptions()
    if spec == "-":
        stream = stdout if stdout is not None else sys.stdout.buffer
        if stdout_format == "y4m":
            return Y4mSink(stream, info, options.pix_fmt)
        if stdout_format == "nut":
            return NutSink(stream, info, options.pix_fmt)
        if stdout_format == "rawvideo":
            return RawSink(stream, info, options.pix_fmt)
        raise UsageError(f"unknown stdout format {stdout_format!r}; use one of "
                         f"{', '.join(STDOUT_FORMATS)}")
    if input_spec and input_spec != "-":
        try:
            if Path(spec).resolve() == Path(input_spec).resolve():
                raise OutputError(f"{spec}: the output is the input; choose another name")
        except OSError:
            pass
    return FileSink(spec, info, options, copy_from=copy_from,
                    container_format=container_format, warn=warn)
