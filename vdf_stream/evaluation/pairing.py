"""The two videos ``vdf-stream eval`` compares: described, decoded in lockstep and paired
frame by frame, by index.

:func:`describe_input` says what each file holds (size, rate, codec, frames declared and
counted from the packets); :class:`PairedFrames` decodes both at once, compares their
timestamps and counts their frames, refusing videos of different lengths unless asked to
evaluate their common frames.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError, UsageError
from ..media.frames import to_tensor


def count_video_packets(path: str) -> int | None:
    """Frames of the first video stream counted from its packets, without decoding (packets
    an edit list hides are left out); ``None`` when the file cannot be demuxed."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            count = 0
            for packet in container.demux(stream):
                if packet.size and not packet.is_discard:
                    count += 1
            return count
    except (av.error.FFmpegError, OSError, IndexError):
        return None


def describe_input(path: str, source, packets: int | None) -> dict:
    info = source.info
    stream = getattr(source, "stream", None)
    return {
        "path": path,
        "absolute_path": str(Path(path).resolve()),
        "width": info.width,
        "height": info.height,
        "frame_rate": str(info.frame_rate) if info.frame_rate else None,
        "time_base": str(info.time_base),
        "codec": stream.codec_context.name if stream is not None else None,
        "pix_fmt": info.pix_fmt,
        "fps": float(info.frame_rate) if info.frame_rate else None,
        "frames": packets if packets is not None else info.frame_count,
        "frames_declared": info.frame_count,
        "frames_counted": packets,
        "frames_decoded": None,
        "damage": None,
    }


def check_path(path: str, role: str) -> None:
    """Refuse stdin: eval opens each file more than once (its packets are counted before it
    is decoded; visibility and the frames of a report decode it again)."""
    if path == "-":
        raise UsageError(f"eval reads two files; {role} cannot be stdin (-)")


@dataclass
class Pair:
    """One selected frame of each video (``(3, H, W)`` uint8) and the frames just before."""

    index: int
    original: torch.Tensor
    protected: torch.Tensor
    previous_original: torch.Tensor | None
    previous_protected: torch.Tensor | None


class PairedFrames:
    """Decodes two videos in lockstep, compares their timestamps and counts their frames.

    Iterating yields ``(index, original (3, H, W), protected (3, H, W))`` uint8 tensors.
    When one video ends first, the rest of the other is decoded to count it, then
    :class:`InputError` is raised naming both counts (or, when the mismatch is allowed,
    iteration stops with :attr:`length_note` set).
    """

    def __init__(self, source_original, source_protected, names: tuple[str, str],
                 allow_length_mismatch: bool):
        self.sources = (source_original, source_protected)
        self.names = names
        self.allow_length_mismatch = allow_length_mismatch
        info_o, info_p = source_original.info, source_protected.info
        self.time_bases = (info_o.time_base, info_p.time_base)
        rate = info_o.frame_rate or info_p.frame_rate
        self.tolerance = 0.5 / float(rate) if rate else 0.5e-3  # half a frame
        self.timestamps = {"compared": 0, "mismatched": 0, "max_difference_seconds": 0.0,
                           "first_mismatch": None}
        self.index = 0  # frames of each decoded so far
        self.complete = False  # both ended together
        self.counts: tuple[int, int] | None = None  # decoded counts, once known
        self.length_note: str | None = None
        self.decode_seconds = 0.0

    def __iter__(self):
        frames_o = self.sources[0].frames("rgb24")
        frames_p = self.sources[1].frames("rgb24")
        first_pts = None
        while True:
            clock = time.perf_counter()
            item_o = next(frames_o, None)
            item_p = next(frames_p, None)
            self.decode_seconds += time.perf_counter() - clock
            if item_o is None and item_p is None:
                self.complete = True
                self.counts = (self.index, self.index)
                return
            if item_o is None or item_p is None:
                self._lengths_differ(frames_p if item_o is None else frames_o,
                                     original_ended=item_o is None)
                return
            if first_pts is None:
                first_pts = (item_o.pts, item_p.pts)
            self._compare_times(item_o.pts - first_pts[0], item_p.pts - first_pts[1])
            index = self.index
            self.index += 1  # counted before the caller may stop iterating
            yield (index, to_tensor(item_o.pixels, "rgb24")[0],
                   to_tensor(item_p.pixels, "rgb24")[0])

    def _compare_times(self, pts_original: int, pts_protected: int) -> None:
        time_o = pts_original * self.time_bases[0]
        time_p = pts_protected * self.time_bases[1]
        difference = abs(float(time_o - time_p))
        stamps = self.timestamps
        stamps["compared"] += 1
        stamps["max_difference_seconds"] = max(stamps["max_difference_seconds"], difference)
        if difference > self.tolerance:
            stamps["mismatched"] += 1
            if stamps["first_mismatch"] is None:
                stamps["first_mismatch"] = {"index": self.index,
                                            "original_seconds": float(time_o),
                                            "protected_seconds": float(time_p)}

    def _lengths_differ(self, remaining, original_ended: bool) -> None:
        extra = 1 + sum(1 for _ in remaining)  # the frame already taken, and the rest
        self.counts = ((self.index, self.index + extra) if original_ended
                       else (self.index + extra, self.index))
        original, protected = self.names
        if not self.allow_length_mismatch:
            damage = [f"{name}: {source.damage}" for name, source in zip(self.names, self.sources)
                      if source.damage]
            raise InputError(
                f"the videos have different lengths: {original} has {self.counts[0]} frames, "
                f"{protected} has {self.counts[1]}"
                + (f" ({'; '.join(damage)})" if damage else "")
                + "; use --allow-length-mismatch to evaluate the common frames")
        self.length_note = (f"the videos have different lengths ({self.counts[0]} and "
                            f"{self.counts[1]} frames): the first {self.index} of each were "
                            "evaluated")

    def time_note(self) -> str | None:
        stamps = self.timestamps
        if not stamps["mismatched"]:
            return None
        first = stamps["first_mismatch"]
        return (f"timestamps differ in {stamps['mismatched']} of {stamps['compared']} frame pairs "
                f"(first at frame {first['index']}: {first['original_seconds']:.3f} s against "
                f"{first['protected_seconds']:.3f} s); frames were paired by index")
