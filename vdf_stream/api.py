"""The Python API, mirroring the command line.

Two ways in:

* :func:`protect` does what ``vdf-stream protect`` does: open a source, build the graph,
  run it into a sink, return the run's statistics.
* :func:`iterate` gives the loop to the caller: batches of frames, already through the
  graph, as :class:`~vdf_stream.media.frames.Frames` on the chosen device.

Example::

    import vdf_stream

    stats = vdf_stream.protect("talk.mp4", "talk_protected.mp4")  # the vdf filter
    for frames in vdf_stream.iterate("talk.mp4", vf="scale=w=320:h=-2"):
        print(frames.indices, frames.data.shape)  # (B, 3, H, W) float in [0, 1]
"""

from __future__ import annotations

from typing import Iterator


from .media import colour
from .media.frames import Frames, to_tensor
from .media.sinks import EncodeOptions
from .media.sources import RawFormat, open_source
from .pipeline.engine import Graph, RunStats, resolve_device
from .pipeline.filter import build_filters
from .pipeline.session import Session, SessionSpec


def protect(input: str, output: str, vf: str = "vdf", device: str = "auto",
            encode: EncodeOptions | None = None, stdout_format: str = "y4m",
            raw: RawFormat | None = None, batch_size: int = 1, progress=None,
            strength: str | None = None, seed: int | None = None,
            torch_threads: int = 0, against: str | None = None) -> RunStats:
    """Run ``input`` through the filter graph ``vf`` into ``output`` (``-`` = stdout).

    The default graph is the protection filter, as on the command line, and the run is the
    same as ``vdf-stream protect``'s (:mod:`vdf_stream.pipeline.session`): the same
    arguments and seed write the same frames.

    Args:
        strength, seed, against: as ``--strength``, ``--seed`` and ``--against``: set on
            every ``vdf`` filter of the graph that does not set them itself.
        torch_threads: threads of the filters' CPU computations during the run (0: half
            the cores, at least 1, as on the command line); the caller's setting is put
            back afterwards.

    Raises:
        vdf_stream.errors.VdfError: a subclass naming what went wrong (see errors.py).
    """
    spec = SessionSpec(input=input, output=output, vf=vf, strength=strength, seed=seed,
                       against=against, device=device, encode=encode or EncodeOptions(),
                       stdout_format=stdout_format, raw=raw, torch_threads=torch_threads,
                       batch_size=batch_size)
    return Session(spec).run(progress)


def iterate(input: str, vf: str | None = None, device: str = "auto", format: str = "rgbf32",
            batch_size: int = 1, raw: RawFormat | None = None) -> Iterator[Frames]:
    """Yield batches of frames from ``input``, after the graph ``vf`` when one is given.

    Args:
        format: layout of the yielded frames: "rgbf32" (B, 3, H, W) float in [0, 1],
            "rgb24" uint8, or "yuv420p" (B, 1, H*3/2, W) uint8.
        batch_size: frames per batch (the last batch may be shorter).
    """
    engine_device = resolve_device(device)
    graph = Graph(build_filters(vf) if vf else [])
    with open_source(input, raw=raw) as source:
        native = source.native_format()
        info = graph.negotiate(source.info, engine_device, native)
        wanted = graph.first_format or format
        layout = "yuv420p" if (wanted == "yuv420p" and native == "yuv420p") else "rgb24"
        pending: list[Frames] = []
        try:
            for decoded in source.frames(layout):
                tensor = to_tensor(decoded.pixels, layout)
                pending.append(Frames(tensor.to(engine_device), layout,
                                      [decoded.pts], [decoded.index], source.info.time_base))
                if len(pending) == batch_size:
                    yield _finish(graph, Frames.concat(pending), source.info, info, format)
                    pending = []
            if pending:
                yield _finish(graph, Frames.concat(pending), source.info, info, format)
            for held in graph.flush(source.info):
                yield colour.convert(held, format, info.colorspace, info.color_range)
        finally:
            graph.close()


def _finish(graph: Graph, frames: Frames, input_info, output_info, format: str) -> Frames:
    frames = graph.process(frames, input_info)
    return colour.convert(frames, format, output_info.colorspace, output_info.color_range)
