"""What machine and which library versions produced a figure: written next to every eval
result and benchmark report, so that numbers are never read without their context."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def gpu_description() -> dict | None:
    """The first CUDA GPU, or None."""
    import torch

    if not torch.cuda.is_available():
        return None
    properties = torch.cuda.get_device_properties(0)
    return {"name": properties.name, "count": torch.cuda.device_count(),
            "memory_gib": round(properties.total_memory / 2**30, 1),
            "capability": f"{properties.major}.{properties.minor}",
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}


def cpu_idle_fraction(seconds: float = 1.0) -> float | None:
    """Share of CPU time idle over ``seconds``, from /proc/stat (None when unreadable):
    how busy the machine was when a figure was measured."""
    def sample():
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(value) for value in fields]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    try:
        idle_before, total_before = sample()
        time.sleep(seconds)
        idle_after, total_after = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total_after - total_before
    return (idle_after - idle_before) / total if total > 0 else None


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def machine_tag() -> str:
    """A stable name for this kind of machine: CPU model, usable cores, GPU if any."""
    model = re.sub(r"\((r|tm)\)|cpu|processor|\d+-core|@.*", "", cpu_model(), flags=re.I)
    tag = f"{slug(model)}-{usable_cores()}cpu"
    gpu = gpu_description()
    if gpu is not None:
        tag += "-" + slug(gpu["name"].replace("NVIDIA", ""))
    return tag


def machine_description() -> dict:
    import torch

    return {"tag": machine_tag(), "cpu_model": cpu_model(), "cpu_cores": usable_cores(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "gpu": gpu_description()}


def library_versions() -> dict:
    import av
    import numpy
    import torch

    from . import __version__

    return {
        "python": platform.python_version(),
        "vdf_stream": __version__,
        "vdf_stream_commit": git_commit(),
        "torch": torch.__version__,
        "av": av.__version__,
        "ffmpeg_libraries": {name: ".".join(map(str, version))
                             for name, version in av.library_versions.items()},
        "numpy": numpy.__version__,
    }


def git_commit() -> str | None:
    """The source tree's commit when it is a git checkout (``-dirty`` when changed)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent.parent), "describe", "--always",
             "--dirty"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
