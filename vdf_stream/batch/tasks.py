"""What runs on the Ray workers: protect a unit (a whole video or one segment), join the
segments of a video, evaluate an output. Each writes under a hidden temporary name and renames
the file into place when it is complete, and sends back a :class:`UnitResult` instead of
raising for a failure the project understands (Ray retries only lost workers)."""

from __future__ import annotations

import math
import os
import re
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..assets import sha256_of
from ..errors import InputError, OutputError, VdfError
from ..media.segments import Segment, join_segments
from .options import Protection
from .plan import message_for

SEGMENT_CONTAINER = "mov"  # keeps the source's time base and B-frame timestamps exactly
PROGRESS_INTERVAL = 0.5  # seconds between a worker's progress reports


@dataclass(frozen=True)
class UnitSpec:
    """One Ray task: protect a whole video, or one segment of it, into ``target``."""

    key: str
    unit: str  # "KEY" or "KEY#SEGMENT": the unit's name in progress reports
    source: str
    target: str  # the output, or the segment file in the item's work folder
    segment: Segment | None
    protection: Protection
    device: str
    batch_size: int
    threads: int
    work: str  # the item's work folder (attempt counters)
    crash_after_frames: int | None = None


@dataclass(frozen=True)
class JoinSpec:
    key: str
    source: str
    segments: tuple[str, ...]
    target: str
    frames: int
    copy_audio: bool
    rotation: float


@dataclass(frozen=True)
class EvalSpec:
    key: str
    source: str
    output: str
    stride: int
    device: str
    threads: int


@dataclass
class UnitResult:
    """What a unit sends back (it never raises for a failure it understands)."""

    ok: bool
    frames: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of the worker process, every thread, during the unit
    attempts: int = 1
    sha256: str | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    evaluation: dict | None = None


class ProgressBoard:
    """A Ray actor: the frames each running unit has written, as its worker last said.
    A retried unit starts again from 0, so counts are set, never added."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}

    def report(self, unit: str, frames: int) -> None:
        self.frames[unit] = frames

    def snapshot(self) -> dict[str, int]:
        return dict(self.frames)


def partial_path(path: Path) -> Path:
    """Where ``path`` is written before it is complete: hidden, named partial, same
    extension (which chooses the container)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def remove_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _count_attempt(work: str, unit: str) -> int:
    """This unit's attempt number (1 for the first), kept in the item's work folder so a
    retry on another worker or machine sees it."""
    folder = Path(work)
    folder.mkdir(parents=True, exist_ok=True)
    counter = folder / (re.sub(r"[^A-Za-z0-9._-]", "_", unit.rpartition("#")[2] or "whole")
                        + ".attempts")
    with open(counter, "a") as file:
        file.write("x")
    return counter.stat().st_size


def execute_unit(spec: UnitSpec, board=None) -> UnitResult:
    """Protect one unit into a temporary file, then rename it into place.

    Runs in a Ray worker, through the same :class:`~vdf_stream.pipeline.session.Session` as
    ``vdf-stream protect``, with ``spec.threads`` threads for torch, the decoder and the
    encoder. A failure the project understands (bad input, unwritable output) comes back as
    a result with ``ok=False``: Ray does not retry it. A lost worker never returns: Ray
    reruns the task, which starts the unit afresh.
    """
    from ..pipeline.session import Session, SessionSpec

    started, cpu_started = time.perf_counter(), time.process_time()
    attempt = _count_attempt(spec.work, spec.unit)
    target = Path(spec.target)
    partial = partial_path(target)
    remove_file(partial)  # left by a killed attempt
    warnings: list[str] = []
    written = 0
    last_report = 0.0

    def progress(count: int) -> None:
        nonlocal written, last_report
        written += count
        if spec.crash_after_frames is not None and attempt == 1 \
                and written >= spec.crash_after_frames:
            os.kill(os.getpid(), signal.SIGKILL)  # the fault-injection test hook
        now = time.monotonic()
        if board is not None and now - last_report >= PROGRESS_INTERVAL:
            last_report = now
            board.report.remote(spec.unit, written)

    protection = spec.protection
    segment = spec.segment
    session = SessionSpec(
        input=spec.source, output=str(partial), vf=protection.vf,
        strength=protection.strength, seed=protection.seed,
        against=protection.against, device=spec.device,
        encode=replace(protection.encode, threads=spec.threads),
        container_format=SEGMENT_CONTAINER if segment is not None else None,
        segment=segment, decoder_threads=spec.threads, torch_threads=max(1, spec.threads),
        batch_size=spec.batch_size)
    try:
        stats = Session(session, warn=warnings.append).run(progress)
        if segment is not None and stats.frames_out != segment.frames:
            raise InputError(f"segment {segment.index + 1} of {segment.count} gave "
                             f"{stats.frames_out} frames where the packet index has "
                             f"{segment.frames} (try --split-long 0)")
        checksum = sha256_of(partial) if segment is None else None
        os.replace(partial, target)
    except VdfError as error:
        remove_file(partial)
        if getattr(error, "on_disk", None):  # the run's partial file is gone with it
            error.on_disk = f"the partial output was removed; {target} was not written"
        return UnitResult(False, written, time.perf_counter() - started, attempts=attempt,
                          message=message_for(error, spec.source), warnings=warnings)
    except Exception as error:  # a bug: reported in the item, the batch goes on
        remove_file(partial)
        return UnitResult(False, written, time.perf_counter() - started, attempts=attempt,
                          message=f"internal error: {type(error).__name__}: {error}",
                          warnings=warnings)
    if board is not None:
        board.report.remote(spec.unit, stats.frames_out)
    return UnitResult(True, stats.frames_out, time.perf_counter() - started,
                      time.process_time() - cpu_started, attempt, sha256=checksum,
                      warnings=warnings)


def execute_join(spec: JoinSpec) -> UnitResult:
    """Join the segments of an item into its output (stream copy), atomically."""
    started = time.perf_counter()
    target = Path(spec.target)
    partial = partial_path(target)
    remove_file(partial)
    try:
        stats = join_segments(spec.source, [Path(path) for path in spec.segments], partial,
                              copy_audio=spec.copy_audio, rotation=spec.rotation)
        if stats.frames != spec.frames:
            raise OutputError(f"the joined segments hold {stats.frames} frames where the "
                              f"source has {spec.frames}")
        checksum = sha256_of(partial)
        os.replace(partial, target)
    except VdfError as error:
        remove_file(partial)
        return UnitResult(False, message=message_for(error, spec.source))
    except Exception as error:
        remove_file(partial)
        return UnitResult(False, message=f"internal error while joining: "
                                         f"{type(error).__name__}: {error}")
    return UnitResult(True, stats.frames, time.perf_counter() - started, sha256=checksum)


def eval_figures(result: dict) -> dict:
    """The few figures of an eval result the manifest and the summary keep per video."""
    def median(group: str, name: str):
        value = (result.get(group, {}).get(name) or {}).get("median")
        return value if value is None or math.isfinite(value) else None

    figures = {name: median("fidelity", name) for name in ("psnr", "ssim")}
    figures.update({name: median("efficacy", name)
                    for name in ("landmark_nme", "pose_error", "parse_flip")})
    loss = (result.get("efficacy", {}).get("detection_loss") or {}).get("mean")
    figures["detection_loss"] = loss
    figures["frames_evaluated"] = len(result.get("frames") or [])
    return figures


def execute_eval(spec: EvalSpec) -> UnitResult:
    """``vdf-stream eval`` of one output against its source; the JSON goes beside the
    output (written under a temporary name first, like every output)."""
    import torch

    from ..evaluation.evaluate import EvalOptions, default_json_path, evaluate, write_json

    started = time.perf_counter()
    torch.set_num_threads(max(1, spec.threads))
    destination = Path(default_json_path(spec.output))
    partial = partial_path(destination)
    try:
        result, _ = evaluate(spec.source, spec.output,
                             EvalOptions(stride=spec.stride, device=spec.device,
                                         full_screen_frames=0))
        write_json(result, partial)
        os.replace(partial, destination)
    except VdfError as error:
        remove_file(partial)
        return UnitResult(False, message=f"eval: {error}")
    except Exception as error:
        remove_file(partial)
        return UnitResult(False, message=f"eval: internal error: {type(error).__name__}: "
                                         f"{error}")
    figures = eval_figures(result)
    figures["json"] = destination.name
    return UnitResult(True, figures["frames_evaluated"], time.perf_counter() - started,
                      evaluation=figures)
