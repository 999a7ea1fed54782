"""Where frames go: container files (encoded with PyAV), or y4m, NUT or raw frames on stdout.

A sink is built once from the description of the stream it will receive, then takes frames
one at a time (:meth:`Sink.write`, called from the encoder thread) and must be closed
(:meth:`Sink.close` at the end of the stream, :meth:`Sink.abort` when the run stopped
early), which flushes the encoder and writes the container's trailer, so the output is
playable even when the run stopped early. A file sink that received no frame at all removes
its file instead of leaving an empty container behind. :meth:`Sink.outcome` says, in words,
what was left on disk.

Audio and subtitle packets copied from the input wait in a file sink until the video
written has reached their time: a run stopped early ends its audio with its last frame.

Bit depth: 8-bit input is written as yuv420p unless told otherwise (what every player
plays). Deeper input (10-bit HEVC, ProRes, HDR phone clips) keeps its pixel format, bit
depth and chroma, when the encoder can store them, else the nearest it can; when depth or
chroma is lost, one line on stderr says so and why.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import y4m
from ..errors import OutputError, ReaderClosed, UsageError
from .frames import VideoInfo, layout_for_depth, pix_fmt_bits
from .sources import SWSCALE_COLORSPACE

STDOUT_FORMATS = ("y4m", "nut", "rawvideo")
HARDWARE_ENCODERS = ("h264_nvenc", "hevc_nvenc", "av1_nvenc")


@dataclass(frozen=True)
class EncodeOptions:
    """How a file output is encoded (ignored for uncompressed stdout formats)."""

    codec: str = "libx264"
    crf: float | None = 18.0
    preset: str | None = "medium"
    pix_fmt: str | None = None  # None: yuv420p, or the input's own when deeper than 8 bits
    copy_audio: bool = True  # audio and subtitle streams copied without re-encoding
    threads: int = 0  # 0: the encoder decides


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def count_frames(count: int) -> str:
    return f"{count} frame" if count == 1 else f"{count} frames"


class Sink:
    """Base class. ``accepts`` is the pixel layout :meth:`write` wants (rgb24, rgb48 or
    yuv420p)."""

    accepts: str = "rgb24"
    where: str = "stdout"

    def __init__(self) -> None:
        self.frames_written = 0

    def write(self, pixels: np.ndarray, pts: int) -> None:
        raise NotImplementedError

    def mux_copy(self, packet) -> None:
        """Copy a packet of another stream (audio, subtitles) unchanged."""

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Stop before the end of the stream: finalise what was written (or remove an empty
        output)."""
        self.close()

    def outcome(self) -> str:
        """What is on disk (or went out) after closing, in words for a closing line."""
        if not self.frames_written:
            return f"nothing was written to {self.where}"
        return f"{count_frames(self.frames_written)} were written to {self.where}"


def _chroma(pix_fmt: str) -> str:
    """"4:2:0", "4:2:2", "4:4:4" or "grey": how a pixel format samples colour."""
    import av

    try:
        described = av.VideoFormat(pix_fmt, 64, 64)
    except ValueError:
        return "4:2:0"
    if described.is_rgb:
        return "4:4:4"
    if len(described.components) < 3:
        return "grey"
    return {(64, 64): "4:4:4", (32, 64): "4:2:2", (32, 32): "4:2:0"}.get(
        (described.chroma_width(), described.chroma_height()), "subsampled")


def _check_even(info: VideoInfo, pix_fmt: str) -> None:
    chroma = _chroma(pix_fmt)
    odd = info.width % 2 or (chroma == "4:2:0" and info.height % 2)
    if chroma in ("4:2:0", "4:2:2") and odd:
        raise OutputError(
            f"{info.width}x{info.height} has an odd side, which {pix_fmt} ({chroma}) cannot "
            f"store; add a scale to even sides (--vf \"...,scale=w=-2:h={info.height // 2 * 2}\") "
            "or choose --pix-fmt yuv444p"
        )


_CHROMA_ORDER = ("grey", "4:2:0", "4:2:2", "4:4:4")  # least colour first
_PLANAR = {"grey": "gray", "4:2:0": "yuv420p", "4:2:2": "yuv422p", "4:4:4": "yuv444p"}


def _deep_candidates(info: VideoInfo) -> list[str]:
    """Pixel formats for a stream of ``info`` when the user chose none, best first.

    8-bit input gets yuv420p. Deeper input gets its own format, else at each depth from its
    own down to 10 bits: its chroma, then more colour (an encoder without 4:2:0, as ProRes,
    takes 4:2:2 with nothing lost), then less; yuv420p (8 bits) last."""
    bits = info.bit_depth
    if bits <= 8:
        return ["yuv420p"]
    chroma = _chroma(info.pix_fmt)
    position = _CHROMA_ORDER.index(chroma) if chroma in _CHROMA_ORDER else 1
    chromas = [*_CHROMA_ORDER[position:], *reversed(_CHROMA_ORDER[1:position])]
    names = [info.pix_fmt]
    for depth in sorted({bits, *(d for d in (12, 10) if d < bits)}, reverse=True):
        names += [f"{_PLANAR[name]}{depth}le" for name in chromas]
    return list(dict.fromkeys([*names, "p010le", "yuv420p"]))


def depth_note(info: VideoInfo, pix_fmt: str, why: str, hint: str = "") -> str | None:
    """The line that says a deeper input loses bit depth or chroma in ``pix_fmt`` (None when
    it loses neither), with ``why`` and what to do instead."""
    bits, kept = info.bit_depth, pix_fmt_bits(pix_fmt)
    lost = []
    if kept < bits:
        lost.append(f"its {bits}-bit samples are rounded to {kept} bits")
    if bits > 8:
        source, target = _chroma(info.pix_fmt), _chroma(pix_fmt)
        order = _CHROMA_ORDER
        if source in order and target in order and order.index(target) < order.index(source):
            lost.append(f"its {source} colour becomes {target}")
    if not lost:
        return None
    hdr = (f"; its {info.hdr} (HDR) tags are kept on {kept}-bit samples, which can band"
           if info.hdr and kept == 8 else "")
    return (f"{'warning' if hdr else 'note'}: {why}: the {info.pix_fmt} input is written as "
            f"{pix_fmt}, {' and '.join(lost)}{hdr}" + (f" ({hint})" if hint else ""))


def _stdout_pix_fmt(info: VideoInfo, requested: str | None, name: str, warn) -> str:
    """The pixel format of an uncompressed stdout format that stores 8 bits here."""
    if requested:
        note = depth_note(info, requested, f"--pix-fmt {requested}")
        pix_fmt = requested
    else:
        pix_fmt = "yuv420p"
        note = depth_note(info, pix_fmt, f"{name} output carries 8 bits here",
                          "-f nut keeps them")
    if note:
        (warn or _stderr)(note)
    return pix_fmt


def _frame_from_pixels(pixels: np.ndarray, accepts: str, pix_fmt: str, info: VideoInfo):
    """Build an ``av.VideoFrame`` in ``pix_fmt`` carrying the stream's colour tags."""
    import av

    if accepts == "yuv420p":
        frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
        if pix_fmt != "yuv420p":
            frame = frame.reformat(format=pix_fmt)
    else:
        layout = "rgb48le" if accepts == "rgb48" else "rgb24"
        frame = av.VideoFrame.from_ndarray(pixels, format=layout)
        if pix_fmt != layout:
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


def _encoder_pix_fmt(codec: str, info: VideoInfo,
                     requested: str | None) -> tuple[str, str | None, str | None]:
    """``(pix_fmt, note, reason)``: what ``codec`` encodes a stream of ``info`` in, the line
    saying what the input loses there (or None), and why the encoder cannot be used at all
    (or None). ``requested`` (--pix-fmt) is taken as it is."""
    import av

    if requested:
        _check_even(info, requested)
        return (requested, depth_note(info, requested, f"--pix-fmt {requested}"),
                _usable_encoder(codec, info, requested))
    candidates = _deep_candidates(info)
    _check_even(info, candidates[0])
    try:
        declared = {f.name for f in (av.Codec(codec, "w").video_formats or [])}
    except Exception:  # PyAV raises several types for an unknown codec
        declared = set()
    reason = None
    for pix_fmt in candidates:
        if declared and pix_fmt not in declared and pix_fmt != "yuv420p":
            continue
        reason = _usable_encoder(codec, info, pix_fmt)
        if reason is None:
            kept = pix_fmt_bits(pix_fmt)
            why = (f"{codec} encodes at most {kept} bits here" if kept < info.bit_depth
                   else f"{codec} cannot store {candidates[0]} here")
            hint = ("--codec libx265 or ffv1 keeps them" if codec not in ("libx265", "ffv1")
                    else "")
            return pix_fmt, depth_note(info, pix_fmt, why, hint), None
    return "yuv420p", None, reason


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
        self.warn = warn or _stderr
        self.lock = threading.Lock()
        self.closed = False
        self.state = "open"  # then "finalised", "removed" or "unfinished"
        self.held: deque = deque()  # (time, packet) copied packets waiting for the video
        self.last_times: list[Fraction] = []  # start times of the last two frames written
        self.audio_cut = False
        codec = options.codec
        pix_fmt = options.pix_fmt or "yuv420p"
        note = None
        if codec not in av.codecs_available:
            if codec in HARDWARE_ENCODERS:
                reason = "this FFmpeg build has no such encoder"
                _check_even(info, pix_fmt)
            else:
                raise UsageError(f"unknown codec {codec!r}; try libx264, libx265, h264_nvenc, "
                                 "hevc_nvenc, mpeg4 or ffv1")
        else:
            pix_fmt, note, reason = _encoder_pix_fmt(codec, info, options.pix_fmt)
        if reason is not None:
            if codec in HARDWARE_ENCODERS:
                self.warn(f"warning: {codec} is not usable here ({reason}); "
                          "encoding with libx264 instead")
                codec = "libx264"
                pix_fmt, note, reason = _encoder_pix_fmt(codec, info, options.pix_fmt)
            if reason is not None:
                raise OutputError(f"encoder {codec} cannot encode {info.width}x{info.height} "
                                  f"{pix_fmt}: {reason}")
        if note:
            self.warn(note)
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
        try:
            stream = self.container.add_stream(self.codec, rate=rate)
        except ValueError as error:  # e.g. "'mov' format does not support 'ffv1' codec"
            raise OutputError(f"{self.path}: {self.path.suffix or 'this'} files cannot hold "
                              f"{self.codec} video ({error}); try .mkv") from None
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
        self.accepts = ("yuv420p" if pix_fmt == "yuv420p"
                        else layout_for_depth(pix_fmt_bits(pix_fmt)))

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
                self.frames_written += 1
                self.last_times = [*self.last_times[-1:], pts * self.info.time_base]
                self._release(self.last_times[-1], inclusive=True)
        except (av.error.FFmpegError, OSError) as error:
            raise OutputError(f"{self.path}: writing failed: {error}") from None

    def mux_copy(self, packet) -> None:
        """Hold a copied packet until the video written reaches its time (called from the
        decoder thread, which runs ahead of the encoder)."""
        if packet.stream.index not in self.copies:
            return
        stamp = packet.pts if packet.pts is not None else packet.dts
        with self.lock:
            self.held.append((stamp * packet.time_base, packet))

    def _release(self, until: Fraction | None, inclusive: bool = False) -> None:
        """Mux the held packets up to ``until`` (all when None), in the order they came;
        called with the lock held."""
        import av

        while self.held:
            stamp, packet = self.held[0]
            if until is not None and (stamp > until or (stamp == until and not inclusive)):
                return
            self.held.popleft()
            packet.stream = self.copies[packet.stream.index]
            try:
                self.container.mux(packet)
            except (av.error.FFmpegError, OSError) as error:
                raise OutputError(f"{self.path}: writing a copied packet failed: "
                                  f"{error}") from None

    def _video_end(self) -> Fraction | None:
        """When the last frame written stops being shown: its start plus the step from the
        frame before (or one frame at the nominal rate)."""
        if not self.last_times:
            return None
        last = self.last_times[-1]
        if len(self.last_times) == 2:
            return last + (last - self.last_times[0])
        rate = self.info.frame_rate
        return last + (1 / Fraction(rate) if rate else 0)

    def close(self) -> None:
        """Finish the file at the end of the stream: every copied packet goes in."""
        self._finish(until=None)

    def abort(self) -> None:
        """Finish the file with the frames written so far; copied audio and subtitles end
        where the last frame ends."""
        self._finish(until=self._video_end())

    def _finish(self, until: Fraction | None) -> None:
        import av

        if self.closed:
            return
        self.closed = True
        if self.frames_written == 0:
            self._discard()
            return
        self.state = "unfinished"
        try:
            with self.lock:
                self._release(until)
                self.audio_cut = bool(self.held)
                self.held.clear()
                self.container.mux(self.video.encode(None))
                self.container.close()
        except (av.error.FFmpegError, OSError) as error:
            raise OutputError(f"{self.path}: finishing the file failed: {error}") from None
        self.state = "finalised"

    def outcome(self) -> str:
        frames = count_frames(self.frames_written)
        if self.state == "finalised":
            cut = ", its audio cut where they end" if self.audio_cut else ""
            return f"{self.path} is finalised with {frames}{cut}"
        if self.state == "removed":
            return f"nothing was written, no file is left at {self.path}"
        return (f"{self.path} is left unfinished after {frames} (it may not play); "
                "run again to replace it")

    def _discard(self) -> None:
        self.closed = True
        self.held.clear()
        try:
            self.container.close()
        except Exception:
            pass
        try:
            self.path.unlink()
        except OSError:
            pass
        self.state = "removed" if not self.path.exists() else "unfinished"


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

    def __init__(self, stream: BinaryIO, info: VideoInfo, pix_fmt: str | None = None,
                 warn=None):
        super().__init__()
        self.stream = stream
        self.info = info
        self.pix_fmt = _stdout_pix_fmt(info, pix_fmt, "y4m", warn)
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

    def __init__(self, stream: BinaryIO, info: VideoInfo, pix_fmt: str | None = None,
                 warn=None):
        super().__init__()
        self.stream = stream
        self.info = info
        self.pix_fmt = _stdout_pix_fmt(info, pix_fmt, "raw", warn)
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

    def __init__(self, stream: BinaryIO, info: VideoInfo, pix_fmt: str | None = None,
                 warn=None):
        super().__init__()
        import av

        self.info = info
        # rawvideo stores any pixel format: a deeper input keeps its own
        self.pix_fmt = pix_fmt or _deep_candidates(info)[0]
        note = depth_note(info, self.pix_fmt, f"--pix-fmt {self.pix_fmt}")
        if note:
            (warn or _stderr)(note)
        _check_even(info, self.pix_fmt)
        self.stream_out = stream
        self.container = av.open(stream, "w", format="nut")
        rate = info.frame_rate.limit_denominator(1_000_000) if info.frame_rate else None
        self.video = self.container.add_stream("rawvideo", rate=rate)
        self.video.width, self.video.height = info.width, info.height
        self.video.pix_fmt = self.pix_fmt
        self.video.time_base = info.time_base
        self.video.codec_context.time_base = info.time_base
        self.accepts = ("yuv420p" if self.pix_fmt == "yuv420p"
                        else layout_for_depth(pix_fmt_bits(self.pix_fmt)))
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
            return Y4mSink(stream, info, options.pix_fmt, warn)
        if stdout_format == "nut":
            return NutSink(stream, info, options.pix_fmt, warn)
        if stdout_format == "rawvideo":
            return RawSink(stream, info, options.pix_fmt, warn)
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
