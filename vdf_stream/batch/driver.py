"""The driver of a batch: plans the items, feeds Ray at most ``workers`` units at a time,
records every state change in the manifest, keeps the progress display current and cleans
up after itself, whichever way the run ends."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..errors import EXIT_DAMAGED, EXIT_INTERRUPTED, EXIT_OK, OutputError, UsageError
from ..pipeline.session import build_graph
from ..protection.options import ProtectionOptions
from ..protection.recipes import resolve_targets
from .cluster import Resources, import_ray, remote_tasks, shutdown_ray, start_ray
from .manifest import Manifest
from .options import BatchOptions
from .plan import WORK_FOLDER_NAME, Discovery, Item, discover, plan_items
from .summary import eval_text
from .tasks import (PROGRESS_INTERVAL, SEGMENT_CONTAINER, EvalSpec, JoinSpec, ProgressBoard,
                    UnitResult, UnitSpec, partial_path, remove_file)

EXIT_SOME_FAILED = EXIT_DAMAGED
# A test hook: "kill-after-frames=N" makes the first attempt of every unit kill its own
# worker process (SIGKILL) after N frames, to check that Ray retries it.
FAULT_VARIABLE = "VDF_STREAM_BATCH_FAULT"


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
        """Decide each item's fate (see :func:`.plan.plan_items`); the items to protect."""
        return plan_items(self.items, self.options, self.manifest, self.log)

    # -- running ------------------------------------------------------------------------

    def run(self, todo: list[Item], evaluate_only: list[Item]) -> int:
        """Protect ``todo`` (and evaluate what needs it). Returns the frames protected."""
        ray = import_ray()
        resources = self.resources
        tasks = remote_tasks(ray, self.options.retries, resources)
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
        remove_file(partial_path(item.output))
        if work.is_dir():  # attempts are counted per run
            for counter in work.glob("*.attempts"):
                remove_file(counter)
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
        return self.work_root / item.work_folder_name

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
            self.manifest.fail(item, result.message, segments=item.segments,
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
        remove_file(partial_path(item.output))
        folder = self._work_folder(item)
        if folder.is_dir():
            for path in folder.glob(".*.partial.*"):
                remove_file(path)

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
            line = f"eval    {item.key}: {eval_text(item.evaluation)}"
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
    protection = options.protection  # a bad graph, or weights it names and lacks,
    graph = build_graph(protection.vf, protection.strength, protection.seed,  # fail first
                        protection.against)
    for item in graph:
        if isinstance(item.options, ProtectionOptions):
            _, note = resolve_targets(item.options)
            if note is not None:
                log(f"note: {note}")
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
                    shutdown_ray()
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


def _clean_work_root(root: Path, items: list[Item]) -> None:
    """Remove the work folders of finished items, and the work root when it is empty."""
    if not root.is_dir():
        return
    keep = {item.work_folder_name for item in items
            if item.state == "interrupted" and item.settings}
    for folder in root.iterdir():
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
    try:
        root.rmdir()
    except OSError:
        pass


