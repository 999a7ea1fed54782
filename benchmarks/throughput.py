"""Throughput of the engine (decode -> ``null`` -> encode) against a plain transcode.

Every method transcodes the same clip with the same settings (libx264, CRF 18, the chosen
preset, yuv420p, audio copied, threads left automatic) into a temporary folder:

``ffmpeg_cli``
    the ``ffmpeg`` command line (the system's build, with its own libx264);
``pyav``
    a plain PyAV loop, decode -> encode, with the encoder configured as the engine configures
    it (same libx264 build, PyAV's threading defaults): ``engine / pyav`` is the engine's own
    overhead;
``pyav_frame_threads``
    the same loop with the encoder's ``thread_type`` set to ``AUTO``, which is what the
    ``ffmpeg`` command line uses (libx264 then runs frame threads rather than slice
    threads): shows how much of ``engine / ffmpeg_cli`` is that one setting;
``engine``
    :class:`vdf_stream.pipeline.engine.Engine` in this process, timed from opening the input to
    closing it (sink opened, encoder flushed, container finalised);
``vdf_stream_cli``
    ``vdf-stream protect`` as a command, end to end (includes Python and torch start-up).

Runs are interleaved (ffmpeg, pyav, ..., ffmpeg, pyav, ...) so that background load hits
every method alike, repeated ``--repeat`` times, and the median is reported. Each run also
records its CPU seconds and the CPU time other processes took meanwhile, and the report is
labelled busy when they took much. For the engine, ``RunStats.stage_seconds`` is reported
with the time spent closing the sink (the encoder's flush), which no stage counts. Speed is
measured and reported, never asserted. The table goes to stdout and everything (figures,
resolved configuration, library versions, machine, load) to a JSON file under
``benchmarks/results/``.

Usage::

    python benchmarks/throughput.py                 # a few minutes on 2 cores
    python benchmarks/throughput.py --quick --repeat 1 --output /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from vdf_stream import environment  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS_FOLDER = REPOSITORY / "benchmarks" / "results"
SCHEMA_VERSION = 1

CODEC = "libx264"
CRF = 18
PIX_FMT = "yuv420p"
FILTER_GRAPH = "null"
HIGH_DEFINITION = (1920, 1080)
HIGH_DEFINITION_CRF = 16  # the upscaled source clip is encoded near-transparently
# the run is labelled busy when other processes took more than this share of the CPUs
BACKGROUND_LIMIT = 0.10

METHODS = ("ffmpeg_cli", "pyav", "pyav_frame_threads", "engine", "vdf_stream_cli")
METHOD_TITLES = {
    "ffmpeg_cli": "ffmpeg CLI",
    "pyav": "plain PyAV",
    "pyav_frame_threads": "plain PyAV, frame threads",
    "engine": "engine (Python API)",
    "vdf_stream_cli": "vdf-stream protect",
}


class BenchmarkError(RuntimeError):
    """A step of the benchmark failed (a command, a missing tool, an unreadable output)."""


@dataclass(frozen=True)
class Settings:
    """What a run measures; resolved from the command line once."""

    presets: tuple[str, ...]
    repeat: int
    quick: bool
    device: str
    resolved_device: str
    high_definition_frames: int
    methods: tuple[str, ...]


@dataclass(frozen=True)
class Clip:
    """A clip every method transcodes, described as it was probed."""

    label: str
    path: Path
    origin: str
    width: int
    height: int
    frames: int
    frame_rate: str
    video_codec: str
    audio_codec: str | None


@dataclass
class Measurement:
    """One timed transcode."""

    seconds: float
    cpu_seconds: float  # user + system of every thread or child process involved
    frames: int  # video frames found in the output
    output_bytes: int
    stage_seconds: dict[str, float] | None = None
    # CPU time other processes used meanwhile (all busy CPU time minus this run's own)
    background_cpu_seconds: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Case:
    """One clip at one preset: every method's measurements."""

    clip: Clip
    preset: str
    measurements: dict[str, list[Measurement]] = field(default_factory=dict)
    x264_settings: dict[str, str | None] = field(default_factory=dict)


# -------------------------------------------------------------------------------------
# Helpers


def run_command(command: list[str], what: str) -> subprocess.CompletedProcess:
    """Run ``command``; raise with its stderr when it fails."""
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise BenchmarkError(f"{what} failed (exit {result.returncode}): {' '.join(command)}"
                             f"\n{message}")
    return result


def system_busy_seconds() -> float | None:
    """CPU seconds every process on the machine has used since boot (None if unknown)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(value) for value in fields[:8]]  # guest time is inside user time
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def count_video_frames(path: Path) -> int:
    """Decode-free count of the video frames in ``path`` (demuxed packets)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return stream.frames
        return sum(1 for packet in container.demux(stream) if packet.size)


def x264_settings(path: Path) -> str | None:
    """The option string libx264 writes into its first SEI message, if present."""
    data = path.read_bytes()
    start = data.find(b"x264 - core")
    if start < 0:
        return None
    end = data.find(b"\x00", start, start + 4000)
    return data[start: end if end > 0 else start + 4000].decode("ascii", "replace")


def x264_summary(settings: str | None) -> str:
    """The parts of an x264 option string that explain a speed difference."""
    if not settings:
        return "?"
    core = re.match(r"x264 - core (\d+)( r\d+)?", settings)
    keys = ("threads", "lookahead_threads", "sliced_threads", "slices")
    found = dict(re.findall(r"\b(\w+)=(\S+)", settings))
    parts = [f"core {core.group(1)}{core.group(2) or ''}" if core else "core ?"]
    parts += [f"{key}={found[key]}" for key in keys if key in found]
    return " ".join(parts)


def probe_clip(label: str, path: Path, origin: str) -> Clip:
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = video.frames or sum(1 for packet in container.demux(video) if packet.size)
        rate = video.average_rate or video.guessed_rate
        return Clip(
            label=label,
            path=path,
            origin=origin,
            width=video.codec_context.width,
            height=video.codec_context.height,
            frames=frames,
            frame_rate=str(rate),
            video_codec=video.codec_context.name,
            audio_codec=audio.codec_context.name if audio is not None else None,
        )


def ffmpeg_executable() -> str:
    found = shutil.which("ffmpeg")
    if found is None:
        raise BenchmarkError("the ffmpeg command line is not installed (apt-get install ffmpeg)")
    return found


def vdf_stream_command() -> list[str]:
    """The ``vdf-stream`` of this interpreter's environment (or ``python -m vdf_stream``)."""
    script = Path(sys.executable).parent / "vdf-stream"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "vdf_stream"]


# -------------------------------------------------------------------------------------
# Clips


def prepare_clips(folder: Path, quick: bool, high_definition_frames: int) -> list[Clip]:
    """The 360p clip as it is, and a 1080p clip upscaled from it (made here, once)."""
    from vdf_stream import assets

    # single_face.mp4 has 72 frames: enough for a smoke test; the full run uses the longer
    # real 360p clip rather than a looped one (looping would repeat the encoder's start-up).
    name = "single_face.mp4" if quick else "WolfgangLanger_Pexels.mp4"
    source = assets.fetch(name)
    clips = [probe_clip("360p", source, f"{name} (pinned asset, unchanged)")]
    width, height = HIGH_DEFINITION
    upscaled = folder / f"upscaled-{height}p.mp4"
    command = [
        ffmpeg_executable(), "-v", "error", "-y", "-i", str(source),
        "-frames:v", str(high_definition_frames),
        "-vf", f"scale={width}:{height}:flags=lanczos",
        "-c:v", CODEC, "-crf", str(HIGH_DEFINITION_CRF), "-preset", "veryfast",
        "-pix_fmt", PIX_FMT, "-c:a", "copy", str(upscaled),
    ]
    run_command(command, f"making the {height}p clip")
    origin = (f"{name}, first {high_definition_frames} frames upscaled (lanczos) and encoded "
              f"with libx264 CRF {HIGH_DEFINITION_CRF} veryfast by the ffmpeg CLI")
    clips.append(probe_clip(f"{height}p", upscaled, origin))
    return clips


# -------------------------------------------------------------------------------------
# The methods


def ffmpeg_cli_command(source: Path, output: Path, preset: str) -> list[str]:
    return [
        ffmpeg_executable(), "-v", "error", "-y", "-i", str(source),
        "-c:v", CODEC, "-crf", str(CRF), "-preset", preset, "-pix_fmt", PIX_FMT,
        "-c:a", "copy", str(output),
    ]


def vdf_stream_cli_command(source: Path, output: Path, preset: str, device: str) -> list[str]:
    return vdf_stream_command() + [
        "protect", str(source), "-o", str(output), "-y", "-q", "--vf", FILTER_GRAPH,
        "--device", device, "--codec", CODEC, "--crf", str(CRF), "--preset", preset,
    ]


def time_command(command: list[str], output: Path, what: str) -> Measurement:
    cpu_before = children_cpu_seconds()
    started = time.perf_counter()
    run_command(command, what)
    seconds = time.perf_counter() - started
    cpu = children_cpu_seconds() - cpu_before
    return Measurement(seconds, cpu, count_video_frames(output), output.stat().st_size)


def run_ffmpeg_cli(clip: Clip, output: Path, preset: str, settings: Settings) -> Measurement:
    return time_command(ffmpeg_cli_command(clip.path, output, preset), output, "ffmpeg")


def run_vdf_stream_cli(clip: Clip, output: Path, preset: str,
                       settings: Settings) -> Measurement:
    command = vdf_stream_cli_command(clip.path, output, preset, settings.device)
    return time_command(command, output, "vdf-stream protect")


def transcode_with_pyav(source: Path, output: Path, preset: str,
                        encoder_thread_type: str | None) -> dict[str, float]:
    """Decode -> encode in one loop, as a careful PyAV user writes it.

    The decoder gets ``thread_type = "AUTO"`` (as the engine's source sets it); the encoder
    keeps PyAV's defaults unless ``encoder_thread_type`` is given. Frames lose their decoded
    picture type, as the ffmpeg command line does, so the encoder chooses every frame type.
    Returns the seconds spent decoding (audio packets copied included) and encoding.
    """
    import av
    from av.video.frame import PictureType

    decode_seconds = 0.0
    encode_seconds = 0.0
    with av.open(str(source)) as reader, av.open(str(output), "w") as writer:
        video_in = reader.streams.video[0]
        video_in.thread_type = "AUTO"
        copied_in = [stream for stream in reader.streams if stream.type in ("audio", "subtitle")]
        context_in = video_in.codec_context
        rate = video_in.average_rate or video_in.guessed_rate
        video_out = writer.add_stream(CODEC, rate=rate)
        video_out.width = context_in.width
        video_out.height = context_in.height
        video_out.pix_fmt = PIX_FMT
        video_out.time_base = video_in.time_base
        context_out = video_out.codec_context
        context_out.time_base = video_in.time_base
        context_out.options = {"crf": str(CRF), "preset": preset}
        if encoder_thread_type is not None:
            context_out.thread_type = encoder_thread_type
        copied_out = {stream.index: writer.add_stream_from_template(stream)
                      for stream in copied_in}
        packets = reader.demux([video_in] + copied_in)
        while True:
            started = time.perf_counter()
            packet = next(packets, None)
            if packet is None:
                decode_seconds += time.perf_counter() - started
                break
            if packet.stream.index in copied_out:
                if packet.dts is not None:
                    packet.stream = copied_out[packet.stream.index]
                    writer.mux(packet)
                decode_seconds += time.perf_counter() - started
                continue
            frames = packet.decode()
            decode_seconds += time.perf_counter() - started
            started = time.perf_counter()
            for frame in frames:
                if frame.format.name != PIX_FMT:
                    frame = frame.reformat(format=PIX_FMT)
                frame.pict_type = PictureType.NONE
                writer.mux(video_out.encode(frame))
            encode_seconds += time.perf_counter() - started
        started = time.perf_counter()
        writer.mux(video_out.encode(None))
        encode_seconds += time.perf_counter() - started
    return {"decode": decode_seconds, "encode": encode_seconds}


def _time_pyav(clip: Clip, output: Path, preset: str, thread_type: str | None) -> Measurement:
    cpu_before = own_cpu_seconds()
    started = time.perf_counter()
    stages = transcode_with_pyav(clip.path, output, preset, thread_type)
    seconds = time.perf_counter() - started
    cpu = own_cpu_seconds() - cpu_before
    return Measurement(seconds, cpu, count_video_frames(output), output.stat().st_size, stages)


def run_pyav(clip: Clip, output: Path, preset: str, settings: Settings) -> Measurement:
    return _time_pyav(clip, output, preset, None)


def run_pyav_frame_threads(clip: Clip, output: Path, preset: str,
                           settings: Settings) -> Measurement:
    return _time_pyav(clip, output, preset, "AUTO")


def run_engine(clip: Clip, output: Path, preset: str, settings: Settings) -> Measurement:
    """The engine through its Python API, timed from opening the input to closing it."""
    import torch
    from vdf_stream.pipeline.engine import Engine
    from vdf_stream.pipeline.filter import build_filters
    from vdf_stream.media.sinks import EncodeOptions, open_sink
    from vdf_stream.media.sources import open_source

    device = torch.device(settings.resolved_device)
    options = EncodeOptions(codec=CODEC, crf=float(CRF), preset=preset, pix_fmt=PIX_FMT)
    close_seconds = []
    cpu_before = own_cpu_seconds()
    started = time.perf_counter()
    source = open_source(str(clip.path))
    try:
        def sink_factory(info):
            sink = open_sink(str(output), info, options, copy_from=source.copy_streams(),
                             input_spec=str(clip.path))
            close = sink.close

            def timed_close() -> None:
                # closing flushes the encoder (x264 still holds its lookahead and threads'
                # frames), which RunStats.stage_seconds.encode does not count
                close_started = time.perf_counter()
                try:
                    close()
                finally:
                    close_seconds.append(time.perf_counter() - close_started)

            sink.close = timed_close
            return sink

        engine = Engine(source, build_filters(FILTER_GRAPH), sink_factory, device=device)
        stats = engine.run()
    finally:
        source.close()
    seconds = time.perf_counter() - started
    cpu = own_cpu_seconds() - cpu_before
    stages = asdict(stats.stage_seconds)
    stages["sink_close"] = sum(close_seconds)
    stages["engine_run"] = stats.seconds
    return Measurement(seconds, cpu, count_video_frames(output), output.stat().st_size, stages)


# (numerator, denominator): the ratios reported, as numerator fps / denominator fps
RATIO_PAIRS = (
    ("engine", "ffmpeg_cli"),
    ("engine", "pyav"),
    ("engine", "pyav_frame_threads"),
    ("vdf_stream_cli", "ffmpeg_cli"),
    ("pyav", "ffmpeg_cli"),
    ("pyav_frame_threads", "ffmpeg_cli"),
)

RUNNERS = {
    "ffmpeg_cli": run_ffmpeg_cli,
    "pyav": run_pyav,
    "pyav_frame_threads": run_pyav_frame_threads,
    "engine": run_engine,
    "vdf_stream_cli": run_vdf_stream_cli,
}


# -------------------------------------------------------------------------------------
# Environment


def library_versions() -> dict:
    ffmpeg_line = run_command([ffmpeg_executable(), "-version"], "ffmpeg -version")
    return {**environment.library_versions(),
            "ffmpeg_cli": ffmpeg_line.stdout.decode("utf-8", "replace").splitlines()[0]}


def machine_description(idle_before: float | None) -> dict:
    return {
        **environment.machine_description(),
        "hostname": socket.gethostname(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
        "cpu_idle_fraction_before_start": (round(idle_before, 3)
                                           if idle_before is not None else None),
    }


# -------------------------------------------------------------------------------------
# Running and reporting


def measure(clips: list[Clip], settings: Settings, folder: Path, log) -> list[Case]:
    """Every method on every clip and preset, interleaved: round after round."""
    cases = [Case(clip, preset) for clip in clips for preset in settings.presets]
    for case in cases:
        case.measurements = {method: [] for method in settings.methods}
    for round_number in range(1, settings.repeat + 1):
        for case in cases:
            for method in settings.methods:
                output = folder / f"{case.clip.label}-{case.preset}-{method}.mp4"
                busy_before = system_busy_seconds()
                measurement = RUNNERS[method](case.clip, output, case.preset, settings)
                busy_after = system_busy_seconds()
                if busy_before is not None and busy_after is not None:
                    # counting the frames of the output afterwards costs a little: never < 0
                    measurement.background_cpu_seconds = max(
                        0.0, busy_after - busy_before - measurement.cpu_seconds)
                case.measurements[method].append(measurement)
                if method not in case.x264_settings:
                    case.x264_settings[method] = x264_settings(output)
                output.unlink()
                log(f"round {round_number}/{settings.repeat}  {case.clip.label} "
                    f"{case.preset:<9} {METHOD_TITLES[method]:<26} "
                    f"{measurement.seconds:7.2f} s  {measurement.fps:7.1f} fps  "
                    f"{measurement.cpu_seconds:6.1f} CPU s"
                    + (f", others {measurement.background_cpu_seconds:.1f} CPU s"
                       if measurement.background_cpu_seconds is not None else ""))
    return cases


def median_of(measurements: list[Measurement], attribute: str) -> float:
    return statistics.median(getattr(item, attribute) for item in measurements)


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def summarise(case: Case) -> dict:
    methods = {}
    for method, runs in case.measurements.items():
        summary = {
            "median_seconds": median_of(runs, "seconds"),
            "median_fps": median_of(runs, "fps"),
            "median_cpu_seconds": median_of(runs, "cpu_seconds"),
            "frames": [run.frames for run in runs],
            "output_bytes": [run.output_bytes for run in runs],
            "seconds": [run.seconds for run in runs],
            "fps": [run.fps for run in runs],
            "cpu_seconds": [run.cpu_seconds for run in runs],
            "background_cpu_seconds": [run.background_cpu_seconds for run in runs],
            "x264": x264_summary(case.x264_settings.get(method)),
            "x264_settings": case.x264_settings.get(method),
        }
        if runs[0].stage_seconds is not None:
            stages = runs[0].stage_seconds.keys()
            summary["stage_seconds"] = {stage: [run.stage_seconds[stage] for run in runs]
                                        for stage in stages}
            summary["median_stage_seconds"] = {
                stage: statistics.median(run.stage_seconds[stage] for run in runs)
                for stage in stages}
        methods[method] = summary
    runs = case.measurements
    fps_ratios, paired_fps_ratios, cpu_seconds_ratios = {}, {}, {}
    for numerator, denominator in RATIO_PAIRS:
        if numerator not in runs or denominator not in runs:
            continue
        name = f"{numerator}_vs_{denominator}"
        fps_ratios[name] = ratio(methods[numerator]["median_fps"],
                                 methods[denominator]["median_fps"])
        # runs of one round ran back to back, so their ratio shares that round's load
        paired_fps_ratios[name] = statistics.median(
            ratio(top.fps, bottom.fps) or 0.0
            for top, bottom in zip(runs[numerator], runs[denominator]))
        cpu_seconds_ratios[name] = ratio(methods[numerator]["median_cpu_seconds"],
                                         methods[denominator]["median_cpu_seconds"])
    frame_counts = {method: summary["frames"] for method, summary in methods.items()}
    derived = {}
    if "engine" in methods and "vdf_stream_cli" in methods:
        # what the command costs beyond the in-process run: interpreter, torch, argparse
        command, engine = methods["vdf_stream_cli"], methods["engine"]
        derived["vdf_stream_cli_minus_engine_seconds"] = (
            command["median_seconds"] - engine["median_seconds"])
        derived["vdf_stream_cli_minus_engine_cpu_seconds"] = (
            command["median_cpu_seconds"] - engine["median_cpu_seconds"])
    return {
        "clip": case.clip.label,
        "preset": case.preset,
        "frames": case.clip.frames,
        "frames_match": all(count == case.clip.frames
                            for counts in frame_counts.values() for count in counts),
        "methods": methods,
        "fps_ratios": fps_ratios,
        "paired_fps_ratios": paired_fps_ratios,
        "cpu_seconds_ratios": cpu_seconds_ratios,
        "derived": derived,
    }


def format_table(results: list[dict], settings: Settings) -> str:
    lines = []
    for result in results:
        methods = result["methods"]
        lines.append("")
        lines.append(f"{result['clip']} clip, {result['frames']} frames, libx264 CRF {CRF} "
                     f"preset {result['preset']}, device {settings.resolved_device}; "
                     f"median of {settings.repeat}")
        if not result["frames_match"]:
            lines.append("  WARNING: some output has a different frame count: "
                         + ", ".join(f"{m}={s['frames']}" for m, s in methods.items()))
        lines.append(f"  {'method':<27}{'seconds':>8}{'fps':>8}{'cpu s':>8}"
                     f"{'/ffmpeg':>9}{'/pyav':>7}  x264")
        reference_cli = methods.get("ffmpeg_cli", {}).get("median_fps", 0)
        reference_pyav = methods.get("pyav", {}).get("median_fps", 0)
        for method, summary in methods.items():
            versus_cli = ratio(summary["median_fps"], reference_cli)
            versus_pyav = ratio(summary["median_fps"], reference_pyav)
            lines.append(
                f"  {METHOD_TITLES[method]:<27}{summary['median_seconds']:8.2f}"
                f"{summary['median_fps']:8.1f}{summary['median_cpu_seconds']:8.1f}"
                f"{versus_cli if versus_cli is not None else float('nan'):9.2f}"
                f"{versus_pyav if versus_pyav is not None else float('nan'):7.2f}"
                f"  {summary['x264']}")
        engine = methods.get("engine")
        if engine is not None:
            stages = engine["median_stage_seconds"]
            lines.append(
                f"  engine stages (busy seconds; decode and encode run in their own threads, "
                f"so they overlap): decode {stages['decode']:.2f}, filter "
                f"{stages['filter']:.3f}, encode {stages['encode']:.2f}, then closing the "
                f"sink (encoder flush) {stages['sink_close']:.2f}; Engine.run "
                f"{stages['engine_run']:.2f}")
        paired = result["paired_fps_ratios"]
        if "engine_vs_ffmpeg_cli" in paired and "engine_vs_pyav" in paired:
            lines.append(f"  engine fps ratios per round (median): / ffmpeg CLI "
                         f"{paired['engine_vs_ffmpeg_cli']:.2f}, / plain PyAV "
                         f"{paired['engine_vs_pyav']:.2f}; CPU seconds ratios: / ffmpeg CLI "
                         f"{result['cpu_seconds_ratios']['engine_vs_ffmpeg_cli']:.2f}, "
                         f"/ plain PyAV {result['cpu_seconds_ratios']['engine_vs_pyav']:.2f}")
        derived = result["derived"]
        if "vdf_stream_cli_minus_engine_seconds" in derived:
            lines.append(f"  vdf-stream protect minus the in-process engine (start-up: Python, "
                         f"torch, argument parsing): "
                         f"{derived['vdf_stream_cli_minus_engine_seconds']:.2f} s, "
                         f"{derived['vdf_stream_cli_minus_engine_cpu_seconds']:.2f} CPU s")
        pyav = methods.get("pyav")
        if pyav is not None:
            stages = pyav["median_stage_seconds"]
            lines.append(f"  plain PyAV loop (serial): decode {stages['decode']:.2f}, "
                         f"encode {stages['encode']:.2f}")
    return "\n".join(lines)


def default_output(quick: bool) -> Path:
    suffix = "-quick" if quick else ""
    return RESULTS_FOLDER / f"throughput-{environment.machine_tag()}{suffix}.json"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput of vdf-stream's engine (decode -> null -> encode) against "
                    "the ffmpeg command line and a plain PyAV transcode, same settings.")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="runs of each method, interleaved; the median is reported "
                             "(default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: the 72-frame clip, a 12-frame 1080p clip, "
                             "preset veryfast only")
    parser.add_argument("--presets", default=None, metavar="LIST",
                        help="comma-separated x264 presets (default: medium,veryfast; "
                             "--quick: veryfast)")
    parser.add_argument("--hd-frames", type=int, default=None, metavar="N",
                        help="frames in the upscaled 1080p clip (default 150; --quick: 12)")
    parser.add_argument("--methods", default=",".join(METHODS), metavar="LIST",
                        help=f"comma-separated subset of {', '.join(METHODS)}")
    parser.add_argument("--device", default="auto",
                        help="the engine's device: auto, cpu, cuda (default auto, as the CLI)")
    parser.add_argument("--output", type=Path, default=None, metavar="PATH",
                        help="where the JSON goes (default: benchmarks/results/"
                             "throughput-<machine tag>[-quick].json)")
    parser.add_argument("--note", default=None,
                        help="free text stored in the JSON (e.g. what else ran meanwhile)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder with the prepared clips")
    arguments = parser.parse_args(argv)
    if arguments.repeat < 1:
        parser.error("--repeat must be at least 1")
    unknown = set(arguments.methods.split(",")) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s) {', '.join(sorted(unknown))}; "
                     f"choose from {', '.join(METHODS)}")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    # measured before importing torch, which itself loads a core
    idle_before = environment.cpu_idle_fraction(2.0)

    import torch  # noqa: F401  (imported before timing: the in-process runs pay no import)

    from vdf_stream.pipeline.engine import resolve_device
    from vdf_stream.pipeline.filter import build_filters

    device = resolve_device(arguments.device)
    if device.type == "cuda":
        torch.zeros(1, device=device)  # create the CUDA context outside the timed runs
    build_filters(FILTER_GRAPH)  # load the filter registry outside the timed runs
    presets = tuple((arguments.presets or ("veryfast" if arguments.quick
                                           else "medium,veryfast")).split(","))
    settings = Settings(
        presets=presets,
        repeat=arguments.repeat,
        quick=arguments.quick,
        device=arguments.device,
        resolved_device=str(device),
        high_definition_frames=arguments.hd_frames or (12 if arguments.quick else 150),
        methods=tuple(method for method in METHODS if method in arguments.methods.split(",")),
    )
    output_path = arguments.output or default_output(arguments.quick)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    machine = machine_description(idle_before)
    cores = machine["cpu_cores"]
    busy_at_start = (idle_before < 0.75 if idle_before is not None
                     else machine["load_average_at_start"][0] > 0.5 * cores)
    if busy_at_start:
        log(f"note: the machine is busy (load {machine['load_average_at_start'][0]:.2f} on "
            f"{cores} cores, {100 * (idle_before or 0):.0f}% idle): figures will be noisy, "
            "and the JSON is labelled so")
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="vdf-throughput-"))
    try:
        clips = prepare_clips(folder, settings.quick, settings.high_definition_frames)
        cases = measure(clips, settings, folder, log)
    finally:
        if arguments.keep:
            log(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    results = [summarise(case) for case in cases]
    machine["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    measured = [run for case in cases for runs in case.measurements.values() for run in runs]
    background = None
    if all(run.background_cpu_seconds is not None for run in measured):
        # share of the machine's CPU capacity that other processes took during the runs
        background = (sum(run.background_cpu_seconds for run in measured)
                      / (cores * sum(run.seconds for run in measured)))
    busy = busy_at_start or (background is not None and background > BACKGROUND_LIMIT)
    report = {
        "benchmark": "throughput",
        "schema_version": SCHEMA_VERSION,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "conditions": {
            "busy": busy,
            "label": ("MACHINE BUSY during this run: other processes were loading the CPU; "
                      "figures are indicative only") if busy else "machine quiet",
            "cpu_idle_fraction_before_start": idle_before,
            "background_cpu_share": background,
            "background_cpu_share_limit": BACKGROUND_LIMIT,
            "note": arguments.note,
            "total_seconds": round(time.perf_counter() - started, 1),
        },
        "configuration": {
            "filter_graph": FILTER_GRAPH,
            "codec": CODEC,
            "crf": CRF,
            "presets": list(settings.presets),
            "pix_fmt": PIX_FMT,
            "audio": "copied (ffmpeg -c:a copy; the engine copies by default)",
            "threads": "automatic everywhere (no -threads, thread_count 0)",
            "repeat": settings.repeat,
            "order": "interleaved: each round runs every clip, preset and method in turn",
            "statistic": ("median over the repeats; fps_ratios are ratios of median fps, "
                          "paired_fps_ratios medians of per-round ratios, cpu_seconds_ratios "
                          "ratios of median CPU seconds (numerator / denominator)"),
            "quick": settings.quick,
            "device": settings.device,
            "resolved_device": settings.resolved_device,
            "methods": list(settings.methods),
            "engine": {"batch_size": 1, "queue_size": 8, "timed": "open_source -> close"},
            "ffmpeg_cli_command": " ".join(ffmpeg_cli_command(Path("IN"), Path("OUT"),
                                                              "PRESET")),
            "vdf_stream_cli_command": " ".join(
                ["vdf-stream"] + vdf_stream_cli_command(Path("IN"), Path("OUT"), "PRESET",
                                                        settings.device)[
                    len(vdf_stream_command()):]),
            "clips": [{**asdict(clip), "path": clip.path.name} for clip in clips],
        },
        "versions": library_versions(),
        "machine": machine,
        "results": results,
    }
    print(f"vdf-stream throughput: decode -> {FILTER_GRAPH} -> encode, on "
          f"{machine['cpu_model']} ({cores} cores)")
    if background is not None:
        print(f"other processes took {100 * background:.0f}% of the CPU capacity during the "
              "runs" + (": BUSY, figures indicative only" if busy else ""))
    print(format_table(results, settings))
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {output_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
