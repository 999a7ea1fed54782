"""The manifest ``OUTPUT_DIR/vdf-batch.jsonl``: what a batch did to every item, so that a new
run can tell what is done, and the settings hash that says whether it was done the same way."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OutputError
from .options import Protection

if TYPE_CHECKING:
    from .plan import Item

MANIFEST_NAME = "vdf-batch.jsonl"
MANIFEST_SCHEMA = 1


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

    def fail(self, item: Item, message: str, **extra) -> None:
        """Mark ``item`` failed with ``message`` and record it."""
        item.state = "failed"
        item.message = message
        self.item(item, "failed", message=message, attempts=item.attempts, **extra)

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
