"""One run of a stream: open the source, build the filter graph, open the sink, run the engine.

The Python API (:func:`vdf_stream.protect`), ``vdf-stream protect`` and every task of
``vdf-stream batch`` go through :class:`Session`, so that the same input, graph and seed
give the same frames whichever way they come in. That includes torch's thread count: the
order of a float sum depends on how many threads share it, and the protection's optimiser
amplifies that last-bit difference into different pixels, so a run always sets it (and
puts the caller's back at the end).

Example::

    spec = SessionSpec("talk.mp4", "talk_protected.mp4", strength="high", seed=3)
    stats = Session(spec).run()
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ..errors import Interrupted
from ..resources import keep_freed_memory
from ..media.frames import VideoInfo
from ..media.segments import Segment, SegmentSource
from ..media.sinks import EncodeOptions, Sink, open_sink
from ..media.sources import RawFormat, Source, open_source
from .engine import Engine, RunStats, resolve_device, torch_threads
from .filter import Filter, build_filters

PROTECTION_FILTER = "vdf"  # the filter that --strength and --seed configure


def build_graph(vf: str = PROTECTION_FILTER, strength: str | None = None,
                seed: int | None = None, against: str | None = None) -> list[Filter]:
    """The filters of the graph ``vf``, with validated options. ``strength``, ``seed`` and
    ``against`` (the command line's ``--strength``, ``--seed`` and ``--against``) set those
    options of every ``vdf`` filter whose own text does not: ``vdf=strength=high`` wins over
    ``strength="low"``.

    Raises:
        UsageError: an unknown filter, or an option that is unknown or out of range.
    """
    given = {name: value for name, value in (("strength", strength), ("seed", seed),
                                             ("against", against)) if value is not None}
    return build_filters(vf, defaults={PROTECTION_FILTER: given} if given else None)


@contextmanager
def torch_thread_count(requested: int = 0) -> Iterator[int]:
    """Run the block with torch's CPU kernels on :func:`~.engine.torch_threads` threads
    (``requested``, or half the cores), then give the caller's count back."""
    count = torch_threads(requested)
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield count
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class SessionSpec:
    """What one run reads, does and writes.

    Attributes:
        input: a video file, or ``-`` for stdin (y4m or NUT detected, or raw frames as
            ``raw`` describes them).
        output: a file (its extension chooses the container), or ``-`` for stdout.
        vf: the filter graph, ffmpeg-like (``scale=w=1280:h=-2,vdf``).
        strength, seed, against: for every ``vdf`` filter that does not set them (see
            :func:`build_graph`); ``None`` keeps the filter's own default.
        device: ``auto`` (a CUDA GPU when present), ``cpu``, ``cuda``, ``cuda:1``.
        encode: the encoder's settings (file output); ``copy_audio`` copies the input's
            audio and subtitle streams.
        stdout_format: with ``output`` ``-``: ``y4m``, ``nut`` or ``rawvideo``.
        container_format: force the output file's container (``mp4``, ``mov``...).
        raw: raw frames on stdin: their size, rate and pixel format.
        segment: protect only this segment of the input file (``vdf-stream batch``); no
            audio is copied (the join copies it once).
        decoder_threads: 0 lets the decoder choose.
        torch_threads: threads of the filters' CPU computations (0: half the cores, at
            least 1; the decoder, the encoder and the protection's apply thread use the
            rest).
        batch_size: frames filtered together when available.
        queue_size: frames buffered between the decode, filter and encode stages.
    """

    input: str
    output: str
    vf: str = PROTECTION_FILTER
    strength: str | None = None
    seed: int | None = None
    against: str | None = None
    device: str = "auto"
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    stdout_format: str = "y4m"
    container_format: str | None = None
    raw: RawFormat | None = None
    segment: Segment | None = None
    decoder_threads: int = 0
    torch_threads: int = 0
    batch_size: int = 1
    queue_size: int = 8


class Session:
    """A source, a graph and a sink, ready to run.

    Building one checks the device and the graph (before the input is opened, so a typo in
    ``--vf`` is reported before a missing file). The source opens on :meth:`open` (or
    ``with``), which lets a caller read :attr:`source`'s description before the run, e.g. a
    progress bar's total; :meth:`run` opens it when nobody did and closes what it opened.

    ``warn`` receives the sink's one-line warnings (an encoder replaced, audio not copied)
    and the filters' notes (a recipe's models left out).

    Raises:
        UsageError: an unknown device, filter or option (on construction).
        InputError, OutputError, DamagedInputError, Interrupted: from :meth:`open` and
            :meth:`run`, as :class:`~.engine.Engine` raises them.
    """

    def __init__(self, spec: SessionSpec, warn: Callable[[str], None] | None = None):
        self.spec = spec
        self.warn = warn
        self.device = resolve_device(spec.device)
        self.filters = build_graph(spec.vf, spec.strength, spec.seed, spec.against)
        for item in self.filters:
            item.warn = warn
        self.source: Source | None = None

    @property
    def protects(self) -> bool:
        """Whether a filter of the graph protects the frames (``vdf`` does)."""
        return any(getattr(item, "protects", False) for item in self.filters)

    @property
    def copies_audio(self) -> bool:
        return self.spec.encode.copy_audio and self.spec.segment is None

    def open(self) -> Source:
        if self.source is None:
            spec = self.spec
            if spec.segment is not None:
                self.source = SegmentSource(spec.input, spec.segment,
                                            threads=spec.decoder_threads)
            else:
                self.source = open_source(spec.input, raw=spec.raw,
                                          threads=spec.decoder_threads)
        return self.source

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None

    def __enter__(self) -> Session:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, progress: Callable[[int], None] | None = None) -> RunStats:
        """Decode, filter and encode the whole stream; ``progress`` is called with the
        number of frames written each time some are. Returns the run's statistics."""
        keep_freed_memory()  # frame-sized tensors reuse freed memory (vdf_stream.resources)
        opened_here = self.source is None
        source = self.open()
        spec = self.spec
        try:
            with torch_thread_count(spec.torch_threads):
                try:
                    engine = Engine(source, self.filters, self._open_sink, device=self.device,
                                    batch_size=spec.batch_size, queue_size=spec.queue_size,
                                    progress=progress, copy_streams=self.copies_audio)
                except KeyboardInterrupt:  # while the filters load: no output opened yet
                    raise Interrupted("interrupted before the first frame; nothing was "
                                      "written") from None
                return engine.run()
        finally:
            if opened_here:
                self.close()

    def _open_sink(self, info: VideoInfo) -> Sink:
        spec = self.spec
        return open_sink(spec.output, info, spec.encode, stdout_format=spec.stdout_format,
                         copy_from=self.source.copy_streams() if self.copies_audio else [],
                         input_spec=spec.input,
                         container_format=spec.container_format if spec.output != "-" else None,
                         warn=self.warn)
