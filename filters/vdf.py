"""``vdf``: the protection, as a filter.

A bounded change (at most ``eps`` per pixel), optimised so that the face models deepfake
pipelines read faces with (landmarks, head pose, parsing, detection) read this face wrongly,
and shared between similar frames. The algorithm is :mod:`vdf_stream.protection` (its
:class:`~vdf_stream.protection.protector.Protector`: describe -> decide -> optimise ->
apply); this module adapts it to the filter interface: the face regions of each batch are
read once, each frame's parameters are made in order, and in a stream (``protect``, pipes,
``batch``) they are applied on a second thread while the next frames are optimised
(``overlap``): frames come out in order, at most :data:`APPLY_LAG` frames later, the same as
without it.

Strength presets (``strength``; ``eps`` and ``steps`` override them) are chosen by how
visible they are after publishing: see :mod:`vdf_stream.protection.options`,
docs/filter.md and docs/results.md.

At close, a summary line goes to stderr (``quiet`` silences it): frames, keyframes, reuse
rate, optimiser steps per frame; :meth:`VdfFilter.summary` holds the same.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import torch

from vdf_stream.errors import UsageError
from vdf_stream.media.frames import Frames, VideoInfo
from vdf_stream.pipeline.filter import Filter
from vdf_stream.protection.options import ProtectionOptions

# Frames the apply thread may be behind the optimiser (``overlap``) before process() waits.
APPLY_LAG = 2


class VdfFilter(Filter):
    name = "vdf"
    description = "protect faces against talking-face deepfakes (face models misread them)"
    Options = ProtectionOptions
    formats = ("rgbf32",)
    protects = True

    def __init__(self, options=None):
        super().__init__(options)
        self.protector = None
        self.stats = None
        self.gains: list[float] = []  # the budget's scale of each frame's change
        self._applier = None  # the apply thread (overlap), started on the first frame
        self._pending = deque()  # (pts, index, future) of frames being applied, in order
        self._time_base = None
        self._empty = None

    def setup(self, info: VideoInfo, device: torch.device) -> VideoInfo:
        from vdf_stream.protection.protector import Protector

        output = super().setup(info, device)  # validates the options first
        try:
            self.protector = Protector(self.options, device, bit_depth=info.bit_depth)
        except ValueError as error:  # backend=cupy without a GPU
            raise UsageError(f"{self.name}: {error}") from None
        if self.protector.note is not None and not self.options.quiet:
            self.say(f"note: {self.protector.note}")
        self.eps = self.protector.eps
        self.stats = self.protector.stats
        return output

    @property
    def timings(self) -> dict:
        return self.protector.timings if self.protector is not None else {}

    def process(self, frames: Frames) -> Frames:
        if frames.format not in self.formats:
            raise ValueError(f"{self.name} accepts rgbf32 frames, got {frames.format}")
        if len(frames) == 0:
            return frames.with_data(frames.data.clone())
        protector = self.protector
        data = frames.data
        started = time.perf_counter()
        regions, found, _ = protector.pipeline.regions(data)
        protector.timings["detect"] += time.perf_counter() - started
        overlap = self.streaming and self.options.overlap
        if overlap and self._applier is None:
            self._applier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vdf-apply")
            self._time_base = frames.time_base
            self._empty = data[:0]
        outputs = []
        for position, index in enumerate(frames.indices):
            frame = data[position:position + 1]
            region = regions[position]
            started = time.perf_counter()
            params, gain, action, steps = protector.parameters(frame, region,
                                                               bool(found[position]), int(index))
            protector.timings["optimise"] += time.perf_counter() - started
            self.stats.record(action, steps)
            self.gains.append(gain)
            job = (frame, params, region, found[position:position + 1], gain)
            if overlap:
                self._pending.append((frames.pts[position], index,
                                      self._applier.submit(protector.apply, *job)))
            else:
                outputs.append(protector.apply(*job))
        if overlap:
            return self._release(wait=False)
        return frames.with_data(torch.cat(outputs), frames.format)

    def _release(self, wait: bool) -> Frames:
        """The applied frames at the front of the queue, in order: those done, and any
        more than :data:`APPLY_LAG` behind (waited for); with ``wait``, all of them."""
        pts, indices, outputs = [], [], []
        while self._pending and (wait or len(self._pending) > APPLY_LAG
                                 or self._pending[0][2].done()):
            stamp, index, future = self._pending.popleft()
            outputs.append(future.result())  # an apply error is raised here
            pts.append(stamp)
            indices.append(index)
        data = torch.cat(outputs) if outputs else self._empty
        return Frames(data, "rgbf32", pts, indices, self._time_base)

    def flush(self) -> Frames | None:
        if not self._pending:
            return None
        return self._release(wait=True)

    def summary(self) -> dict:
        summary = self.stats.summary() if self.stats else {}
        summary["seconds"] = {name: round(value, 3) for name, value in self.timings.items()}
        if self._median_gain() is not None:
            summary["jod_budget"] = self.protector.budget.target
            summary["gain_median"] = round(self._median_gain(), 4)
        return summary

    def _median_gain(self, frames: int | None = None) -> float | None:
        """The budget's median scale of the changes of the first ``frames`` frames (all by
        default; ``None`` without a budget)."""
        gains = self.gains[:frames]
        if self.protector is None or self.protector.budget is None or not gains:
            return None
        return float(torch.tensor(gains).median())

    def close(self) -> None:
        if self._applier is not None:
            for _, _, future in self._pending:
                future.cancel()
            self._pending.clear()
            self._applier.shutdown(wait=True)
            self._applier = None
        # the engine sets frames_written: a run stopped early counts only the frames written
        written = getattr(self, "frames_written", None)
        if self.stats is not None and self.stats.frames and written != 0 \
                and not self.options.quiet:
            from vdf_stream.protection.sharing import NEW, REFINE

            s = self.stats
            actions = s.actions[:written]
            keyframes, refined = actions.count(NEW), actions.count(REFINE)
            reuse = (len(actions) - keyframes - refined) / len(actions)
            budget = self.protector.budget
            gain = self._median_gain(len(actions))
            print(f"vdf: {len(actions)} frames, {keyframes} keyframes, {refined} refined, "
                  f"reuse rate {reuse:.0%}, " + (
                      f"{s.steps_per_frame:.2f} optimiser steps per frame ({s.steps} in all), "
                      if len(actions) == s.frames else "") +
                  f"eps {self.eps * 255:.3g}/255, share "
                  f"{'on' if self.options.share else 'off'}" + (
                      f", visibility budget JOD {budget.target:g} (change scaled to "
                      f"{gain:.2f} of eps, median)"
                      if gain is not None else ""), file=sys.stderr)
