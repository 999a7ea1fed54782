"""The ``vdf-stream`` command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from fractions import Fraction

from .. import __version__
from ..errors import (EXIT_CODES_HELP, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, Interrupted,
                     ReaderClosed, UsageError, VdfError)

DESCRIPTION = """\
vdf-stream protects portrait video against personalised 3-D talking-face deepfakes
(ER-NeRF, GeneFace, SyncTalk, TalkingGaussian...). It adds a bounded, invisible
perturbation that makes the face reading those generators depend on fail, as a
streaming filter: files, ffmpeg pipes, and live video."""

EXAMPLES = """\
examples:
  vdf-stream protect talk.mp4                      writes talk_protected.mp4 (audio kept)
  vdf-stream protect talk.mp4 -o out.mp4 --crf 20 --preset slow
  vdf-stream protect talk.mp4 -o small.mp4 --vf "scale=w=1280:h=-2,jpeg=quality=75"
  ffmpeg -i in.mp4 -f yuv4mpegpipe - | vdf-stream protect - -o - | ffmpeg -i - out.mp4
  vdf-stream filters                               what filters exist and their options
  vdf-stream eval talk.mp4 talk_protected.mp4      fidelity and efficacy of a protection
  vdf-stream batch videos/ -o protected/           a whole folder, in parallel (Ray)
  vdf-stream live --virtual-cam                    webcam -> protected virtual camera
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as one line and exit code 2."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = text.lower().split("x")
        return int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 1280x720") from None


def _rate(text: str) -> Fraction:
    try:
        value = Fraction(text.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame rate like 30 or 30000/1001")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"frame rate {text} must be positive")
    return value


def add_protection_options(parser: argparse.ArgumentParser, raw_input: bool = False) -> None:
    """The protection and encoding options, shared by ``protect`` and ``batch`` so that both
    take the same ones. ``raw_input``: ``--pix-fmt`` may also describe raw frames on stdin
    (``protect``), and ``--output-pix-fmt`` exists."""
    parser.add_argument("--vf", default="vdf", metavar="GRAPH",
                        help='filter graph, ffmpeg-like: "name=opt=value:opt=value,name2" '
                             "(default: vdf, the protection; list filters with "
                             "`vdf-stream filters`)")
    parser.add_argument("--strength", choices=("low", "medium", "high"), default=None,
                        help="how strong the protection is, by how visible: low (invisible, "
                             "next to no effect), medium (the default: looks the same after "
                             "H.264 CRF 23, video JOD 9.6), high (some viewers see it, JOD "
                             "9.1); see docs/visibility.md")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the vdf filter's random transformations (default 0): "
                             "the same seed gives the same output")
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="where frames are processed: auto (a CUDA GPU when present), "
                             "cpu, cuda, cuda:1 (default: auto)")
    encode = parser.add_argument_group("encoding (file output)")
    encode.add_argument("--codec", default="libx264",
                        help="video encoder: libx264 (default), libx265, h264_nvenc, "
                             "hevc_nvenc (NVIDIA; libx264 is used when unavailable), ffv1...")
    encode.add_argument("--crf", type=float, default=18.0,
                        help="quality, lower is better (x264/x265 CRF, NVENC CQ; default 18)")
    encode.add_argument("--preset", default="medium",
                        help="speed/size trade-off: ultrafast ... medium ... veryslow "
                             "(default medium)")
    if raw_input:
        encode.add_argument("--pix-fmt", dest="pix_fmt", metavar="FMT",
                            help="pixel format of the output (default yuv420p); with --size "
                                 "it describes raw frames on stdin instead (rgb24, bgr24, "
                                 "yuv420p)")
        encode.add_argument("--output-pix-fmt", dest="output_pix_fmt", metavar="FMT",
                            help="pixel format of the output when --pix-fmt describes raw "
                                 "input")
    else:
        encode.add_argument("--pix-fmt", dest="pix_fmt", metavar="FMT",
                            help="pixel format of the output (default yuv420p)")
    encode.add_argument("--no-audio", action="store_true",
                        help="drop audio and subtitle streams instead of copying them")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vdf-stream",
        description=DESCRIPTION,
        epilog=EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vdf-stream {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    protect = commands.add_parser(
        "protect",
        help="protect a video file or a piped stream",
        description="Decode INPUT, run it through the filter graph, encode it to OUTPUT. "
                    "Every frame is kept, in order, with its timestamp; audio and subtitle "
                    "streams are copied without re-encoding.",
        epilog=EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    protect.add_argument("input", metavar="INPUT",
                         help="a video file, or - to read y4m / NUT (detected) or raw frames "
                              "from stdin")
    protect.add_argument("-o", "--output", metavar="OUTPUT",
                         help="output file (container chosen by its extension), or - for "
                              "stdout; default: INPUT_protected with the same extension")
    protect.add_argument("-y", "--overwrite", action="store_true",
                         help="overwrite OUTPUT if it exists")
    add_protection_options(protect, raw_input=True)
    pipes = protect.add_argument_group("pipes")
    pipes.add_argument("-f", "--format", dest="format", metavar="FORMAT",
                       help="with -o -: y4m (default), nut (keeps timestamps) or rawvideo; "
                            "with a file: force the container (mp4, matroska, mov, nut...)")
    pipes.add_argument("--size", type=_size, metavar="WxH",
                       help="raw frames on stdin: their size (needs --fps and --pix-fmt)")
    pipes.add_argument("--fps", type=_rate, metavar="N/D",
                       help="raw frames on stdin: their frame rate, e.g. 30 or 30000/1001")
    tuning = protect.add_argument_group("engine")
    tuning.add_argument("--batch-size", type=int, default=1, metavar="N",
                        help="frames filtered together when available (default 1)")
    tuning.add_argument("--queue-size", type=int, default=8, metavar="N",
                        help="frames buffered between stages (default 8)")
    tuning.add_argument("--threads", type=int, default=0, metavar="N",
                        help="decoder threads (default 0: automatic)")
    tuning.add_argument("--torch-threads", type=int, default=0, metavar="N",
                        help="threads of the filters' CPU computations (default 0: half the "
                             "cores, at least 1; the decoder, the encoder and the protection's "
                             "apply thread use the rest)")
    _common(protect)

    _add_eval_parser(commands)

    from .. import batch

    batch.add_parser(commands, _common, add_protection_options)

    from .. import live

    live.add_parser(commands, _common, _size, _rate)

    filters = commands.add_parser("filters", help="list the filters and their options",
                                  description="List every filter (built-in and from other "
                                              "installed packages) with its options.")
    _common(filters)

    from . import models as models_cli

    models_cli.add_parser(commands, _common)
    return parser


EVAL_EXAMPLES = """\
examples:
  vdf-stream eval talk.mp4 talk_protected.mp4            summary table; JSON next to the protected file
  vdf-stream eval talk.mp4 talk_protected.mp4 --frames 60 --stride 5 --robustness
  vdf-stream eval talk.mp4 talk_protected.mp4 --report eval-report/   HTML page and JSON in a folder

what is compared:
  efficacy             face pipeline on PROTECTED against the face pipeline on ORIGINAL
  robustness efficacy  on D(PROTECTED) against D(ORIGINAL), for each degradation D
  robustness floor     on D(ORIGINAL) against ORIGINAL: what D does without protection
"""


def _add_eval_parser(commands) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="measure how visible a protection is and how well it works",
        description="Pair the frames of ORIGINAL and PROTECTED by index and measure:\n"
                    "- visibility first: ColorVideoVDP's JOD (10 = no visible difference; one\n"
                    "  JOD lower = 75% of viewers pick the original), on the whole video at its\n"
                    "  own size and on a run of frames at full screen, beside the codec floor\n"
                    "  (ORIGINAL re-encoded with PROTECTED's encoder settings);\n"
                    "- fidelity (secondary): PSNR, SSIM, max |delta|, temporal flicker;\n"
                    "- efficacy against the face pipeline: landmark NME, head-pose error,\n"
                    "  parse flip, detection loss, face presence.\n"
                    "Frame counts and sizes must agree; timestamps are compared.",
        epilog=EVAL_EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("original", metavar="ORIGINAL", help="the unprotected video file")
    evaluate.add_argument("protected", metavar="PROTECTED",
                          help="the protected video file (as published: already encoded)")
    evaluate.add_argument("--frames", type=int, metavar="N",
                          help="evaluate at most N frames (default: all)")
    evaluate.add_argument("--stride", type=int, default=1, metavar="S",
                          help="evaluate every S-th frame: 0, S, 2S... (default 1)")
    evaluate.add_argument("--robustness", action="store_true",
                          help="also measure efficacy after H.264 CRF 18/23/28/35, scaling by "
                               "0.5 and 0.75 and back, JPEG 90/75/50, Gaussian blur 0.5/1.0, "
                               "median 3x3 and a bilateral denoiser, each beside its floor")
    evaluate.add_argument("--report", metavar="DIR",
                          help="write an HTML report (index.html) and eval.json into DIR")
    evaluate.add_argument("--json", dest="json_path", metavar="PATH",
                          help="where to write the JSON result, - for stdout instead of "
                               "the table (default: PROTECTED with the extension .eval.json; "
                               "with --report it is also written to DIR/eval.json)")
    evaluate.add_argument("--device", default="auto", metavar="DEVICE",
                          help="where the face pipeline runs: auto (a CUDA GPU when present), "
                               "cpu, cuda (default: auto)")
    evaluate.add_argument("--parser", default="auto", choices=("auto", "bisenet", "selfie+mesh"),
                          help="face parser of parse flip: BiSeNet when its checkpoint was "
                               "added, else selfie segmentation inside the mesh's face oval "
                               "(default: auto)")
    evaluate.add_argument("--allow-length-mismatch", action="store_true",
                          help="evaluate the common frames of videos of different lengths "
                               "instead of stopping with an error")
    evaluate.add_argument("--transfer", action="store_true",
                          help="also read both videos with face readers of other families, "
                               "each with its own detection (MTCNN: 5-point NME and faces "
                               "lost; face-api: 68-point NME), beside the floor of H.264 "
                               "CRF 23 alone")
    evaluate.add_argument("--no-visibility", dest="visibility", action="store_false",
                          help="skip ColorVideoVDP (the slowest part of eval: about 0.6 s "
                               "per frame at 640x360 on 2 CPU cores, protected and floor)")
    evaluate.add_argument("--visibility-stride", type=int, default=1, metavar="S",
                          help="for long videos: measure visibility on one run of a quarter "
                               "second of consecutive frames (so flicker is still seen) every "
                               "S such runs (default 1: every frame)")
    evaluate.add_argument("--full-screen-frames", type=int, default=12, metavar="N",
                          help="consecutive frames from the middle of the video measured "
                               "upscaled to full screen, 1080 lines (about 10 s per frame on "
                               "2 CPU cores; 0: skip; default 12)")
    evaluate.add_argument("--floor-crf", type=float, metavar="CRF",
                          help="CRF of the codec floor, the original re-encoded with libx264 "
                               "(default: read from PROTECTED's encoder settings, else 23)")
    _common(evaluate)


def default_eval_json(protected: str) -> str:
    root, _ = os.path.splitext(protected)
    return f"{root}.eval.json"


def run_eval(args) -> int:
    from pathlib import Path

    from ..evaluation.evaluate import EvalOptions, evaluate, format_table, write_json

    options = EvalOptions(frames=args.frames, stride=args.stride, robustness=args.robustness,
                          device=args.device, parser=args.parser,
                          allow_length_mismatch=args.allow_length_mismatch,
                          transfer=args.transfer, visibility=args.visibility,
                          visibility_stride=args.visibility_stride,
                          full_screen_frames=args.full_screen_frames, floor_crf=args.floor_crf)
    options.validate()
    write_report = None
    if args.report:
        from ..evaluation.report import write_report
    show = not args.quiet
    bar = None
    bars = []
    progress = set_total = visibility_progress = None
    if show and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=None, unit="frame", file=sys.stderr, desc="eval", dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}]")
        progress = bar.update

        bars.append(bar)

        def set_total(total: int) -> None:
            bar.total = total
            bar.refresh()

        def visibility_progress(amount: float) -> None:
            if len(bars) == 1:  # the face readings are done: a bar of its own
                bars[0].close()
                bars.append(tqdm(total=None, unit="frame", file=sys.stderr,
                                 desc="visibility (protected, then codec floor)",
                                 dynamic_ncols=True))
            bars[-1].update(amount)
    try:
        result, views = evaluate(args.original, args.protected, options, progress=progress,
                                 with_views=write_report is not None, set_total=set_total,
                                 visibility_progress=visibility_progress)
    finally:
        for item in bars:
            item.close()
    json_paths = [args.json_path] if args.json_path else []
    if args.report:
        json_paths.append(str(Path(args.report) / "eval.json"))
    if not json_paths:
        json_paths.append(default_eval_json(args.protected))
    for json_path in json_paths:
        if json_path == "-":
            import json

            print(json.dumps(result, indent=2))
        else:
            write_json(result, json_path)
    written = [path for path in json_paths if path != "-"]
    if args.report:
        from ..errors import OutputError

        try:
            page = write_report(result, views, Path(args.report))
        except OSError as error:
            raise OutputError(f"cannot write the report into {args.report}: "
                              f"{error.strerror or error}") from None
    if "-" not in json_paths:
        print(format_table(result))
    if show and (written or args.report):
        print("wrote " + " and ".join(written + ([str(page)] if args.report else [])),
              file=sys.stderr)
    return EXIT_OK


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar and no summary on stderr")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")


def default_output(input_path: str) -> str:
    root, extension = os.path.splitext(input_path)
    return f"{root}_protected{extension or '.mp4'}"


def run_filters_command(args) -> int:
    from ..pipeline.filter import available_filters, describe_option, load_filter_class, option_fields

    for name in available_filters():
        try:
            cls = load_filter_class(name)
        except VdfError as error:
            print(f"{name}\n    (cannot be loaded: {error})")
            continue
        print(f"{name}: {cls.description}")
        print(f"    formats: {', '.join(cls.formats)}")
        fields = option_fields(cls.Options)
        if not fields:
            print("    options: none")
        for field in fields:
            print(f"    {describe_option(field, cls.Options)}")
    return EXIT_OK


def apply_protection_options(filters, vf: str | None, strength: str | None,
                             seed: int | None) -> None:
    """--strength and --seed set those options of every vdf filter of the graph (an option
    written in the graph itself, e.g. ``vdf=strength=high``, wins)."""
    for item in filters:
        if item.name != "vdf":
            continue
        given = set()
        for spec in (vf or "").split(","):
            name, _, rest = spec.partition("=")
            if name.strip() == "vdf":
                given |= {part.partition("=")[0].strip() for part in rest.split(":") if part}
        if strength is not None and "strength" not in given:
            item.options.strength = strength
        if seed is not None and "seed" not in given:
            item.options.seed = seed
        try:
            item.options.validate()
        except ValueError as error:
            raise UsageError(f"vdf: {error}") from None


def run_protect(args) -> int:
    from ..pipeline.engine import Engine, resolve_device, torch_threads
    from ..pipeline.filter import build_filters
    from ..media.sinks import EncodeOptions, open_sink
    from ..media.sources import RawFormat, open_source

    if args.batch_size < 1 or args.queue_size < 1:
        raise UsageError("--batch-size and --queue-size must be at least 1")
    if args.torch_threads < 0:
        raise UsageError("--torch-threads must be 0 (automatic) or more")
    raw = None
    raw_given = [args.size is not None, args.fps is not None]
    if any(raw_given):
        if not all(raw_given) or not args.pix_fmt:
            raise UsageError("raw frames on stdin need all of --size WxH, --fps N/D and "
                             "--pix-fmt (rgb24, bgr24 or yuv420p)")
        if args.input != "-":
            raise UsageError("--size/--fps describe raw frames on stdin; use them with INPUT -")
        raw = RawFormat(args.size[0], args.size[1], args.fps, args.pix_fmt)
    output = args.output
    if output is None:
        if args.input == "-":
            output = "-"
        else:
            output = default_output(args.input)
    if output != "-" and os.path.exists(output) and not args.overwrite:
        if args.input != "-" and os.path.realpath(output) == os.path.realpath(args.input):
            from ..errors import OutputError

            raise OutputError(f"{output}: the output is the input; choose another name")
        from ..errors import OutputError

        raise OutputError(f"{output} exists; use -y to overwrite it")
    if output == "-" and args.format is None:
        stdout_format = "y4m"
    else:
        stdout_format = args.format or "y4m"
    if raw is not None:
        out_pix_fmt = args.output_pix_fmt or (
            raw.pix_fmt if (output == "-" and stdout_format == "rawvideo") else None)
    else:
        out_pix_fmt = args.output_pix_fmt or args.pix_fmt
    device = resolve_device(args.device)
    import torch

    torch.set_num_threads(torch_threads(args.torch_threads))
    filters = build_filters(args.vf)
    apply_protection_options(filters, args.vf, args.strength, args.seed)
    show = not args.quiet
    for item in filters:  # -q also silences the filters' own closing lines (vdf's summary)
        if args.quiet and hasattr(item.options, "quiet"):
            item.options.quiet = True
    warn = (lambda message: print(message, file=sys.stderr)) if show else (lambda m: None)
    if show and not any(getattr(f, "protects", False) for f in filters):
        print(f"note: the filter graph {args.vf!r} contains no protection filter; "
              "frames are not protected", file=sys.stderr)

    options = EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset,
                            pix_fmt=out_pix_fmt, copy_audio=not args.no_audio)
    source = open_source(args.input, raw=raw, threads=args.threads)
    bar = None
    try:
        def sink_factory(info):
            return open_sink(output, info, options, stdout_format=stdout_format,
                             copy_from=source.copy_streams() if not args.no_audio else [],
                             input_spec=args.input,
                             container_format=args.format if output != "-" else None,
                             warn=warn)

        progress = None
        if show and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=source.info.frame_count, unit="frame", file=sys.stderr,
                       desc="protect", dynamic_ncols=True)
            progress = bar.update
        try:
            engine = Engine(source, filters, sink_factory, device=device,
                            batch_size=args.batch_size, queue_size=args.queue_size,
                            progress=progress, copy_streams=not args.no_audio)
        except KeyboardInterrupt:  # while the filters load: the output is not opened yet
            raise Interrupted("interrupted before the first frame; nothing was written") from None
        try:
            stats = engine.run()
        finally:
            if bar is not None:
                bar.close()
    finally:
        source.close()
    if stats.reader_closed:
        return EXIT_OK
    if show:
        errors = f", {stats.decode_errors} undecodable packets skipped" if stats.decode_errors else ""
        print(f"{stats.output} in {stats.seconds:.1f} s ({stats.fps:.1f} fps){errors}",
              file=sys.stderr)
    return EXIT_OK


def _quiet_stdout() -> None:
    """After the reader of stdout went away: stop Python complaining when it flushes."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _terminate(signum, frame):
    raise KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not in the main thread (embedded use)
        pass
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        if args.command == "protect":
            return run_protect(args)
        if args.command == "filters":
            return run_filters_command(args)
        if args.command == "eval":
            return run_eval(args)
        if args.command == "batch":
            from .. import batch

            return batch.run_command(args)
        if args.command == "live":
            from .. import live

            return live.run_command(args)
        if args.command == "models":
            from . import models as models_cli

            return models_cli.run(args)
        raise UsageError(f"unknown command {args.command!r}")
    except ReaderClosed:
        _quiet_stdout()
        return EXIT_OK
    except Interrupted as stop:
        print(f"vdf-stream: {stop or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("vdf-stream: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except VdfError as error:
        if debug:
            traceback.print_exc()
        print(f"vdf-stream: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_OK
    except Exception as error:  # a bug: one line, the traceback with --debug
        if debug:
            traceback.print_exc()
        print(f"vdf-stream: internal error: {type(error).__name__}: {error} "
              "(run again with --debug and report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
