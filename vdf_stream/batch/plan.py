"""Finding the items of a batch and deciding what becomes of each: skipped (done earlier with
the same settings), failed at once (unreadable), protected whole, or cut into segments."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..assets import sha256_of
from ..errors import InputError, OutputError, VdfError
from ..media.segments import SegmentPlan, plan_segments
from .manifest import Manifest, settings_hash
from .options import BatchOptions

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                    ".m2ts", ".mts", ".flv", ".wmv", ".3gp", ".nut", ".ogv")
WORK_FOLDER_NAME = ".vdf-batch"  # segments and attempt counters of unfinished items


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

    @property
    def work_folder_name(self) -> str:
        """Its folder under ``OUTPUT_DIR/.vdf-batch`` (segments, attempt counters): named by
        its key and its settings, so a change of settings never reuses old segments."""
        return f"{hashlib.sha256(self.key.encode()).hexdigest()[:16]}-{self.settings[:12]}"


@dataclass(frozen=True)
class Discovery:
    items: list[Item]
    ignored: list[str]  # files passed over (not videos by their extension)
    root: Path


def message_for(error: BaseException, source: str) -> str:
    """An error's message without the input's name in front (the item's key says it)."""
    text = str(error)
    for prefix in (f"{source}: ", f"{source} "):
        if text.startswith(prefix):
            return text[len(prefix):]
    return text


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


def plan_items(items: list[Item], options: BatchOptions, manifest: Manifest,
               log: Callable[[str], None]) -> list[Item]:
    """Decide each item's fate: skip (done with the same settings), evaluate only, fail at
    once (unreadable), or protect (whole, or cut into segments). Failures are recorded in
    the manifest and logged. Returns the items to protect."""
    from ..media.sources import open_source

    def fail(item: Item, message: str) -> None:
        manifest.fail(item, message)
        log(f"failed  {item.key}: {message}")

    todo = []
    for item in items:
        if item.state == "failed":  # found missing while listing
            fail(item, item.message)
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
            fail(item, message_for(error, str(item.source)))
            continue
        except OSError as error:
            fail(item, f"cannot read: {error.strerror or error}")
            continue
        split = options.split_seconds
        long = bool(split) and seconds > split
        item.input_size, item.input_mtime_ns = stat.st_size, stat.st_mtime_ns
        item.settings = settings_hash(options.protection, split if long else None,
                                      stat.st_size, stat.st_mtime_ns)
        item.earlier = manifest.last.get(item.key)
        if _done_before(item):
            continue
        if item.output.exists() and item.earlier is None and not options.overwrite:
            fail(item, "the output exists and was not made by this batch; use -y to "
                       "overwrite it")
            continue
        if long:
            try:
                item.plan = plan_segments(item.source, split)
            except VdfError as error:
                fail(item, message_for(error, str(item.source)))
                continue
            item.segments = len(item.plan.segments)
            estimate = item.plan.frames
            if item.plan.note:
                log(f"note: {item.key}: {item.plan.note}")
        item.frames = estimate
        todo.append(item)
    return todo


def _done_before(item: Item) -> bool:
    """Done by an earlier run with the same settings, and its output still has the recorded
    checksum: marked skipped, with the earlier record's figures."""
    earlier = item.earlier
    if not earlier or earlier.get("state") != "done" or earlier.get("settings") != \
            item.settings or not item.output.is_file():
        return False
    if sha256_of(item.output) != earlier.get("sha256"):
        return False
    item.state = "skipped"
    item.message = "done earlier with the same settings"
    item.frames = earlier.get("frames")
    item.sha256 = earlier.get("sha256")
    item.evaluation = earlier.get("eval")
    item.segments = earlier.get("segments") or 1
    return True


def _duration(source) -> float:
    """Seconds from the container's header (0 when it does not say)."""
    container = getattr(source, "container", None)
    stream = getattr(source, "stream", None)
    if stream is not None and stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container is not None and container.duration:
        return container.duration / 1_000_000
    return 0.0
