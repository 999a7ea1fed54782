"""``vdf-stream batch``: protect a whole library of videos, spread over Ray.

One process is not enough for thousands of clips or hours-long recordings, so the work is
handed to Ray, an existing distributed engine: a local Ray on this machine by default, or a
running cluster (``--address auto`` or ``ray://host:port``). Nothing here schedules, retries
after a crash or moves work between machines by itself; Ray does.

The pieces:

* **items**: every video under ``INPUT_DIR`` (or named in a list file) becomes one output at
  the same relative path under ``OUTPUT_DIR``;
* **units**: an item is protected as one Ray task, or, when it is longer than
  ``--split-long``, as one task per segment (:mod:`vdf_stream.media.segments`) followed by a join
  task that stream-copies the segments and the source's audio into the output;
* **the manifest** ``OUTPUT_DIR/vdf-batch.jsonl``: one JSON object per state change of an
  item (running, done, failed, interrupted), with the hash of the settings that made it, the
  output's SHA-256, its frame count, speed and, with ``--report``, its eval figures. A new
  run reads it back and skips every item that is done with the same settings and whose
  output still has the recorded checksum; everything else is redone;
* **atomic outputs**: a unit writes under a hidden temporary name (``.NAME.partial.EXT``)
  and renames it when the file is complete, so a crash, a killed worker or Ctrl-C never
  leaves a file that looks done;
* **failures stay in their item**: a worker lost mid-task is retried by Ray (``max_retries``),
  an input that cannot be decoded fails at once (retrying would fail the same way); either
  way the item is recorded as failed and the others go on.

Paths must be readable and writable at the same place on every machine of a cluster (a
shared file system), and vdf-stream must be installed there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..errors import (EXIT_DAMAGED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Interrupted,
                     InputError, OutputError, UsageError, VdfError)
from ..media.segments import Segment, SegmentPlan, join_segments, plan_segments
from ..media.sinks import EncodeOptions

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                    ".m2ts", ".mts", ".flv", ".wmv", ".3gp", ".nut", ".ogv")
MANIFEST_NAME = "vdf-batch.jsonl"
WORK_FOLDER_NAME = ".vdf-batch"  # segments and attempt counters of unfinished items
SEGMENT_CONTAINER = "mov"  # keeps the source's time base and B-frame timestamps exactly
MANIFEST_SCHEMA = 1
DEFAULT_SPLIT_SECONDS = 300.0
DEFAULT_RETRIES = 2
PROGRESS_INTERVAL = 0.5  # seconds between a worker's progress reports
# A test hook: "kill-after-frames=N" makes the first attempt of every unit kill its own
# worker process (SIGKILL) after N frames, to check that Ray retries it.
FAULT_VARIABLE = "VDF_STREAM_BATCH_FAULT"

EXIT_SOME_FAILED = EXIT_DAMAGED
BATCH_EXIT_CODES_HELP = """\
exit codes:
  0    every item is done (now or by an earlier run with the same settings)
  2    usage error: bad arguments, unknown filter, Ray missing or unreachable
  3    input error: INPUT missing, or no video in it
  4    output error: OUTPUT_DIR unwritable, equal to INPUT, or in use by another batch
  5    some items failed (the summary and the manifest say why); the others are done
  130  interrupted (Ctrl-C): finished items are kept, run the same command to resume"""


class RayUnavailable(VdfError):
    """Ray is not installed, or the cluster named by ``--address`` cannot be reached."""

    exit_code = EXIT_USAGE


# ---------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class Protection:
    """What decides the content of an output: the filter graph, the options of its vdf
    filters and the encoder's settings. Hashed, with the input's identity, into the
    settings hash of the manifest (the device and thread counts are left out: they change
    the speed, not what is asked for)."""

    vf: str = "vdf"
    strength: str | None = None
    seed: int | None = None
    encode: EncodeOptions = field(default_factory=EncodeOptions)

    def describe(self) -> dict:
        return {"vf": self.vf, "strength": self.strength, "seed": self.seed,
                "codec": self.encode.codec, "crf": self.encode.crf,
                "preset": self.encode.preset, "pix_fmt": self.encode.pix_fmt or "yuv420p",
                "copy_audio": self.encode.copy_audio}


@dataclass(frozen=True)
class BatchOptions:
    """How ``vdf-stream batch`` runs.

    Attributes:
        output: the output folder (created when missing).
        protection: the graph and encoder settings, as for ``vdf-stream protect``.
        split_seconds: videos longer than this are cut into segments about this long,
            protected in parallel (``None`` or 0: never cut).
        address: ``None`` for a local Ray on this machine, else what ``ray.init`` takes:
            ``auto`` (a running cluster this machine belongs to) or ``ray://host:port``.
        workers: most units running at once (default: one per CPU, or per GPU share).
        gpus_per_task: GPUs each unit asks Ray for (``None``: 1 when the cluster has GPUs
            and ``device`` allows them, else 0).
        retries: how often Ray reruns a unit whose worker was lost.
        report: evaluate every output (``vdf-stream eval``) and record the figures.
        report_stride: evaluate every n-th frame.
        overwrite: replace outputs that exist but were not made by this batch.
        device: ``auto``, ``cpu`` or ``cuda``, for every unit.
        batch_size: frames filtered together (as ``protect --batch-size``).
    """

    output: Path
    protection: Protection = field(default_factory=Protection)
    split_seconds: float | None = DEFAULT_SPLIT_SECONDS
    address: str | None = None
    workers: int | None = None
    gpus_per_task: float | None = None
    retries: int = DEFAULT_RETRIES
    report: bool = False
    report_stride: int = 1
    overwrite: bool = False
    device: str = "auto"
    batch_size: int = 1

    def validate(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UsageError("--workers must be at least 1")
        if self.gpus_per_task is not None and self.gpus_per_task < 0:
            raise UsageError("--gpus-per-task cannot be negative")
        if self.retries < 0:
            raise UsageError("--retries cannot be negative")
        if self.split_seconds is not None and self.split_seconds < 0:
            raise UsageError("--split-long cannot be negative")
        if self.report_stride < 1:
            raise UsageError("--report-stride must be at least 1")
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")


def parse_duration(text: str) -> float:
    """``300``, ``300s``, ``5m``, ``1.5h`` -> seconds; ``0`` or ``off`` -> 0 (never split)."""
    value = text.strip().lower()
    if value in ("off", "no", "never"):
        return 0.0
    match = re.fullmatch(r"(\d+(?:\.\d*)?)\s*(s|sec|m|min|h)?", value)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 300s, 5m or 1h (0 or off: never)")
    scale = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * scale


# ---------------------------------------------------------------------------------------
# Finding the items


@dataclass
class Item:
    """One input video and what became of it in this run."""

    key: str  # its path relative to the input root, "/"-separated: the manifest's key
    source: Path
    output: Path
    state: str = "pending"  # pending, running, done, failed, interrupted, skipped
    message: str = ""
    frames: int | None = None
    seconds: float | None = None  # wall time from its first unit's start to its output
    worker_seconds: float = 0.0  # summed time of its units
    cpu_seconds: float = 0.0  # summed CPU time of its units (all their threads)
    attempts: int = 0
    sha256: str | None = None
    settings: str | None = None
    input_size: int | None = None
    input_mtime_ns: int | None = None
    segments: int = 1
    evaluation: dict | None = None
    plan: SegmentPlan | None = None
    rotation: float = 0.0
    earlier: dict | None = None  # its last manifest record from an earlier run
    started: float | None = None

    @property
    def fps(self) -> float | None:
        if self.frames and self.seconds:
            return self.frames / self.seconds
        return None


@dataclass(frozen=True)
class Discovery:
    items: list[Item]
    ignored: list[str]  # files passed over (not videos by their extension)
    root: Path


def discover(spec: str, output: Path) -> Discovery:
    """The videos of a folder (recursively), of a list file (one path per line, ``#``
    comments, relative to the list's folder) or a single video.

    Hidden files and folders and the output folder (when it lies inside the input folder)
    are passed over, so outputs are never protected again.

    Raises:
        InputError: ``spec`` is missing, or holds no video.
        OutputError: the output folder is the input folder.
    """
    path = Path(spec)
    output = output.resolve()
    if not path.exists():
        raise InputError(f"{spec}: no such file or folder")
    if path.is_dir():
        root = path.resolve()
        if root == output:
            raise OutputError(f"{spec}: the output folder is the input folder; outputs keep "
                              "the input names, so choose another -o")
        items, ignored = [], []
        for folder, folders, files in os.walk(root):
            here = Path(folder)
            folders[:] = sorted(name for name in folders if not name.startswith(".")
                                and (here / name).resolve() != output)
            for name in sorted(files):
                if name.startswith("."):
                    continue
                file = here / name
                key = file.relative_to(root).as_posix()
                if file.suffix.lower() in VIDEO_EXTENSIONS:
                    items.append(Item(key, file, output / key))
                else:
                    ignored.append(key)
        if not items:
            raise InputError(f"{spec}: no video files in it (looked for "
                             f"{', '.join(VIDEO_EXTENSIONS[:6])}...)")
        return Discovery(items, ignored, root)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        file = path.resolve()
        return Discovery([Item(file.name, file, output / file.name)], [], file.parent)
    return _discover_list(path, output)


def _discover_list(path: Path, output: Path) -> Discovery:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: neither a folder, a video nor a list of paths (one per "
                         "line)") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    entries: list[Path] = []
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        entry = Path(text).expanduser()
        entry = (entry if entry.is_absolute() else path.parent / entry).resolve()
        if entry not in entries:
            entries.append(entry)
    if not entries:
        raise InputError(f"{path}: the list names no video")
    root = Path(os.path.commonpath([entry.parent for entry in entries]))
    items = []
    for entry in entries:
        key = entry.relative_to(root).as_posix()
        item = Item(key, entry, output / key)
        if not entry.exists():
            item.state, item.message = "failed", "no such file"
        elif entry.is_dir():
            item.state, item.message = "failed", "is a folder, not a video file"
        elif output == entry or output in entry.parents:
            item.state, item.message = "failed", "lies inside the output folder"
        items.append(item)
    return Discovery(items, [], root)


# ---------------------------------------------------------------------------------------
# The manifest


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Manifest:
    """``OUTPUT_DIR/vdf-batch.jsonl``: one JSON object per line, appended and flushed to disk
    at every state change, so that it is consistent however the run ends (a line cut short
    by a crash is ignored when read back). Only the driver writes it; a second batch on the
    same folder is refused while one runs (an exclusive lock on the file)."""

    def __init__(self, folder: Path):
        self.path = folder / MANIFEST_NAME
        self.last: dict[str, dict] = {}
        if self.path.exists():
            self._read()
        try:
            self.file = open(self.path, "a", encoding="utf-8")
        except OSError as error:
            raise OutputError(f"{self.path}: cannot write the manifest: "
                              f"{error.strerror or error}") from None
        try:
            import fcntl

            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not on POSIX: no lock
            pass
        except OSError:
            self.file.close()
            raise OutputError(f"{folder}: another vdf-stream batch is writing into this "
                              "folder") from None

    def _read(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise OutputError(f"{self.path}: cannot read the manifest: "
                              f"{error.strerror or error}") from None
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(record, dict) and record.get("event") == "item" and "item" in record:
                self.last[record["item"]] = record

    def write(self, record: dict) -> None:
        self.file.write(json.dumps({"time": _now(), **record}, allow_nan=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def item(self, item: Item, state: str, **extra) -> None:
        record = {"event": "item", "item": item.key, "state": state,
                  "input": str(item.source), "output": item.key,
                  "settings": item.settings, "input_size": item.input_size,
                  "input_mtime_ns": item.input_mtime_ns, **extra}
        self.write(record)
        self.last[item.key] = record

    def close(self) -> None:
        self.file.close()


def settings_hash(protection: Protection, split_seconds: float | None, size: int,
                  mtime_ns: int) -> str:
    """SHA-256 of what decides an output: protection and encoder settings, whether the
    video is cut (and how long its segments are, since the sharing window restarts in
    each) and the input's identity (size and modification time)."""
    content = {"schema": MANIFEST_SCHEMA, **protection.describe(),
               "split_seconds": split_seconds, "input_size": size, "input_mtime_ns": mtime_ns}
    text = json.dumps(content, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def partial_path(path: Path) -> Path:
    """Where ``path`` is written before it is complete: hidden, named partial, same
    extension (which chooses the container)."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


# ---------------------------------------------------------------------------------------
# What runs on the workers


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


def _message(error: BaseException, source: str) -> str:
    text = str(error)
    for prefix in (f"{source}: ", f"{source} "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def execute_unit(spec: UnitSpec, board=None) -> UnitResult:
    """Protect one unit into a temporary file, then rename it into place.

    Runs in a Ray worker. A failure the project understands (bad input, unwritable output)
    comes back as a result with ``ok=False``: Ray does not retry it. A lost worker never
    returns: Ray reruns the task, which starts the unit afresh.
    """
    import torch

    from ..cli import apply_protection_options
    from ..pipeline.engine import Engine, resolve_device
    from ..pipeline.filter import build_filters
    from ..media.sinks import FileSink
    from ..media.sources import open_source
    from ..media.segments import SegmentSource

    started, cpu_started = time.perf_counter(), time.process_time()
    attempt = _count_attempt(spec.work, spec.unit)
    target = Path(spec.target)
    partial = partial_path(target)
    _remove(partial)  # left by a killed attempt
    torch.set_num_threads(max(1, spec.threads))
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

    encode = replace(spec.protection.encode, threads=spec.threads)
    segment = spec.segment
    try:
        filters = build_filters(spec.protection.vf)
        apply_protection_options(filters, spec.protection.vf, spec.protection.strength,
                                 spec.protection.seed)
        if segment is None:
            source = open_source(spec.source, threads=spec.threads)
            copy = encode.copy_audio
            container_format = None
        else:
            source = SegmentSource(spec.source, segment, threads=spec.threads)
            copy = False
            container_format = SEGMENT_CONTAINER
        try:
            def sink_factory(info):
                return FileSink(str(partial), info, encode,
                                copy_from=source.copy_streams() if copy else [],
                                container_format=container_format, warn=warnings.append)

            engine = Engine(source, filters, sink_factory, device=resolve_device(spec.device),
                            batch_size=spec.batch_size, progress=progress, copy_streams=copy)
            stats = engine.run()
        finally:
            source.close()
        if segment is not None and stats.frames_out != segment.frames:
            raise InputError(f"segment {segment.index + 1} of {segment.count} gave "
                             f"{stats.frames_out} frames where the packet index has "
                             f"{segment.frames} (try --split-long 0)")
        checksum = file_sha256(partial) if segment is None else None
        os.replace(partial, target)
    except VdfError as error:
        _remove(partial)
        return UnitResult(False, written, time.perf_counter() - started, attempts=attempt,
                          message=_message(error, spec.source), warnings=warnings)
    except Exception as error:  # a bug: reported in the item, the batch goes on
        _remove(partial)
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
    _remove(partial)
    try:
        stats = join_segments(spec.source, [Path(path) for path in spec.segments], partial,
                              copy_audio=spec.copy_audio, rotation=spec.rotation)
        if stats.frames != spec.frames:
            raise OutputError(f"the joined segments hold {stats.frames} frames where the "
                              f"source has {spec.frames}")
        checksum = file_sha256(partial)
        os.replace(partial, target)
    except VdfError as error:
        _remove(partial)
        return UnitResult(False, message=_message(error, spec.source))
    except Exception as error:
        _remove(partial)
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

    from ..cli import default_eval_json
    from ..evaluation.evaluate import EvalOptions, evaluate, write_json

    started = time.perf_counter()
    torch.set_num_threads(max(1, spec.threads))
    destination = Path(default_eval_json(spec.output))
    partial = partial_path(destination)
    try:
        result, _ = evaluate(spec.source, spec.output,
                             EvalOptions(stride=spec.stride, device=spec.device,
                                         full_screen_frames=0))
        write_json(result, partial)
        os.replace(partial, destination)
    except VdfError as error:
        _remove(partial)
        return UnitResult(False, message=f"eval: {error}")
    except Exception as error:
        _remove(partial)
        return UnitResult(False, message=f"eval: internal error: {type(error).__name__}: "
                                         f"{error}")
    figures = eval_figures(result)
    figures["json"] = destination.name
    return UnitResult(True, figures["frames_evaluated"], time.perf_counter() - started,
                      evaluation=figures)


# ---------------------------------------------------------------------------------------
# Ray


def import_ray():
    """Ray, imported on demand (an optional dependency)."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable('the batch command needs Ray: pip install "vdf-stream[batch]"') \
            from None
    return ray


@dataclass(frozen=True)
class Resources:
    """How the batch uses the cluster: resolved once Ray is up."""

    workers: int
    cpus_per_task: float
    gpus_per_task: float
    device: str
    threads: int  # CPU threads a unit uses (torch, decoder, encoder)
    cluster_cpus: float
    cluster_gpus: float
    started_ray: bool
    address: str


def start_ray(options: BatchOptions, ray_messages: bool = False) -> Resources:
    """Connect to (or start) Ray quietly and decide workers and per-task resources.

    A Ray that this process already initialised is used as it is (and left running).
    ``ray_messages``: let Ray print what it says about its workers (lost, retried).

    Raises:
        RayUnavailable: Ray is missing or the cluster cannot be reached.
        UsageError: GPUs asked for where the cluster has none.
    """
    from ..environment import usable_cores

    ray = import_ray()
    cores = usable_cores()
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        settings = dict(include_dashboard=False, logging_level=logging.ERROR,
                        log_to_driver=False, configure_logging=True)
        if options.address is None:
            # a laptop-sized local Ray: at least one CPU slot per worker asked for
            settings.update(num_cpus=max(cores, options.workers or cores),
                            object_store_memory=128 * 2**20)
            address = "local"
        else:
            address = options.address
        try:
            ray.init(address=address, **settings)
        except ImportError as error:
            raise RayUnavailable(f"--address {address}: Ray's client is missing ({error}); "
                                 'pip install "vdf-stream[batch]"') from None
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
            raise RayUnavailable(f"cannot reach the Ray cluster at {address}: "
                                 f"{str(error).splitlines()[0] if str(error) else error}") \
                from None
        started = True
        if not ray_messages and hasattr(ray._private.worker, "_worker_logs_enabled"):
            # Ray prints its workers' deaths and retries on stdout, where the summary goes;
            # the manifest records attempts instead (Ray's debugger flips the same switch)
            ray._private.worker._worker_logs_enabled = False
    resources = ray.cluster_resources()
    cluster_cpus = float(resources.get("CPU", 0))
    cluster_gpus = float(resources.get("GPU", 0))
    local = options.address is None
    gpus = options.gpus_per_task
    if gpus is None:
        gpus = 1.0 if cluster_gpus >= 1 and options.device != "cpu" else 0.0
    if gpus > 0 and cluster_gpus < gpus:
        if started:
            ray.shutdown()
        raise UsageError(f"--gpus-per-task {gpus:g}: the Ray cluster has "
                         f"{cluster_gpus:g} GPUs")
    if options.workers is not None:
        workers = options.workers
    elif gpus > 0:
        workers = max(1, int(cluster_gpus // gpus))
    else:
        workers = max(1, int(cluster_cpus if not local else cores))
    cpus_per_task = float(max(1, cores // workers)) if local else 1.0
    device = options.device
    if device == "auto":
        device = "cuda" if gpus > 0 else "cpu"
    return Resources(workers, cpus_per_task, gpus, device, int(cpus_per_task), cluster_cpus,
                     cluster_gpus, started, options.address or "local")


# ---------------------------------------------------------------------------------------
# The driver


@dataclass
class BatchResult:
    """What a batch did, for the summary table, the exit code and benchmarks."""

    items: list[Item]
    ignored: list[str]
    manifest: Path
    seconds: float
    frames: int  # frames protected in this run
    workers: int
    interrupted: bool = False
    resources: Resources | None = None

    @property
    def failed(self) -> list[Item]:
        return [item for item in self.items if item.state in ("failed", "interrupted")]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def _fault_injection() -> int | None:
    value = os.environ.get(FAULT_VARIABLE, "").strip()
    if not value:
        return None
    name, _, number = value.partition("=")
    if name != "kill-after-frames" or not number.isdigit():
        raise UsageError(f"{FAULT_VARIABLE}={value!r}: expected kill-after-frames=N")
    return int(number)


@dataclass
class _Work:
    kind: str  # unit, join, eval
    item: Item
    spec: object
    unit: str


class _Driver:
    """Plans the items, feeds Ray at most ``workers`` tasks at a time, records every state
    change and keeps the progress display current."""

    def __init__(self, discovery: Discovery, options: BatchOptions, manifest: Manifest,
                 log: Callable[[str], None], show_progress: bool):
        self.items = discovery.items
        self.options = options
        self.manifest = manifest
        self.log = log
        self.show_progress = show_progress
        self.work_root = options.output / WORK_FOLDER_NAME
        self.crash_after_frames = _fault_injection()
        self.bar = None
        self.finished = 0

    # -- planning (no Ray needed) -------------------------------------------------------

    def plan(self) -> list[Item]:
        """Decide each item's fate: skip (done with the same settings), evaluate only,
        fail at once (unreadable), or protect. Returns the items to work on."""
        from ..media.sources import open_source

        todo = []
        for item in self.items:
            if item.state == "failed":  # found missing while listing
                self._fail(item, item.message, planning=True)
                continue
            try:
                stat = item.source.stat()
                if item.output.resolve() == item.source.resolve():
                    raise OutputError("the output would replace the input")
                with open_source(str(item.source)) as source:
                    info = source.info
                    seconds = _duration(source)
                    item.rotation = info.rotation
                    estimate = info.frame_count or (
                        round(seconds * float(info.frame_rate)) if info.frame_rate else None)
            except VdfError as error:
                self._fail(item, _message(error, str(item.source)), planning=True)
                continue
            except OSError as error:
                self._fail(item, f"cannot read: {error.strerror or error}", planning=True)
                continue
            split = self.options.split_seconds
            long = bool(split) and seconds > split
            item.input_size, item.input_mtime_ns = stat.st_size, stat.st_mtime_ns
            item.settings = settings_hash(self.options.protection, split if long else None,
                                          stat.st_size, stat.st_mtime_ns)
            item.earlier = self.manifest.last.get(item.key)
            if self._done_before(item):
                continue
            if item.output.exists() and item.earlier is None and not self.options.overwrite:
                self._fail(item, "the output exists and was not made by this batch; use -y "
                                 "to overwrite it", planning=True)
                continue
            if long:
                try:
                    item.plan = plan_segments(item.source, split)
                except VdfError as error:
                    self._fail(item, _message(error, str(item.source)), planning=True)
                    continue
                item.segments = len(item.plan.segments)
                estimate = item.plan.frames
                if item.plan.note:
                    self.log(f"note: {item.key}: {item.plan.note}")
            item.frames = estimate
            todo.append(item)
        return todo

    def _done_before(self, item: Item) -> bool:
        earlier = item.earlier
        if not earlier or earlier.get("state") != "done" or earlier.get("settings") != \
                item.settings or not item.output.is_file():
            return False
        if file_sha256(item.output) != earlier.get("sha256"):
            return False
        item.state = "skipped"
        item.message = "done earlier with the same settings"
        item.frames = earlier.get("frames")
        item.sha256 = earlier.get("sha256")
        item.evaluation = earlier.get("eval")
        item.segments = earlier.get("segments") or 1
        return True

    def _fail(self, item: Item, message: str, planning: bool = False, **extra) -> None:
        item.state = "failed"
        item.message = message
        self.manifest.item(item, "failed", message=message, attempts=item.attempts, **extra)
        if planning:
            self.log(f"failed  {item.key}: {message}")

    # -- running ------------------------------------------------------------------------

    def run(self, todo: list[Item], evaluate_only: list[Item]) -> int:
        """Protect ``todo`` (and evaluate what needs it). Returns the frames protected."""
        ray = import_ray()
        resources = self.resources
        tasks = _remote_tasks(ray, self.options.retries, resources)
        board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        pending: deque[_Work] = deque()
        for item in todo:
            pending.extend(self._units(item))
        for item in evaluate_only:
            pending.append(self._eval_work(item))
        in_flight: dict = {}
        remaining: dict[str, int] = {}  # units left per item key
        for work in pending:
            if work.kind == "unit":
                remaining[work.item.key] = remaining.get(work.item.key, 0) + 1
        item_frames: dict[str, int] = {}
        total = sum((work.spec.segment.frames if work.spec.segment else work.item.frames) or 0
                    for work in pending if work.kind == "unit")
        self._open_bar(total, len(todo) + len(evaluate_only))
        snapshot: dict[str, int] = {}
        last_poll = 0.0
        try:
            while pending or in_flight:
                while pending and len(in_flight) < resources.workers:
                    work = pending.popleft()
                    if work.item.state == "failed":
                        continue  # an earlier unit of it failed
                    in_flight[self._submit(tasks, work, board)] = work
                if not in_flight:
                    continue
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=PROGRESS_INTERVAL)
                now = time.monotonic()
                if now - last_poll >= PROGRESS_INTERVAL:
                    last_poll = now
                    try:
                        snapshot = ray.get(board.snapshot.remote(), timeout=5)
                    except Exception:  # progress is a nicety: never fail the batch on it
                        pass
                    self._progress(snapshot)
                for ref in ready:
                    work = in_flight.pop(ref)
                    result = self._result(ray, ref, work)
                    follow = self._handle(work, result, remaining, item_frames)
                    for next_work in follow:
                        pending.appendleft(next_work)
                    if work.item.state == "failed":
                        for other_ref, other in list(in_flight.items()):
                            if other.item is work.item:
                                ray.cancel(other_ref, force=True)
                                in_flight.pop(other_ref)
                        self._remove_partials(work.item)
        except KeyboardInterrupt:
            self._interrupt(ray, in_flight)
            raise
        finally:
            self._close_bar()
            try:
                ray.kill(board)
            except Exception:  # already gone with its cluster
                pass
        return sum(item_frames.values())

    def _units(self, item: Item) -> list[_Work]:
        protection = self.options.protection
        resources = self.resources
        work = self._work_folder(item)
        common = dict(key=item.key, source=str(item.source), protection=protection,
                      device=resources.device, batch_size=self.options.batch_size,
                      threads=resources.threads, work=str(work),
                      crash_after_frames=self.crash_after_frames)
        item.output.parent.mkdir(parents=True, exist_ok=True)
        _remove(partial_path(item.output))
        if work.is_dir():  # attempts are counted per run
            for counter in work.glob("*.attempts"):
                _remove(counter)
        if item.plan is None or not item.plan.split:
            spec = UnitSpec(unit=item.key, target=str(item.output), segment=None, **common)
            return [_Work("unit", item, spec, item.key)]
        works = []
        for segment in item.plan.segments:
            target = work / f"{segment.name}.{SEGMENT_CONTAINER}"
            if target.is_file():  # finished by an interrupted run with the same settings
                continue
            spec = UnitSpec(unit=f"{item.key}#{segment.index}", target=str(target),
                            segment=segment, **common)
            works.append(_Work("unit", item, spec, spec.unit))
        if not works:
            return [self._join_work(item)]
        return works

    def _work_folder(self, item: Item) -> Path:
        name = hashlib.sha256(item.key.encode()).hexdigest()[:16]
        return self.work_root / f"{name}-{item.settings[:12]}"

    def _join_work(self, item: Item) -> _Work:
        work = self._work_folder(item)
        segments = tuple(str(work / f"{segment.name}.{SEGMENT_CONTAINER}")
                         for segment in item.plan.segments)
        spec = JoinSpec(item.key, str(item.source), segments, str(item.output),
                        item.plan.frames, self.options.protection.encode.copy_audio,
                        item.rotation)
        return _Work("join", item, spec, f"{item.key}#join")

    def _eval_work(self, item: Item) -> _Work:
        spec = EvalSpec(item.key, str(item.source), str(item.output),
                        self.options.report_stride, self.resources.device,
                        self.resources.threads)
        return _Work("eval", item, spec, f"{item.key}#eval")

    def _submit(self, tasks, work: _Work, board):
        item = work.item
        if item.state == "pending" and work.kind != "eval":
            item.state = "running"
            item.started = time.perf_counter()
            item_settings = self.options.protection.describe()
            self.manifest.item(item, "running", segments=item.segments,
                               frames=item.frames, protection=item_settings)
        if work.kind == "unit":
            return tasks.unit.options(name=f"protect {work.unit}").remote(work.spec, board)
        if work.kind == "join":
            return tasks.join.options(name=f"join {work.unit}").remote(work.spec)
        return tasks.eval.options(name=f"eval {work.unit}").remote(work.spec)

    def _result(self, ray, ref, work: _Work) -> UnitResult:
        try:
            return ray.get(ref)
        except ray.exceptions.RayError as error:
            kind = type(error).__name__
            attempts = self.options.retries + 1
            if work.kind == "eval":
                return UnitResult(False, message=f"eval: its worker was lost ({kind})")
            times = f" {attempts} times" if attempts > 1 else ""
            return UnitResult(False, attempts=attempts,
                              message=f"its worker was lost{times} ({kind})")

    def _handle(self, work: _Work, result: UnitResult, remaining: dict[str, int],
                item_frames: dict[str, int]) -> list[_Work]:
        item = work.item
        item.attempts = max(item.attempts, result.attempts)
        item.worker_seconds += result.seconds
        item.cpu_seconds += result.cpu_seconds
        if work.kind == "eval":
            item.evaluation = result.evaluation if result.ok else {"error": result.message}
            if item.state == "done":
                record = self._done_fields(item)
            else:  # done by an earlier run: its record stands, with the figures added
                record = {key: value for key, value in (item.earlier or {}).items()
                          if key not in ("time", "event", "item", "state", "input", "output",
                                         "settings", "input_size", "input_mtime_ns")}
            self.manifest.item(item, "done", **record, eval=item.evaluation)
            self._finish_line(item, evaluated=True)
            return []
        if not result.ok:
            self._fail(item, result.message, segments=item.segments,
                       warnings=result.warnings or None)
            self._finish_line(item)
            return []
        if work.kind == "unit":
            item_frames[work.unit] = result.frames
            remaining[item.key] -= 1
            if item.plan is not None and item.plan.split:
                if remaining[item.key] == 0:
                    return [self._join_work(item)]
                return []
            item.sha256 = result.sha256
        else:  # join
            item.sha256 = result.sha256
        item.frames = result.frames
        item.seconds = time.perf_counter() - (item.started or time.perf_counter())
        item.state = "done"
        item.message = f"{item.segments} segments" if item.segments > 1 else ""
        self.manifest.item(item, "done", **self._done_fields(item))
        shutil.rmtree(self._work_folder(item), ignore_errors=True)
        self._finish_line(item)
        if self.options.report:
            return [self._eval_work(item)]
        return []

    def _done_fields(self, item: Item) -> dict:
        return {"sha256": item.sha256, "frames": item.frames,
                "seconds": round(item.seconds or 0.0, 3),
                "fps": round(item.fps, 3) if item.fps else None,
                "worker_seconds": round(item.worker_seconds, 3),
                "cpu_seconds": round(item.cpu_seconds, 3), "attempts": item.attempts,
                "segments": item.segments, "protection": self.options.protection.describe()}

    def _remove_partials(self, item: Item) -> None:
        _remove(partial_path(item.output))
        folder = self._work_folder(item)
        if folder.is_dir():
            for path in folder.glob(".*.partial.*"):
                _remove(path)

    def _interrupt(self, ray, in_flight: dict) -> None:
        for ref in in_flight:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        if in_flight:
            try:
                ray.wait(list(in_flight), num_returns=len(in_flight), timeout=5)
            except BaseException:
                pass
        for item in self.items:
            if item.state == "running":
                item.state = "interrupted"
                item.message = "interrupted; run the same command again to resume"
                self.manifest.item(item, "interrupted", segments=item.segments)
                self._remove_partials(item)

    # -- display ------------------------------------------------------------------------

    def _open_bar(self, total_frames: int, items: int) -> None:
        self.items_in_run = items
        self.finished = 0
        if self.show_progress and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_frames or None, unit="frame", file=sys.stderr,
                            desc="batch", dynamic_ncols=True, smoothing=0.1)
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None:
            failed = sum(item.state == "failed" for item in self.items)
            text = f"{self.finished}/{self.items_in_run} items"
            self.bar.set_postfix_str(text + (f", {failed} failed" if failed else ""))

    def _progress(self, snapshot: dict[str, int]) -> None:
        if self.bar is not None:
            self.bar.n = sum(snapshot.values())
            self._postfix()
            self.bar.refresh()

    def _finish_line(self, item: Item, evaluated: bool = False) -> None:
        """One line per finished item (and per evaluation), above the progress bar."""
        if evaluated or item.state == "failed" or not self.options.report:
            self.finished += 1  # with --report, an item finishes with its evaluation
        if evaluated:
            line = f"eval    {item.key}: {_eval_text(item.evaluation)}"
        elif item.state == "done":
            line = f"done    {item.key}: {item.frames} frames in {item.seconds:.1f} s"
        else:
            line = f"{item.state:<7} {item.key}: {item.message}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
            self._postfix()
        else:
            self.log(line)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _duration(source) -> float:
    """Seconds from the container's header (0 when it does not say)."""
    container = getattr(source, "container", None)
    stream = getattr(source, "stream", None)
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container is not None and container.duration:
        return container.duration / 1_000_000
    return 0.0


def _remote_tasks(ray, retries: int, resources: Resources):
    """The Ray tasks, with the batch's resources. Worker loss is retried ``retries``
    times (Ray's ``max_retries``); exceptions never are (``retry_exceptions=False``):
    units return their failures instead of raising them."""
    from types import SimpleNamespace

    common = dict(num_cpus=resources.cpus_per_task, num_gpus=resources.gpus_per_task,
                  max_retries=retries, retry_exceptions=False)
    return SimpleNamespace(
        unit=ray.remote(**common)(execute_unit),
        join=ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(execute_join),
        eval=ray.remote(**common)(execute_eval),
    )


def _eval_text(evaluation: dict | None) -> str:
    if not evaluation:
        return ""
    if "error" in evaluation:
        return evaluation["error"]

    def number(name: str, digits: int) -> str:
        value = evaluation.get(name)
        return "-" if value is None else f"{value:.{digits}f}"

    return (f"NME {number('landmark_nme', 4)}, pose {number('pose_error', 2)} deg, "
            f"PSNR {number('psnr', 2)} dB, SSIM {number('ssim', 3)}")


def run_batch(input_spec: str, options: BatchOptions, log: Callable[[str], None] | None = None,
              show_progress: bool = False, ray_messages: bool = False) -> BatchResult:
    """Protect every video of ``input_spec`` into ``options.output``; see the module.

    Starts a local Ray (or connects to ``options.address``) only when there is work, and
    shuts it down at the end when it started it.

    Raises:
        InputError, OutputError, UsageError, RayUnavailable: before any work starts.
        Interrupted: Ctrl-C; the manifest records the items that were running as
            interrupted and no partial file is left looking done.
    """
    log = log or (lambda message: None)
    options.validate()
    output = options.output.resolve()
    options = replace(options, output=output)
    from ..pipeline.filter import build_filters

    filters = build_filters(options.protection.vf)  # a bad graph fails before any work
    from ..cli import apply_protection_options

    apply_protection_options(filters, options.protection.vf, options.protection.strength,
                             options.protection.seed)
    del filters
    discovery = discover(input_spec, output)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{output}: cannot create the output folder: "
                          f"{error.strerror or error}") from None
    if not os.access(output, os.W_OK):
        raise OutputError(f"{output}: the output folder is not writable")
    started = time.perf_counter()
    manifest = Manifest(output)
    resources = None
    frames = 0
    interrupted = False
    try:
        driver = _Driver(discovery, options, manifest, log, show_progress)
        todo = driver.plan()
        evaluate_only = [item for item in discovery.items
                         if options.report and item.state == "skipped"
                         and not (item.evaluation and "error" not in item.evaluation)]
        if todo or evaluate_only:
            manifest.write({"event": "start", "input": str(input_spec), "output": str(output),
                            "protection": options.protection.describe(),
                            "split_seconds": options.split_seconds, "items": len(todo),
                            "address": options.address or "local"})
            resources = start_ray(options, ray_messages)
            driver.resources = resources
            try:
                frames = driver.run(todo, evaluate_only)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                if resources.started_ray:
                    _shutdown_ray()
        _clean_work_root(output / WORK_FOLDER_NAME, discovery.items)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        seconds = time.perf_counter() - started
        if interrupted:
            manifest.write({"event": "interrupted", "seconds": round(seconds, 3)})
        manifest.close()
    return BatchResult(discovery.items, discovery.ignored, manifest.path, seconds, frames,
                       resources.workers if resources else 0, interrupted, resources)


def _shutdown_ray() -> None:
    import ray

    try:
        ray.shutdown()
    except Exception:
        pass


def _clean_work_root(root: Path, items: list[Item]) -> None:
    """Remove the work folders of finished items, and the work root when it is empty."""
    if not root.is_dir():
        return
    keep = {f"{hashlib.sha256(item.key.encode()).hexdigest()[:16]}-{item.settings[:12]}"
            for item in items if item.state == "interrupted" and item.settings}
    for folder in root.iterdir():
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
    try:
        root.rmdir()
    except OSError:
        pass


# ---------------------------------------------------------------------------------------
# The command


BATCH_EXAMPLES = """\
examples:
  vdf-stream batch videos/ -o protected/                 every video under videos/, local Ray
  vdf-stream batch list.txt -o protected/ --workers 4    the videos named in list.txt
  vdf-stream batch videos/ -o protected/ --split-long 10m --report
  vdf-stream batch /data/videos -o /data/protected --address auto --gpus-per-task 1

Outputs keep the input's relative path, name and container. Run the same command again to
resume: items done with the same settings are skipped, failed or changed ones are redone.
The manifest OUTPUT_DIR/vdf-batch.jsonl records every item's state (see docs/batch.md).
"""


def add_parser(commands, common, protection_options) -> None:
    """Register ``vdf-stream batch`` (``common`` adds -q/--debug; ``protection_options``
    adds the protection and encoding options shared with ``protect``)."""
    import argparse

    parser = commands.add_parser(
        "batch",
        help="protect a folder or a list of videos, spread over Ray (resumable)",
        description="Protect every video of INPUT (a folder, searched recursively, or a "
                    "text file\nlisting one path per line) into OUTPUT_DIR, as `protect` "
                    "would, in parallel\non Ray: a local Ray on this machine by default, "
                    "a cluster with --address.\nLong videos are cut at keyframes into "
                    "segments protected in parallel and\njoined without re-encoding.",
        epilog=BATCH_EXAMPLES + "\n" + BATCH_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT",
                        help="a folder of videos (searched recursively; hidden files are "
                             "passed over), a text file listing one video path per line, or "
                             "one video")
    parser.add_argument("-o", "--output", metavar="OUTPUT_DIR", required=True,
                        help="where the protected videos go, at the same relative paths "
                             "(created if missing; may lie inside INPUT: it is then not "
                             "searched)")
    parser.add_argument("-y", "--overwrite", action="store_true",
                        help="replace outputs that exist but were not made by this batch "
                             "(its own are always replaced when redone)")
    protection_options(parser)
    cluster = parser.add_argument_group("distribution (Ray)")
    cluster.add_argument("--address", metavar="ADDRESS",
                         help="the Ray cluster: auto (the cluster this machine belongs to) "
                              "or ray://HOST:PORT; default: a local Ray on this machine, "
                              "started and stopped by the command")
    cluster.add_argument("--workers", type=int, metavar="N",
                         help="most videos or segments protected at once (default: one per "
                              "CPU core, or one per GPU share with --gpus-per-task)")
    cluster.add_argument("--gpus-per-task", dest="gpus_per_task", type=float, metavar="G",
                         help="GPUs each worker uses, e.g. 1 or 0.5 (default: 1 when the "
                              "cluster has GPUs and --device is not cpu, else 0)")
    cluster.add_argument("--split-long", dest="split_long", default="300s",
                         metavar="DURATION",
                         help="cut videos longer than DURATION into segments about that "
                              "long, at keyframes, protected in parallel (default 300s; "
                              "e.g. 90s, 10m; 0 = never)")
    cluster.add_argument("--retries", type=int, default=DEFAULT_RETRIES, metavar="N",
                         help="reruns of a video or segment whose worker was lost (default "
                              f"{DEFAULT_RETRIES}); an unreadable input is never retried")
    checks = parser.add_argument_group("measuring")
    checks.add_argument("--report", action="store_true",
                        help="evaluate every output against its input (as `vdf-stream "
                             "eval`): NAME.eval.json beside it, figures in the manifest and "
                             "the summary")
    checks.add_argument("--report-stride", dest="report_stride", type=int, default=1,
                        metavar="S", help="with --report, evaluate every S-th frame "
                                          "(default 1)")
    tuning = parser.add_argument_group("engine")
    tuning.add_argument("--batch-size", type=int, default=1, metavar="N",
                        help="frames filtered together when available (default 1)")
    common(parser)


def options_from_args(args) -> BatchOptions:
    try:
        split = parse_duration(args.split_long)
    except ValueError as error:
        raise UsageError(f"--split-long: {error}") from None
    encode = EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset,
                           pix_fmt=args.pix_fmt, copy_audio=not args.no_audio)
    protection = Protection(vf=args.vf, strength=args.strength, seed=args.seed, encode=encode)
    return BatchOptions(output=Path(args.output), protection=protection,
                        split_seconds=split or None, address=args.address,
                        workers=args.workers, gpus_per_task=args.gpus_per_task,
                        retries=args.retries, report=args.report,
                        report_stride=args.report_stride, overwrite=args.overwrite,
                        device=args.device, batch_size=args.batch_size)


def format_summary(result: BatchResult, report: bool = False) -> str:
    """The closing table: one row per item, then the totals."""
    headers = ["item", "state", "frames", "fps", "seconds"]
    if report:
        headers += ["NME", "pose deg", "PSNR dB"]
    headers.append("message")
    rows = []
    for item in result.items:
        state = "done" if item.state == "skipped" else item.state
        message = item.message
        if item.state == "skipped":
            message = "done earlier, same settings"
        elif item.state == "pending":
            message = "not started"
        counted = item.state in ("done", "skipped") and item.frames is not None
        row = [item.key, state, str(item.frames) if counted else "-",
               f"{item.fps:.1f}" if item.fps and item.state == "done" else "-",
               f"{item.seconds:.1f}" if item.seconds and item.state == "done" else "-"]
        if report:
            evaluation = item.evaluation or {}
            row += [_figure(evaluation.get("landmark_nme"), 4),
                    _figure(evaluation.get("pose_error"), 2),
                    _figure(evaluation.get("psnr"), 2)]
            if "error" in evaluation:
                message = (message + "; " if message else "") + evaluation["error"]
        row.append(message)
        rows.append(row)
    widths = [max(len(headers[column]), *(len(row[column]) for row in rows))
              for column in range(len(headers) - 1)]
    numeric = set(range(2, len(headers) - 1))

    def line(cells):
        parts = [cell.rjust(width) if column in numeric else cell.ljust(width)
                 for column, (cell, width) in enumerate(zip(cells, widths))]
        return "  ".join(parts + [cells[-1]]).rstrip()

    lines = [line(headers), line(["-" * width for width in widths] + ["-------"])]
    lines += [line(row) for row in rows]
    done = sum(item.state == "done" for item in result.items)
    earlier = sum(item.state == "skipped" for item in result.items)
    failed = sum(item.state == "failed" for item in result.items)
    interrupted = sum(item.state == "interrupted" for item in result.items)
    counts = [f"{done + earlier} done" + (f" ({earlier} earlier)" if earlier else "")]
    if failed:
        counts.append(f"{failed} failed")
    if interrupted:
        counts.append(f"{interrupted} interrupted")
    total = f"{len(result.items)} items: {', '.join(counts)}"
    if result.frames:
        total += (f"; {result.frames} frames protected in {result.seconds:.1f} s "
                  f"({result.fps:.1f} fps, {result.workers} workers)")
    lines += ["", total]
    return "\n".join(lines)


def _figure(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def run_command(args) -> int:
    """``vdf-stream batch``: the summary table goes to stdout, progress and per-item lines
    to stderr (not with -q)."""
    options = options_from_args(args)
    show = not args.quiet
    import_ray()  # say at once when Ray is missing
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if show else None
    result = run_batch(args.input, options, log=log, show_progress=show,
                       ray_messages=args.debug)
    print(format_summary(result, options.report), flush=True)
    if show:
        if result.ignored:
            print(f"passed over {len(result.ignored)} files that are not videos by their "
                  "extension", file=sys.stderr)
        print(f"manifest: {result.manifest}", file=sys.stderr)
    if result.interrupted:
        raise Interrupted("interrupted; finished items are kept, run the same command again "
                          "to resume")
    return result.exit_code
