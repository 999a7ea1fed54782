"""``null``: pass frames through untouched, in whatever layout they arrive."""

from __future__ import annotations

from vdf_stream.pipeline.filter import Filter
from vdf_stream.media.frames import FORMATS, Frames


class NullFilter(Filter):
    name = "null"
    description = "pass frames through unchanged (no colour conversion is made for it)"
    formats = FORMATS

    def process(self, frames: Frames) -> Frames:
        return frames
