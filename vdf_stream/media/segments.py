"""Long videos cut at keyframes into segments, protected apart and joined by stream copy.

A segment starts at a keyframe of the source and ends where the next one starts, so that it
can be decoded on its own (:class:`SegmentSource`), wherever the other segments are being
decoded. Each segment is encoded with the same encoder settings into a NUT file that keeps
the source's time base and timestamps; :func:`join_segments` then copies the encoded
packets of all segments, in order, into one container (no re-encoding, so nothing is lost
at the joins) together with the source's audio and subtitle packets, copied once.

Why this gives the same result as one pass:

* every frame of the source has its presentation timestamp inside exactly one segment's
  ``[start, end)``: the segment decoding a GOP keeps decoding until the decoder hands out a
  frame at or past ``end`` (the leading pictures of an open GOP, shown before its keyframe,
  come out of the decoder after it), and the next segment drops what it decodes before its
  ``start``;
* x264 starts every encode with an IDR picture and writes the same sequence headers
  (extradata) for the same settings and frame size, so the packets of all segments can
  live behind the headers of the first one; :func:`join_segments` checks this;
* the encoder's decoding timestamps run behind its presentation timestamps (B-frames) and
  start before the first one; at a join they are kept strictly increasing and never
  after their own presentation timestamp.

The parameter-sharing window of the protection restarts in each segment: its first frame
is optimised afresh, as the first frame of a video is.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

from ..errors import InputError, OutputError
from .sources import ContainerSource, DecodedFrame, Source, frame_to_array, open_source

SEGMENT_FORMAT = "nut"  # keeps any time base and every timestamp exactly
SEGMENT_EXTENSION = ".nut"


@dataclass(frozen=True)
class Segment:
    """One piece of a video: the frames whose timestamps are in ``[start, end)``.

    Attributes:
        index: position among the video's segments, from 0.
        count: how many segments the video has.
        start: presentation timestamp (source time base) of the keyframe it starts at;
            ``None`` for the first segment (the beginning of the stream).
        end: ``start`` of the next segment; ``None`` for the last one.
        first_frame: index, in the whole video, of its first frame.
        frames: how many frames it holds (one per video packet of the source).
    """

    index: int
    count: int
    start: int | None
    end: int | None
    first_frame: int
    frames: int

    @property
    def name(self) -> str:
        return f"segment-{self.index:04d}-of-{self.count:04d}"


@dataclass(frozen=True)
class SegmentPlan:
    """Where a video is cut. ``segments`` has one element when it is not cut at all."""

    segments: tuple[Segment, ...]
    frames: int
    seconds: float
    time_base: Fraction
    note: str | None = None  # why a long video could not be cut, when it could not

    @property
    def split(self) -> bool:
        return len(self.segments) > 1


@dataclass(frozen=True)
class VideoIndex:
    """What the demuxer says about the video packets of a file, without decoding."""

    time_base: Fraction
    timestamps: tuple[int, ...]  # presentation timestamps, in file (decoding) order
    keyframes: tuple[int, ...]  # presentation timestamps of the keyframes, in file order
    missing_timestamps: int  # packets without one (such a file is never cut)

    @property
    def frames(self) -> int:
        return len(self.timestamps)


def index_video(path: str | Path) -> VideoIndex:
    """Read the packet index of the first video stream (demuxing only, no decoding).

    Raises:
        InputError: the file cannot be opened or has no video stream.
    """
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise InputError(f"{path}: cannot read the packet index: {error}") from None
    with container:
        if not container.streams.video:
            raise InputError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        timestamps: list[int] = []
        keyframes: list[int] = []
        missing = 0
        try:
            for packet in container.demux(stream):
                if not packet.size or packet.is_discard:
                    continue
                if packet.pts is None:
                    missing += 1
                    continue
                timestamps.append(packet.pts)
                if packet.is_keyframe:
                    keyframes.append(packet.pts)
        except (av.error.FFmpegError, OSError) as error:
            raise InputError(f"{path}: reading the packet index stopped part-way: "
                             f"{error}") from None
        return VideoIndex(stream.time_base or Fraction(1, 90000), tuple(timestamps),
                          tuple(keyframes), missing)


def plan_segments(path: str | Path, every_seconds: float | None) -> SegmentPlan:
    """Cut the video at the first keyframe at or after each multiple of ``every_seconds``.

    A video no longer than ``every_seconds`` (or ``every_seconds`` None or 0) is one
    segment. So is a video that cannot be cut safely (packets without timestamps, or no
    keyframe after its start), with :attr:`SegmentPlan.note` saying why.
    """
    index = index_video(path)
    time_base = index.time_base
    if not index.timestamps:
        return SegmentPlan((Segment(0, 1, None, None, 0, 0),), 0, 0.0, time_base)
    first, last = min(index.timestamps), max(index.timestamps)
    seconds = float((last - first) * time_base)
    whole = SegmentPlan((Segment(0, 1, None, None, 0, index.frames),), index.frames, seconds,
                        time_base)
    if not every_seconds or seconds <= every_seconds:
        return whole
    if index.missing_timestamps:
        return replace(whole, note=f"{index.missing_timestamps} video packets have no "
                                   "timestamp; the video is protected in one piece")
    if len(set(index.timestamps)) != len(index.timestamps):
        return replace(whole, note="video packets share timestamps; the video is protected "
                                   "in one piece")
    keyframes = sorted(set(pts for pts in index.keyframes if pts > first))
    cuts: list[int] = []
    target = 1
    for pts in keyframes:
        if float((pts - first) * time_base) >= target * every_seconds:
            cuts.append(pts)
            target = math.floor(float((pts - first) * time_base) / every_seconds) + 1
    if not cuts:
        return replace(whole, note=f"no keyframe after the start to cut at (one every "
                                   f"{seconds:.0f} s at least); the video is protected in "
                                   "one piece")
    ordered = sorted(index.timestamps)
    bounds = [None, *cuts, None]
    segments = []
    position = 0
    for number in range(len(bounds) - 1):
        end = bounds[number + 1]
        count = 0
        while position + count < len(ordered) and (end is None or ordered[position + count] < end):
            count += 1
        segments.append(Segment(number, len(bounds) - 1, bounds[number], end, position, count))
        position += count
    return SegmentPlan(tuple(segments), index.frames, seconds, time_base)


class SegmentSource(Source):
    """The frames of one segment of a video file, decoded from its keyframe.

    Timestamps are the source's, frame indices count from the segment's first frame in the
    whole video, so a segment's output can be joined to the others unchanged. Audio is not
    read here: the join copies it once from the source.
    """

    def __init__(self, path: str | Path, segment: Segment, threads: int = 0):
        super().__init__()
        self.path = str(path)
        self.segment = segment
        self.inner = open_source(self.path, threads=threads)
        if not isinstance(self.inner, ContainerSource):  # pragma: no cover - paths only
            raise InputError(f"{path}: only video files can be cut into segments")
        self.name = f"{path} (segment {segment.index + 1} of {segment.count})"
        self.info = replace(self.inner.info, frame_count=segment.frames)
        self.discarded = 0  # packets an edit list hides

    def copy_streams(self) -> list:
        return []

    def frames(self, format: str, on_packet=None) -> Iterator[DecodedFrame]:
        import av

        segment = self.segment
        container, stream = self.inner.container, self.inner.stream
        context = stream.codec_context
        context.flush_buffers()
        try:
            if segment.start is None:
                container.seek(0, backward=True, any_frame=False)  # the preroll read some
            else:
                container.seek(segment.start, stream=stream, backward=True, any_frame=False)
        except (av.error.FFmpegError, OSError) as error:
            self.damage = (f"cannot seek to the segment's keyframe ({error}); protect it in "
                           "one piece (--split-long 0)")
            return
        index = segment.first_frame
        last_pts = None
        started = False
        finished = False

        def keep(frame) -> bool:
            return (frame.pts is not None
                    and (segment.start is None or frame.pts >= segment.start)
                    and (last_pts is None or frame.pts > last_pts))

        try:
            for packet in container.demux(stream):
                if not started:
                    # start decoding at a keyframe (a seek may land before one)
                    if not packet.is_keyframe or packet.pts is None:
                        continue
                    if segment.start is not None and packet.pts > segment.start:
                        self.damage = (f"no keyframe at timestamp {segment.start}: the "
                                       "segment cannot be decoded on its own")
                        return
                    started = True
                if packet.size and packet.is_discard:
                    self.discarded += 1
                for frame in self._decode(packet):
                    if segment.end is not None and frame.pts is not None \
                            and frame.pts >= segment.end:
                        finished = True
                        break
                    if keep(frame):
                        last_pts = frame.pts
                        yield DecodedFrame(index, frame.pts,
                                           frame_to_array(frame, format, self.info))
                        index += 1
                if finished:
                    break
        except (av.error.InvalidDataError, av.error.EOFError, OSError) as error:
            self.damage = f"reading the file stopped part-way: {error}"
        if not finished:
            try:
                for frame in context.decode(None):
                    if segment.end is not None and frame.pts is not None \
                            and frame.pts >= segment.end:
                        break
                    if keep(frame):
                        last_pts = frame.pts
                        yield DecodedFrame(index, frame.pts,
                                           frame_to_array(frame, format, self.info))
                        index += 1
            except av.error.EOFError:
                pass
            except (av.error.InvalidDataError, OSError):
                self.decode_errors += 1
        self.frames_decoded = index - segment.first_frame
        if self.damage is None and self.decode_errors:
            self.damage = (f"{self.decode_errors} packets could not be decoded (corrupt "
                           "data), they were skipped")
        if self.damage is None and self.frames_decoded != segment.frames:
            self.damage = (f"{self.frames_decoded} frames were decoded where the packet "
                           f"index has {segment.frames}")

    def close(self) -> None:
        self.inner.close()


def _rescale(value: int, source: Fraction, target: Fraction) -> int:
    """``value`` ticks of ``source`` in ticks of ``target``, rounded half away from zero
    (as FFmpeg's av_rescale_q)."""
    exact = Fraction(value) * source / target
    whole = math.floor(abs(exact) + Fraction(1, 2))
    return whole if exact >= 0 else -whole


@dataclass
class JoinStats:
    frames: int = 0
    copied_packets: int = 0


def join_segments(source: str | Path, segments: list[Path], output: str | Path,
                  copy_audio: bool = True, container_format: str | None = None,
                  rotation: float = 0.0) -> JoinStats:
    """Copy the video packets of ``segments`` (in order) and the audio and subtitle packets
    of ``source`` into ``output``, without re-encoding anything.

    Raises:
        OutputError: the output cannot be written, or the segments were not encoded alike
            (their sequence headers differ).
        InputError: a segment or the source cannot be read.
    """
    import av

    if not segments:
        raise OutputError(f"{output}: nothing to join")
    readers = []
    try:
        for path in segments:
            try:
                readers.append(av.open(str(path)))
            except (av.error.FFmpegError, OSError) as error:
                raise InputError(f"{path}: cannot read the segment: {error}") from None
        streams = [reader.streams.video[0] for reader in readers]
        headers = {bytes(stream.codec_context.extradata or b"") for stream in streams}
        if len(headers) != 1:
            raise OutputError(f"{output}: the segments were encoded with different sequence "
                              "headers and cannot be joined without re-encoding")
        try:
            original = av.open(str(source))
        except (av.error.FFmpegError, OSError) as error:
            raise InputError(f"{source}: cannot read: {error}") from None
        readers.append(original)
        try:
            target = av.open(str(output), "w", format=container_format)
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise OutputError(f"{output}: cannot create: {error}") from None
        stats = JoinStats()
        try:
            _join(target, streams, original, copy_audio, rotation, stats)
        except (av.error.FFmpegError, OSError) as error:
            target.close()
            raise OutputError(f"{output}: joining the segments failed: {error}") from None
        target.close()
        return stats
    finally:
        for reader in readers:
            reader.close()


def _join(target, streams, original, copy_audio: bool, rotation: float,
          stats: JoinStats) -> None:
    import av

    video = target.add_stream_from_template(streams[0])
    video.time_base = streams[0].time_base
    if rotation and hasattr(video, "set_display_rotation"):
        video.set_display_rotation(rotation)
    copies = {}
    if copy_audio:
        for stream in original.streams:
            if stream.type in ("audio", "subtitle"):
                try:
                    copies[stream.index] = target.add_stream_from_template(stream)
                except (ValueError, av.error.FFmpegError):  # the container cannot hold it
                    continue
    target.start_encoding()
    video_base = video.time_base

    def video_packets():
        last_dts = None
        for stream in streams:
            for packet in stream.container.demux(stream):
                if packet.dts is None and packet.pts is None:
                    continue  # the demuxer's end-of-stream marker
                base = packet.time_base
                pts = _rescale(packet.pts, base, video_base)
                dts = _rescale(packet.dts if packet.dts is not None else packet.pts, base,
                               video_base)
                if last_dts is not None and dts <= last_dts:
                    dts = last_dts + 1  # the next segment's B-frame delay starts earlier
                if dts > pts:
                    raise OutputError("the segments' timestamps overlap: they cannot be "
                                      "joined in order")
                packet.pts, packet.dts, packet.time_base = pts, dts, video_base
                last_dts = dts
                yield float(dts * video_base), 0, packet

    def copied_packets():
        if not copies:
            return
        for packet in original.demux([original.streams[index] for index in copies]):
            if packet.dts is None:
                continue
            yield float(packet.dts * packet.time_base), 1, packet

    for _, kind, packet in heapq.merge(video_packets(), copied_packets(),
                                       key=lambda item: (item[0], item[1])):
        if kind == 0:
            packet.stream = video
            stats.frames += 1
        else:
            packet.stream = copies[packet.stream.index]
            stats.copied_packets += 1
        target.mux(packet)
