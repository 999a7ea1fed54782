"""``vdf-stream protect``: its arguments, checked and handed to the session builder
(:mod:`vdf_stream.pipeline.session`), with a progress bar and a closing line."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import EXIT_CODES_HELP, EXIT_OK, UsageError
from .common import (EXAMPLES, add_batch_size_option, add_common_options,
                     add_protection_options, parse_rate, parse_size)


def add_parser(commands) -> None:
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
    pipes.add_argument("--size", type=parse_size, metavar="WxH",
                       help="raw frames on stdin: their size (needs --fps and --pix-fmt)")
    pipes.add_argument("--fps", type=parse_rate, metavar="N/D",
                       help="raw frames on stdin: their frame rate, e.g. 30 or 30000/1001")
    tuning = add_batch_size_option(protect)
    tuning.add_argument("--queue-size", type=int, default=8, metavar="N",
                        help="frames buffered between stages (default 8)")
    tuning.add_argument("--threads", type=int, default=0, metavar="N",
                        help="decoder threads (default 0: automatic)")
    tuning.add_argument("--torch-threads", type=int, default=0, metavar="N",
                        help="threads of the filters' CPU computations (default 0: half the "
                             "cores, at least 1; the decoder, the encoder and the protection's "
                             "apply thread use the rest)")
    add_common_options(protect)


def default_output(input_path: str) -> str:
    root, extension = os.path.splitext(input_path)
    return f"{root}_protected{extension or '.mp4'}"


def run_protect(args) -> int:
    from ..media.sinks import EncodeOptions
    from ..media.sources import RawFormat
    from ..pipeline.session import Session, SessionSpec

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
    options = EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset,
                            pix_fmt=out_pix_fmt, copy_audio=not args.no_audio)
    show = not args.quiet
    warn = (lambda message: print(message, file=sys.stderr)) if show else (lambda m: None)
    session = Session(SessionSpec(
        input=args.input, output=output, vf=args.vf, strength=args.strength, seed=args.seed,
        against=args.against, device=args.device, encode=options, stdout_format=stdout_format,
        container_format=args.format, raw=raw, decoder_threads=args.threads,
        torch_threads=args.torch_threads, batch_size=args.batch_size,
        queue_size=args.queue_size), warn=warn)
    if args.quiet:  # -q also silences the filters' own closing lines (vdf's summary)
        for item in session.filters:
            if hasattr(item.options, "quiet"):
                item.options.quiet = True
    if show and not session.protects:
        print(f"note: the filter graph {args.vf!r} contains no protection filter; "
              "frames are not protected", file=sys.stderr)

    bar = None
    with session:
        progress = None
        if show and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=session.source.info.frame_count, unit="frame", file=sys.stderr,
                       desc="protect", dynamic_ncols=True)
            progress = bar.update
        try:
            stats = session.run(progress)
        finally:
            if bar is not None:
                bar.close()
    if stats.reader_closed:
        return EXIT_OK
    if show:
        errors = f", {stats.decode_errors} undecodable packets skipped" if stats.decode_errors else ""
        print(f"{stats.output} in {stats.seconds:.1f} s ({stats.fps:.1f} fps){errors}",
              file=sys.stderr)
    return EXIT_OK
