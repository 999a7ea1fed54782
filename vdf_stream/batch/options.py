"""What a batch is asked to do: the protection that decides every output, and how the batch
runs (cluster, workers, segments, retries, evaluation)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EXIT_USAGE, UsageError, VdfError
from ..media.sinks import EncodeOptions

DEFAULT_SPLIT_SECONDS = 300.0
DEFAULT_RETRIES = 2


class RayUnavailable(VdfError):
    """Ray is not installed, or the cluster named by ``--address`` cannot be reached."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Protection:
    """What decides the content of an output: the filter graph, the options of its vdf
    filters and the encoder's settings. Hashed, with the input's identity, into the
    settings hash of the manifest (the device and thread counts are left out: they change
    the speed, not what is asked for)."""

    vf: str = "vdf"
    strength: str | None = None
    seed: int | None = None
    against: str | None = None
    encode: EncodeOptions = field(default_factory=EncodeOptions)

    def describe(self) -> dict:
        return {"vf": self.vf, "strength": self.strength, "seed": self.seed,
                **({"against": self.against} if self.against else {}),
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
