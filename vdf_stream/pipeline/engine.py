"""The engine: decode (thread) -> bounded queue -> filters -> bounded queue -> encode (thread).

One decoder thread, one filter stage (the calling thread, so Ctrl-C lands there) and one
encoder thread, joined by bounded FIFO queues: frames can neither be dropped, duplicated nor
reordered, and a slow stage holds the others back (back-pressure) instead of filling memory.
An end marker closes each queue. Any stage failing, or Ctrl-C, sets a stop event; the
frames already filtered are encoded, the encoder is flushed and the container finalised, so
the output is playable up to that point, its copied audio ending with its last frame
(:meth:`Sink.abort <vdf_stream.media.sinks.Sink.abort>`). Every message the run ends with
says what is on disk (:meth:`Sink.outcome <vdf_stream.media.sinks.Sink.outcome>`), and
before the filters are closed each gets ``frames_written``, the number of frames the sink
received, so that a filter's closing summary counts only frames that were written.

Filters run ``streaming`` here: one may hand back fewer frames than it took, in order, and
the rest at the end (:meth:`Filter.flush`); the ``vdf`` filter does, while its apply thread
works (at most 2 frames behind). On a stop, the frames a filter still holds are not
written: the output ends a frame or two earlier, never with a gap.

Format negotiation happens once, before the first frame (as FFmpeg negotiates a filter
graph): the decoder produces the first filter's preferred layout directly (on the CPU via
swscale, with the stream's colour matrix), layouts are converted between filters only when
two neighbours disagree, and the sink receives I420 or RGB as suits it. On a GPU, the
decoder hands over I420 and every conversion runs on the device. Samples deeper than 8 bits
travel as ``rgb48`` and reach a filter that cannot take it as ``rgbf32``, never rounded to
8 bits on the way.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from ..media import colour
from ..errors import (DamagedInputError, InputError, InternalError, Interrupted, ReaderClosed,
                      VdfError)
from .filter import Filter
from ..media.frames import Frames, VideoInfo, to_pixels, to_tensor
from ..media.sinks import Sink, count_frames
from ..media.sources import Source

_END = object()
DECODER_GRACE_SECONDS = 2.0  # how long a stopped run waits for its decoder to notice


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when a GPU is usable, else the CPU."""
    from ..errors import UsageError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is available here (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device; use auto, cpu or cuda") from None


def torch_threads(requested: int = 0) -> int:
    """Threads for torch's CPU kernels in a run: ``requested``, or (0) half the cores
    available, at least 1. The decoder, the encoder and the ``vdf`` filter's apply thread
    run beside the filter stage; on 2 cores one torch thread measured fastest (single_face
    at 640x360: 6.4 fps against 4.8 with two; at 1280x720 1.8 against 1.8)."""
    if requested > 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


@dataclass
class StageTimes:
    decode: float = 0.0
    filter: float = 0.0
    encode: float = 0.0


@dataclass
class RunStats:
    """What a run did, for the closing line, reports and benchmarks."""

    frames_in: int = 0
    frames_out: int = 0
    decode_errors: int = 0
    seconds: float = 0.0
    stage_seconds: StageTimes = field(default_factory=StageTimes)
    damage: str | None = None
    interrupted: bool = False
    reader_closed: bool = False
    output: str = ""  # what is on disk at the end, in words (the sink's outcome)

    @property
    def fps(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0


class Graph:
    """A negotiated linear chain of filters."""

    def __init__(self, filters: list[Filter], streaming: bool = False):
        self.filters = filters
        for item in filters:
            item.streaming = streaming
        self.input_formats: list[str] = []  # the layout each filter receives
        self.input_info: VideoInfo | None = None
        self.output_info: VideoInfo | None = None

    def negotiate(self, info: VideoInfo, device: torch.device, native: str) -> VideoInfo:
        """Set up every filter once; return the description of the graph's output."""
        self.input_info = info
        current = native
        deep = info.bit_depth > 8
        for item in self.filters:
            if current not in item.formats:
                current = _nearest_layout(item.formats, deep)
            self.input_formats.append(current)
            info = item.setup(info, device)
            if info.width % 2 or info.height % 2:
                # odd sizes cannot be carried as I420 inside the graph
                if current == "yuv420p":
                    current = "rgb24"
        self.output_info = info
        return info

    @property
    def first_format(self) -> str | None:
        return self.input_formats[0] if self.input_formats else None

    def process(self, frames: Frames, info: VideoInfo) -> Frames:
        for item, layout in zip(self.filters, self.input_formats):
            if len(frames) == 0:
                break  # a streaming filter held the whole batch
            frames = colour.convert(frames, layout, info.colorspace, info.color_range)
            frames = item.process(frames)
        return frames

    def flush(self, info: VideoInfo) -> list[Frames]:
        """Flush each filter in turn, passing what it releases through the rest."""
        released = []
        for position, item in enumerate(self.filters):
            held = item.flush()
            if held is None or len(held) == 0:
                continue
            for later, layout in zip(self.filters[position + 1:],
                                     self.input_formats[position + 1:]):
                if len(held) == 0:
                    break
                held = later.process(colour.convert(held, layout, info.colorspace,
                                                    info.color_range))
            if len(held):
                released.append(held)
        return released

    def close(self) -> None:
        for item in self.filters:
            try:
                item.close()
            except Exception:
                pass


def _nearest_layout(accepted: tuple[str, ...], deep: bool) -> str:
    """The layout a filter that cannot take the current one gets: its first, or for a
    stream deeper than 8 bits the first that keeps the depth (float, then rgb48)."""
    if deep:
        for layout in ("rgbf32", "rgb48"):
            if layout in accepted:
                return layout
    return accepted[0]


class Engine:
    """Run ``source -> graph -> sink`` once.

    Args:
        source: an opened :class:`~vdf_stream.media.sources.Source`.
        filters: the filters (not yet set up), in order.
        sink_factory: called with the graph's output description to open the sink, so a
            sink is never created for a graph that fails to negotiate.
        device: where frames live between filters.
        batch_size: most frames handed to the filters at once (never waits to fill a batch).
        queue_size: frames each queue holds before the stage feeding it waits.
        progress: a callable taking the number of frames just written, or None.
    """

    def __init__(self, source: Source, filters: list[Filter], sink_factory, device=None,
                 batch_size: int = 1, queue_size: int = 8, progress=None, copy_streams=True):
        self.source = source
        self.graph = Graph(filters, streaming=True)
        self.device = device or torch.device("cpu")
        self.batch_size = max(1, batch_size)
        self.queue_size = max(1, queue_size)
        self.progress = progress
        self.copy_streams = copy_streams
        self.sink_factory = sink_factory
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.stats = RunStats()
        native = source.native_format()
        self.output_info = self.graph.negotiate(source.info, self.device, native)
        wanted = self.graph.first_format or native
        on_gpu = self.device.type == "cuda"
        # what the decoder thread produces (CPU arrays)
        if native == "rgb48":
            self.decode_format = "rgb48"
        elif on_gpu and native == "yuv420p":
            self.decode_format = "yuv420p"
        elif wanted == "yuv420p" and native == "yuv420p":
            self.decode_format = "yuv420p"
        else:
            self.decode_format = "rgb24"
        self.sink: Sink = sink_factory(self.output_info)
        try:
            out = self.output_info
            last = self.graph.input_formats[-1] if self.graph.input_formats else native
            even = not (out.width % 2 or out.height % 2)
            accepts = getattr(self.sink, "accepts", "rgb24")
            if accepts == "yuv420p" and even and (last == "yuv420p" or on_gpu):
                self.sink_layout = "yuv420p"
            else:
                self.sink_layout = "rgb48" if accepts == "rgb48" else "rgb24"
            if hasattr(self.sink, "set_accepts"):
                self.sink.set_accepts(self.sink_layout)
        except BaseException:  # Ctrl-C here: no empty output is left behind
            self.sink.abort()
            raise

    # -- the three stages ------------------------------------------------------------

    def _put(self, target: queue.Queue, item) -> bool:
        while True:
            if self.stop.is_set() and item is not _END:
                return False
            try:
                target.put(item, timeout=0.1)
                return True
            except queue.Full:
                if self.stop.is_set() and item is _END:
                    # make room for the end marker: a stopped run drops queued input
                    try:
                        target.get_nowait()
                    except queue.Empty:
                        pass

    def _decode_stage(self, output: queue.Queue) -> None:
        started = time.perf_counter()
        try:
            on_packet = self.sink.mux_copy if self.copy_streams else None
            layout = self.decode_format
            for decoded in self.source.frames(layout, on_packet=on_packet):
                tensor = to_tensor(decoded.pixels, layout)
                if self.device.type == "cuda":
                    tensor = tensor.pin_memory().to(self.device, non_blocking=True)
                item = Frames(tensor, layout, [decoded.pts], [decoded.index],
                              self.source.info.time_base)
                self.stats.stage_seconds.decode += time.perf_counter() - started
                if not self._put(output, item):
                    break
                self.stats.frames_in += 1
                started = time.perf_counter()
        except BaseException as error:  # handed to the main thread
            self.errors.append(error)
            self.stop.set()
        finally:
            self._put(output, _END)

    def _encode_stage(self, source: queue.Queue) -> None:
        info = self.output_info
        try:
            while True:
                item = source.get()
                if item is _END:
                    break
                started = time.perf_counter()
                frames = colour.convert(item, self.sink_layout, info.colorspace,
                                        info.color_range)
                for pixels, pts in zip(to_pixels(frames.data, self.sink_layout), frames.pts):
                    self.sink.write(pixels, pts)
                    self.stats.frames_out += 1
                    if self.progress is not None:
                        self.progress(1)
                self.stats.stage_seconds.encode += time.perf_counter() - started
        except BaseException as error:
            self.errors.append(error)
            self.stop.set()
            # keep draining so that the filter stage never blocks on a full queue
            while True:
                try:
                    if source.get(timeout=0.5) is _END:
                        break
                except queue.Empty:
                    if not self._filter_alive:
                        break

    _filter_alive = True

    def _filter_stage(self, decoded: queue.Queue, filtered: queue.Queue) -> None:
        info = self.graph.input_info
        expected_index = 0
        while True:
            item = decoded.get()
            if item is _END:
                break
            batch = [item]
            ended = False
            while len(batch) < self.batch_size:
                try:
                    more = decoded.get_nowait()
                except queue.Empty:
                    break
                if more is _END:
                    ended = True
                    break
                batch.append(more)
            frames = Frames.concat(batch)
            started = time.perf_counter()
            with torch.inference_mode(False):
                result = self.graph.process(frames, info)
            self.stats.stage_seconds.filter += time.perf_counter() - started
            if result.indices and result.indices[0] < expected_index:
                raise RuntimeError("a filter reordered frames")
            if result.indices:
                expected_index = result.indices[-1] + 1
            if len(result) and not self._put(filtered, result):
                return
            if ended:
                break
        for held in self.graph.flush(info):
            if not self._put(filtered, held):
                return

    # -- running ---------------------------------------------------------------------

    def run(self) -> RunStats:
        """Process the whole stream. Raises the first failure after finalising the output;
        every message raised ends with what is on disk (:attr:`RunStats.output`)."""
        decoded: queue.Queue = queue.Queue(self.queue_size)
        filtered: queue.Queue = queue.Queue(self.queue_size)
        decoder = threading.Thread(target=self._decode_stage, args=(decoded,),
                                   name="vdf-decode", daemon=True)
        encoder = threading.Thread(target=self._encode_stage, args=(filtered,),
                                   name="vdf-encode", daemon=True)
        started = time.perf_counter()
        interrupted = False
        decoder.start()
        encoder.start()
        try:
            try:
                self._filter_stage(decoded, filtered)
            except KeyboardInterrupt:
                interrupted = True
                self.stop.set()
            except BaseException as error:
                self.errors.append(error)
                self.stop.set()
            finally:
                self._filter_alive = False
                self._put(filtered, _END)
                encoder.join()
                self.stop.set()
                # let the decoder notice the stop and exit (drain what it may be putting); one
                # blocked reading a pipe whose writer keeps it open (no frame, no end) is
                # left behind, a daemon thread, so that Ctrl-C still finalises the output
                deadline = time.monotonic() + DECODER_GRACE_SECONDS
                while decoder.is_alive() and time.monotonic() < deadline:
                    try:
                        decoded.get(timeout=0.1)
                    except queue.Empty:
                        pass
        except KeyboardInterrupt:  # a second Ctrl-C while finishing
            interrupted = True
            self.stop.set()
            if encoder.is_alive():  # it finishes the frames it holds; the sink waits for it
                self._put(filtered, _END)
                encoder.join()
        finally:
            for item in self.graph.filters:
                item.frames_written = self.stats.frames_out
            self.graph.close()
            closing = time.perf_counter()
            # flushes the encoder's delayed frames; a run stopped early ends its copied
            # audio with its last frame
            close_error = self._close_sink(complete=not (interrupted or self.errors))
            self.stats.stage_seconds.encode += time.perf_counter() - closing
            self.stats.output = self.sink.outcome()
        self.stats.seconds = time.perf_counter() - started
        self.stats.decode_errors = self.source.decode_errors
        self.stats.damage = self.source.damage
        output = self.stats.output
        errors = [e for e in self.errors if not isinstance(e, ReaderClosed)]
        if any(isinstance(e, ReaderClosed) for e in self.errors) or isinstance(
                close_error, ReaderClosed):
            self.stats.reader_closed = True
        if interrupted or any(isinstance(e, KeyboardInterrupt) for e in errors):
            self.stats.interrupted = True
            raise Interrupted(f"interrupted after {count_frames(self.stats.frames_out)}; "
                              f"{output}")
        if errors:
            raise _with_output(errors[0], output)
        if close_error is not None and not isinstance(close_error, ReaderClosed):
            raise _with_output(close_error, output)
        if self.stats.reader_closed:
            return self.stats
        if self.stats.frames_out != self.stats.frames_in:
            raise InternalError(
                f"internal error: {self.stats.frames_in} frames were decoded but "
                f"{self.stats.frames_out} were written (please report it)", output)
        if self.stats.damage:
            raise DamagedInputError(f"{self.source.name}: {self.stats.damage}", output)
        if self.stats.frames_in == 0:
            raise InputError(f"{self.source.name}: no frame could be decoded", output)
        return self.stats

    def _close_sink(self, complete: bool) -> BaseException | None:
        try:
            if complete:
                self.sink.close()
            else:
                self.sink.abort()
        except BaseException as error:
            return error
        return None


def _with_output(error: BaseException, output: str) -> BaseException:
    """``error`` saying ``output`` (what is on disk) after its message: a
    :class:`~vdf_stream.errors.VdfError` keeps its class, anything else (a bug) becomes an
    :class:`~vdf_stream.errors.InternalError` caused by it."""
    if isinstance(error, VdfError):
        error.on_disk = output
        return error
    if not isinstance(error, Exception):  # SystemExit and the like pass as they are
        return error
    wrapped = InternalError(f"internal error: {type(error).__name__}: {error} (run again "
                            "with --debug and report it)", output)
    wrapped.__cause__ = error
    return wrapped


__all__ = ["Engine", "Graph", "RunStats", "resolve_device", "VdfError"]
