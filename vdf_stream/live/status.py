"""Live mode's figures and its status line."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from .protector import LiveProtector


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))
    return ordered[position]


class Nvml:
    """GPU utilisation and memory through NVML (nvidia-ml-py), when available."""

    def __init__(self, device: torch.device):
        self.handle = None
        if device.type != "cuda":
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
            self.pynvml = pynvml
        except Exception:
            self.handle = None

    def read(self) -> tuple[int, float] | None:
        if self.handle is None:
            return None
        try:
            rates = self.pynvml.nvmlDeviceGetUtilizationRates(self.handle)
            memory = self.pynvml.nvmlDeviceGetMemoryInfo(self.handle)
            return int(rates.gpu), memory.used / 2**30
        except Exception:
            return None


@dataclass
class LiveStats:
    """What a live run measured (``latencies`` in seconds, one per delivered frame)."""

    captured: int = 0
    delivered: int = 0
    dropped: int = 0
    held: int = 0
    fallback_frames: int = 0
    seconds: float = 0.0
    latencies: list = field(default_factory=list)
    delivered_indices: list = field(default_factory=list)
    publications: int = 0
    optimiser_steps: int = 0
    decisions: dict = field(default_factory=dict)
    first_parameters_seconds: float | None = None
    apply_seconds: float = 0.0
    detect_seconds: float = 0.0

    @property
    def delivered_fps(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def capture_fps(self) -> float:
        return self.captured / self.seconds if self.seconds else 0.0

    def latency_ms(self, share: float) -> float:
        return _percentile(self.latencies, share) * 1000

    def summary(self) -> dict:
        total = sum(self.decisions.values())
        return {
            "captured": self.captured, "delivered": self.delivered,
            "dropped_at_capture": self.dropped, "held_back": self.held,
            "fallback_frames": self.fallback_frames, "seconds": round(self.seconds, 3),
            "capture_fps": round(self.capture_fps, 2), "delivered_fps": round(self.delivered_fps, 2),
            "added_latency_ms": {"p50": round(self.latency_ms(0.50), 1),
                                 "p95": round(self.latency_ms(0.95), 1),
                                 "max": round(max(self.latencies, default=0) * 1000, 1)},
            "publications": self.publications, "optimiser_steps": self.optimiser_steps,
            "optimiser_decisions": dict(self.decisions),
            "reuse_rate": round(self.decisions.get("reuse", 0) / total, 3) if total else 0.0,
            "first_parameters_seconds": (round(self.first_parameters_seconds, 2)
                                         if self.first_parameters_seconds is not None else None),
            "protector_seconds": {"detect": round(self.detect_seconds, 3),
                                  "apply": round(self.apply_seconds, 3)},
        }


class StatusLine:
    """The status line on stderr, every ``interval`` seconds (``\\r``-updated on a
    terminal, one line per interval otherwise)."""

    def __init__(self, stream=None, interval: float = 1.0, nvml: Nvml | None = None):
        self.stream = stream or sys.stderr
        self.interval = interval
        self.nvml = nvml
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = time.perf_counter()
        self.captured = self.delivered = 0
        self.window: list[float] = []
        self.shown = False

    def update(self, run: LiveProtector, latency: float) -> None:
        self.window.append(latency)
        now = time.perf_counter()
        if now - self.last < self.interval:
            return
        self.stream.write(("\r" if self.tty else "") + run.status_text(now - self.last, self)
                          + ("" if self.tty else "\n"))
        self.stream.flush()
        self.shown = True
        self.last = now
        self.window = []

    def finish(self) -> None:
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
