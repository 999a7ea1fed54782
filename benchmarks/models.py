"""Speed of the face models: forward, and forward + backward to the input pixels.

Cases (inputs RGB in [0, 1]):

``face_detection``, ``face_landmark``, ``iris_landmark``, ``selfie_segmentation``
    the MediaPipe networks of :mod:`vdf_stream.models.zoo` at their own input sizes (128,
    192, 64, 256), uniform random input;
``face_pipeline``
    :class:`vdf_stream.models.mesh.FacePipeline` with iris and segmentation on real 640x360
    frames of ``single_face.mp4`` (the first ``B``). Forward: the whole pipeline as a user
    calls it (detection, suppression and region choice, mesh, pose, iris, segmentation).
    Forward + backward: what an attack step costs: the regions chosen once on the clean
    frames (not timed), then mesh, pose, iris, segmentation and the detector's face score
    on frames that require a gradient, and one backward pass to the pixels;
``bisenet``, ``fan``, ``s3fd``
    the networks the talking-face pipelines run, with random weights (eval mode; their
    checkpoints are not needed to time them), uniform random input:
    :class:`vdf_stream.models.bisenet.BiSeNet` at 512x512, :class:`vdf_stream.models.fan.FAN`
    on its 256x256 crop, :class:`vdf_stream.models.s3fd.S3FD` on a 640x360 frame.

Forward runs under ``torch.no_grad``; forward + backward sums every output into one scalar
and calls ``backward`` (the weights are frozen, as in an attack: the gradient goes to the
input). Every case is warmed up, then the cases are timed in interleaved rounds (each round
runs every case once), so that load from other processes spreads over all of them; the
median of the rounds is reported (CUDA timed with events after a synchronize), with the
minimum and the process CPU time beside it. A case leaves the rounds after
``--max-seconds`` of timed runs once it has three. Speed is measured and reported, never
asserted.

The table goes to stdout, progress to stderr, and everything (every run, medians, the
resolved configuration, library versions, machine, load average) to
``benchmarks/results/models-<machine tag>.json``.

Usage::

    python benchmarks/models.py                      # CPU (and CUDA when present)
    python benchmarks/models.py --devices cuda --dtypes float32,bfloat16
    python benchmarks/models.py --quick --output /tmp/models.json   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from vdf_stream import environment  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS_FOLDER = REPOSITORY / "benchmarks" / "results"
SCHEMA_VERSION = 1

ZOO_CASES = ("face_detection", "face_landmark", "iris_landmark", "selfie_segmentation")
# the user's networks, timed with random weights: case -> (module, class, input height, width)
USER_NETWORKS = {"bisenet": ("bisenet", "BiSeNet", 512, 512), "fan": ("fan", "FAN", 256, 256),
                 "s3fd": ("s3fd", "S3FD", 360, 640)}
CASES = ZOO_CASES + ("face_pipeline",) + tuple(USER_NETWORKS)
MODES = ("forward", "forward_backward")
PIPELINE_CLIP = "single_face.mp4"
PIPELINE_SIZE = (640, 360)  # width, height of the clip's frames
DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class BenchmarkError(RuntimeError):
    """A case could not be prepared (a missing asset, an unusable device or dtype)."""


@dataclass(frozen=True)
class Settings:
    """What a run measures; resolved from the command line once."""

    cases: tuple[str, ...]
    devices: tuple[str, ...]
    dtypes: tuple[str, ...]
    batches: tuple[int, ...]
    modes: tuple[str, ...]
    warmup: int
    repeat: int
    max_seconds: float
    threads: int
    quick: bool


@dataclass
class Result:
    """One case on one device, dtype, batch and mode."""

    case: str
    device: str
    dtype: str
    batch: int
    mode: str
    input_shape: list[int]
    milliseconds: list[float] = field(default_factory=list)  # wall time of each timed run
    cpu_milliseconds: list[float] = field(default_factory=list)  # process CPU time of each
    median_ms: float = 0.0
    min_ms: float = 0.0
    median_cpu_ms: float = 0.0
    median_ms_per_frame: float = 0.0
    peak_memory_mib: float | None = None
    error: str | None = None


# -------------------------------------------------------------------------------------
# Cases


@dataclass
class Prepared:
    """A case ready to time: ``forward()`` and ``forward_backward()`` each run once."""

    input_shape: list[int]
    forward: Callable[[], None]
    forward_backward: Callable[[], None]
    parameters: int


def _total(outputs) -> "torch.Tensor":
    """Every tensor in ``outputs`` summed into one float32 scalar."""
    import torch

    if isinstance(outputs, torch.Tensor):
        return outputs.float().sum()
    return sum(_total(output) for output in outputs if output is not None)


def _parameter_count(module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def prepare_zoo(name: str, device, dtype, batch: int) -> Prepared:
    import torch

    from vdf_stream.models import zoo

    model = zoo.load(name, device=device, dtype=dtype)
    size = model.input_size
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator).to(device)

    def forward():
        with torch.no_grad():
            model(images)

    def forward_backward():
        pixels = images.clone().requires_grad_(True)
        _total(model(pixels)).backward()

    return Prepared([batch, 3, size, size], forward, forward_backward, _parameter_count(model))


def pipeline_frames(batch: int, device):
    """The first ``batch`` frames of the real clip, ``(B, 3, 360, 640)`` in [0, 1]."""
    import torch

    from vdf_stream import assets
    from vdf_stream.errors import AssetError
    from vdf_stream.media.sources import open_source

    try:
        path = assets.fetch(PIPELINE_CLIP, progress=False)
    except AssetError as error:
        raise BenchmarkError(f"the face pipeline needs {PIPELINE_CLIP}: {error}") from None
    frames = []
    with open_source(str(path)) as source:
        for decoded in source.frames("rgb24"):
            frames.append(torch.from_numpy(decoded.pixels.copy()).permute(2, 0, 1))
            if len(frames) == batch:
                break
    if len(frames) < batch:
        raise BenchmarkError(f"{PIPELINE_CLIP} has only {len(frames)} frames, {batch} asked")
    return (torch.stack(frames).float() / 255).to(device)


def prepare_pipeline(device, dtype, batch: int) -> Prepared:
    import torch

    from vdf_stream.models import mesh

    pipeline = mesh.FacePipeline(device=device, dtype=dtype, segmentation=True, iris=True)
    frames = pipeline_frames(batch, device)
    roi, found, _ = pipeline.regions(frames)
    if not bool(found.all()):
        raise BenchmarkError(f"no face found in {int((~found).sum())} of the {batch} frames")

    def forward():
        with torch.no_grad():
            pipeline(frames)

    def forward_backward():
        pixels = frames.clone().requires_grad_(True)
        result = pipeline(pixels, roi=roi, segmentation=True, iris=True)
        loss = _total([result.landmarks, result.presence_logits, result.pose.angles,
                       result.iris, result.eye_contours, result.segmentation_logits,
                       pipeline.detector.face_score(pixels)])
        loss.backward()

    parameters = sum(_parameter_count(module) for module in
                     (pipeline.detector.model, pipeline.landmarker, pipeline.iris_landmarker,
                      pipeline.segmenter))
    height = frames.shape[-2]
    width = frames.shape[-1]
    return Prepared([batch, 3, height, width], forward, forward_backward, parameters)


def prepare_network(case: str, device, dtype, batch: int) -> Prepared:
    """One of :data:`USER_NETWORKS` with seed-0 random weights, on uniform random input."""
    import importlib

    import torch

    module, name, height, width = USER_NETWORKS[case]
    torch.manual_seed(0)
    model = getattr(importlib.import_module(f"vdf_stream.models.{module}"), name)()
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, height, width, generator=generator)
    images = images.to(device=device, dtype=dtype)

    def forward():
        with torch.no_grad():
            model(images)

    def forward_backward():
        pixels = images.clone().requires_grad_(True)
        _total(model(pixels)).backward()

    return Prepared([batch, 3, height, width], forward, forward_backward,
                    _parameter_count(model))


def prepare(case: str, device, dtype, batch: int) -> Prepared:
    if case in ZOO_CASES:
        return prepare_zoo(case, device, dtype, batch)
    if case == "face_pipeline":
        return prepare_pipeline(device, dtype, batch)
    if case in USER_NETWORKS:
        return prepare_network(case, device, dtype, batch)
    raise BenchmarkError(f"unknown case {case!r}; known cases: {', '.join(CASES)}")


# -------------------------------------------------------------------------------------
# Timing


def time_once(function: Callable[[], None], device) -> tuple[float, float]:
    """``(wall, cpu)`` milliseconds of one run of ``function``. CUDA: the wall time is
    measured between two events after a synchronize; the CPU time is this process's
    (every thread), which background load inflates much less than the wall time."""
    import torch

    cpu_started = time.process_time()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        function()
        end.record()
        torch.cuda.synchronize(device)
        wall = start.elapsed_time(end)
    else:
        begin = time.perf_counter()
        function()
        wall = (time.perf_counter() - begin) * 1000
    return wall, (time.process_time() - cpu_started) * 1000


@dataclass
class Cell:
    """One result being measured: its function and the runs so far."""

    result: Result
    function: Callable[[], None]
    device: object
    done: bool = False


def measure(settings: Settings, log) -> tuple[list[Result], dict]:
    """Every case x device x dtype x batch x mode; and each case's parameter count.

    Runs are interleaved: every case is warmed up, then each round times every case once,
    so that load from other processes hits all cases alike instead of spoiling every run
    of one case. A case leaves the rounds once it has three runs and its timed runs add up
    to more than ``max_seconds``.
    """
    import torch

    results: list[Result] = []
    cells: list[Cell] = []
    parameters: dict[str, int] = {}
    for device_name in settings.devices:
        device = torch.device(device_name)
        for dtype_name in settings.dtypes:
            dtype = getattr(torch, dtype_name)
            for case in settings.cases:
                for batch in settings.batches:
                    try:
                        prepared = prepare(case, device, dtype, batch)
                    except (BenchmarkError, RuntimeError, ValueError) as error:
                        message = str(error).strip().splitlines()[0]
                        log(f"{case} {device_name} {dtype_name} batch {batch}: skipped "
                            f"({message})")
                        for mode in settings.modes:
                            results.append(Result(case, device_name, dtype_name, batch, mode,
                                                  [], error=message))
                        continue
                    parameters[case] = prepared.parameters
                    for mode in settings.modes:
                        result = Result(case, device_name, dtype_name, batch, mode,
                                        prepared.input_shape)
                        results.append(result)
                        cells.append(Cell(result, getattr(prepared, mode), device))

    def run(cell: Cell) -> tuple[float, float] | None:
        try:
            return time_once(cell.function, cell.device)
        except RuntimeError as error:  # out of memory, an unsupported dtype
            result = cell.result
            result.error = str(error).strip().splitlines()[0]
            cell.done = True
            log(f"{result.case} {result.device} {result.dtype} batch {result.batch} "
                f"{result.mode}: failed ({result.error})")
            return None

    for cell in cells:
        for _ in range(settings.warmup):
            if run(cell) is None:
                break
    for index in range(settings.repeat):
        for cell in cells:
            if cell.done:
                continue
            if cell.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(cell.device)
            timing = run(cell)
            if timing is None:
                continue
            result = cell.result
            result.milliseconds.append(round(timing[0], 4))
            result.cpu_milliseconds.append(round(timing[1], 4))
            if cell.device.type == "cuda":
                peak = round(torch.cuda.max_memory_allocated(cell.device) / 2**20, 1)
                result.peak_memory_mib = max(result.peak_memory_mib or 0.0, peak)
            spent_seconds = sum(result.milliseconds) / 1000
            if len(result.milliseconds) >= 3 and spent_seconds > settings.max_seconds:
                cell.done = True
        log(f"round {index + 1}/{settings.repeat} done (load average "
            f"{os.getloadavg()[0]:.2f})")
    for cell in cells:
        result = cell.result
        if not result.milliseconds:
            continue
        result.median_ms = round(statistics.median(result.milliseconds), 4)
        result.min_ms = round(min(result.milliseconds), 4)
        result.median_cpu_ms = round(statistics.median(result.cpu_milliseconds), 4)
        result.median_ms_per_frame = round(result.median_ms / result.batch, 4)
        log(f"{result.case:<20} {result.device:<5} {result.dtype:<8} batch {result.batch} "
            f"{result.mode:<16} {result.median_ms:10.2f} ms (min {result.min_ms:.2f}, "
            f"{len(result.milliseconds)} runs)")
    return results, parameters


# -------------------------------------------------------------------------------------
# Environment


def cpu_pressure() -> dict | None:
    """Linux pressure-stall figures for the CPU (share of time some task waited for a CPU,
    over 10, 60 and 300 s), or None where the kernel does not provide them."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(item.split("=") for item in line.split()[1:])
    return {key: float(value) for key, value in fields.items() if key.startswith("avg")}


def library_versions() -> dict:
    from importlib import metadata

    import torch

    def version(distribution: str) -> str | None:
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            return None

    return {**environment.library_versions(), "torch_cuda": torch.version.cuda,
            "pillow": version("pillow"), "tflite": version("tflite")}


def machine_description(idle_before: float | None) -> dict:
    return {
        **environment.machine_description(),
        "hostname": socket.gethostname(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "cpu_idle_fraction_before_start": (round(idle_before, 3)
                                           if idle_before is not None else None),
        "cpu_pressure_at_start": cpu_pressure(),
    }


# -------------------------------------------------------------------------------------
# Reporting


def format_table(results: list[Result], settings: Settings) -> str:
    """Forward and forward + backward medians side by side, per case, device, dtype, batch:
    wall-clock milliseconds per call and per frame, and the process CPU milliseconds."""
    header = (f"{'model':<20} {'device':<6} {'dtype':<8} {'batch':>5}  "
              f"{'forward ms':>10} {'/frame':>8} {'cpu ms':>9}  "
              f"{'fwd+bwd ms':>10} {'/frame':>8} {'cpu ms':>9}")
    lines = [header, "-" * len(header)]
    keyed = {(r.case, r.device, r.dtype, r.batch, r.mode): r for r in results}

    def cells(result: Result | None) -> str:
        if result is None:
            return f"{'':>10} {'':>8} {'':>9}"
        if result.error is not None:
            return f"{'failed':>10} {'':>8} {'':>9}"
        return (f"{result.median_ms:10.1f} {result.median_ms_per_frame:8.1f} "
                f"{result.median_cpu_ms:9.1f}")

    for device in settings.devices:
        for dtype in settings.dtypes:
            for case in settings.cases:
                for batch in settings.batches:
                    forward = keyed.get((case, device, dtype, batch, "forward"))
                    backward = keyed.get((case, device, dtype, batch, "forward_backward"))
                    lines.append(f"{case:<20} {device:<6} {dtype:<8} {batch:>5}  "
                                 f"{cells(forward)}  {cells(backward)}")
    lines.append(f"medians of the timed runs; cpu ms: this process's CPU time over its "
                 f"{settings.threads} torch thread(s); with one thread, other processes' load "
                 "inflates it much less than the wall time (with several, threads spinning "
                 "while they wait for each other inflate it too)")
    return "\n".join(lines)


def default_output(quick: bool) -> Path:
    suffix = "-quick" if quick else ""
    return RESULTS_FOLDER / f"models-{environment.machine_tag()}{suffix}.json"


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Forward and forward+backward time of the face models (median of "
                    "repeated runs); a table on stdout, a JSON report under "
                    "benchmarks/results/.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 1, no warm-up, one timed run (checks that "
                             "every case runs; its figures include first-call costs)")
    parser.add_argument("--cases", type=_list, default=CASES, metavar="LIST",
                        help=f"comma-separated (default: all: {','.join(CASES)})")
    parser.add_argument("--devices", type=_list, default=None, metavar="LIST",
                        help="cpu, cuda, or both (default: cpu, and cuda when available)")
    parser.add_argument("--dtypes", type=_list, default=("float32",), metavar="LIST",
                        help="float32 (default), bfloat16, float16 (CUDA)")
    parser.add_argument("--batches", type=_list, default=None, metavar="LIST",
                        help="batch sizes (default 1,8; --quick: 1)")
    parser.add_argument("--modes", type=_list, default=MODES, metavar="LIST",
                        help="forward, forward_backward (default both)")
    parser.add_argument("--warmup", type=int, default=None, metavar="N",
                        help="untimed runs first (default 2; --quick 0)")
    parser.add_argument("--repeat", type=int, default=None, metavar="N",
                        help="timed runs, the median is reported (default 10; --quick 1)")
    parser.add_argument("--max-seconds", type=float, default=None, metavar="S",
                        help="a case leaves the rounds after S seconds of timed runs once "
                             "it has 3 (default 30; --quick 5)")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="torch CPU threads (default 0: torch's choice). On a machine "
                             "shared with other work, 1 avoids threads waiting on each other "
                             "and the CPU ms column is then the figure to read")
    parser.add_argument("--output", type=Path, metavar="PATH",
                        help="JSON report (default: benchmarks/results/models-<machine tag>"
                             "[-quick].json)")
    parser.add_argument("--note", default=None, help="a remark stored in the report")
    return parser.parse_args(argv)


def resolve(arguments: argparse.Namespace) -> Settings:
    import torch

    quick = arguments.quick
    unknown = [case for case in arguments.cases if case not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    modes = [mode for mode in arguments.modes if mode not in MODES]
    if modes:
        raise SystemExit(f"unknown mode(s) {', '.join(modes)}; known: {', '.join(MODES)}")
    dtypes = [dtype for dtype in arguments.dtypes if dtype not in DTYPES]
    if dtypes:
        raise SystemExit(f"unknown dtype(s) {', '.join(dtypes)}; known: {', '.join(DTYPES)}")
    devices = arguments.devices
    if devices is None:
        devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    for device in devices:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise SystemExit(f"--devices {device}: no CUDA GPU is available here")
    batches = arguments.batches or (("1",) if quick else ("1", "8"))
    try:
        batches = tuple(int(batch) for batch in batches)
    except ValueError:
        raise SystemExit(f"--batches {','.join(batches)}: give whole numbers") from None
    if arguments.threads:
        torch.set_num_threads(arguments.threads)

    def pick(value, normal, smoke):
        return value if value is not None else (smoke if quick else normal)

    return Settings(
        cases=tuple(arguments.cases), devices=tuple(devices), dtypes=tuple(arguments.dtypes),
        batches=batches, modes=tuple(arguments.modes),
        warmup=pick(arguments.warmup, 2, 0), repeat=pick(arguments.repeat, 10, 1),
        max_seconds=pick(arguments.max_seconds, 30.0, 5.0),
        threads=torch.get_num_threads(), quick=quick,
    )


def main(argv: list[str] | None = None) -> int:
    import torch

    arguments = parse_arguments(argv)
    settings = resolve(arguments)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    idle_before = environment.cpu_idle_fraction(1.0)
    machine = machine_description(idle_before)
    cores = machine["cpu_cores"]
    busy = (machine["load_average_at_start"][0] > cores / 2
            or (idle_before is not None and idle_before < 0.75))
    started = time.perf_counter()
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results, parameters = measure(settings, log)
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    machine["cpu_pressure_at_end"] = cpu_pressure()
    table = format_table(results, settings)
    print(table)

    report = {
        "benchmark": "models",
        "schema_version": SCHEMA_VERSION,
        "date": date,
        "duration_seconds": round(time.perf_counter() - started, 1),
        "command": [Path(sys.executable).name, *sys.argv],
        "note": arguments.note,
        "conditions": {
            "busy": busy,
            "label": ("machine busy with other work when the run started: figures indicative "
                      "only") if busy else "machine quiet when the run started",
        },
        "configuration": {
            **asdict(settings),
            "pipeline_clip": PIPELINE_CLIP,
            "pipeline_frame_size": list(PIPELINE_SIZE),
            "pipeline_options": {"iris": True, "segmentation": True},
            "user_networks": {case: {"input": [height, width],
                                     "weights": "random (torch.manual_seed(0)), eval mode"}
                              for case, (_, _, height, width) in USER_NETWORKS.items()},
            "inputs": "uniform random in [0, 1] (generator seed 0), face_pipeline: real frames",
            "forward": "torch.no_grad()",
            "forward_backward": "all outputs summed to one scalar, backward to the input "
                                "pixels; weights frozen; face_pipeline regions chosen on the "
                                "clean frames before timing",
            "timing": "warm-up runs, then interleaved rounds (each round times every case "
                      "once); median wall time of the rounds; CUDA between events after a "
                      "synchronize; cpu_milliseconds: process CPU time of each run",
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        },
        "parameters": parameters,
        "versions": library_versions(),
        "machine": machine,
        "results": [asdict(result) for result in results],
    }
    output = arguments.output or default_output(settings.quick)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    log(f"report written to {output}" + (" (machine busy: figures indicative only)"
                                           if busy else ""))
    failed = [result for result in results if result.error is not None]
    return 1 if failed and len(failed) == len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
