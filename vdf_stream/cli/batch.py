"""``vdf-stream batch``: its arguments, turned into :class:`~vdf_stream.batch.BatchOptions`
and handed to :func:`vdf_stream.batch.run_batch`; the closing table goes to stdout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..batch.options import DEFAULT_RETRIES, BatchOptions, Protection, parse_duration
from ..errors import Interrupted, UsageError
from ..media.sinks import EncodeOptions
from .common import add_batch_size_option, add_common_options, add_protection_options

BATCH_EXIT_CODES_HELP = """\
exit codes:
  0    every item is done (now or by an earlier run with the same settings)
  2    usage error: bad arguments, unknown filter, Ray missing or unreachable
  3    input error: INPUT missing, or no video in it
  4    output error: OUTPUT_DIR unwritable, equal to INPUT, or in use by another batch
  5    some items failed (the summary and the manifest say why); the others are done
  130  interrupted (Ctrl-C): finished items are kept, run the same command to resume"""


BATCH_EXAMPLES = """\
examples:
  vdf-stream batch videos/ -o protected/                 every video under videos/, local Ray
  vdf-stream batch list.txt -o protected/ --workers 4    the videos named in list.txt
  vdf-stream batch videos/ -o protected/ --split-long 10m --report
  vdf-stream batch /data/videos -o /data/protected --address auto --gpus-per-task 1

Outputs keep the input's relative path, name and container. Run the same command again to
resume: items done with the same settings are skipped, failed or changed ones are redone.
The manifest OUTPUT_DIR/vdf-batch.jsonl records every item's state (see docs/batch.md).
"""


def add_parser(commands) -> None:
    parser = commands.add_parser(
        "batch",
        help="protect a folder or a list of videos, spread over Ray (resumable)",
        description="Protect every video of INPUT (a folder, searched recursively, or a "
                    "text file\nlisting one path per line) into OUTPUT_DIR, as `protect` "
                    "would, in parallel\non Ray: a local Ray on this machine by default, "
                    "a cluster with --address.\nLong videos are cut at keyframes into "
                    "segments protected in parallel and\njoined without re-encoding.",
        epilog=BATCH_EXAMPLES + "\n" + BATCH_EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT",
                        help="a folder of videos (searched recursively; hidden files are "
                             "passed over), a text file listing one video path per line, or "
                             "one video")
    parser.add_argument("-o", "--output", metavar="OUTPUT_DIR", required=True,
                        help="where the protected videos go, at the same relative paths "
                             "(created if missing; may lie inside INPUT: it is then not "
                             "searched)")
    parser.add_argument("-y", "--overwrite", action="store_true",
                        help="replace outputs that exist but were not made by this batch "
                             "(its own are always replaced when redone)")
    add_protection_options(parser)
    cluster = parser.add_argument_group("distribution (Ray)")
    cluster.add_argument("--address", metavar="ADDRESS",
                         help="the Ray cluster: auto (the cluster this machine belongs to) "
                              "or ray://HOST:PORT; default: a local Ray on this machine, "
                              "started and stopped by the command")
    cluster.add_argument("--workers", type=int, metavar="N",
                         help="most videos or segments protected at once (default: one per "
                              "CPU core, or one per GPU share with --gpus-per-task)")
    cluster.add_argument("--gpus-per-task", dest="gpus_per_task", type=float, metavar="G",
                         help="GPUs each worker uses, e.g. 1 or 0.5 (default: 1 when the "
                              "cluster has GPUs and --device is not cpu, else 0)")
    cluster.add_argument("--split-long", dest="split_long", default="300s",
                         metavar="DURATION",
                         help="cut videos longer than DURATION into segments about that "
                              "long, at keyframes, protected in parallel (default 300s; "
                              "e.g. 90s, 10m; 0 = never)")
    cluster.add_argument("--retries", type=int, default=DEFAULT_RETRIES, metavar="N",
                         help="reruns of a video or segment whose worker was lost (default "
                              f"{DEFAULT_RETRIES}); an unreadable input is never retried")
    checks = parser.add_argument_group("measuring")
    checks.add_argument("--report", action="store_true",
                        help="evaluate every output against its input (as `vdf-stream "
                             "eval`): NAME.eval.json beside it, figures in the manifest and "
                             "the summary")
    checks.add_argument("--report-stride", dest="report_stride", type=int, default=1,
                        metavar="S", help="with --report, evaluate every S-th frame "
                                          "(default 1)")
    add_batch_size_option(parser)
    add_common_options(parser)


def options_from_args(args) -> BatchOptions:
    try:
        split = parse_duration(args.split_long)
    except ValueError as error:
        raise UsageError(f"--split-long: {error}") from None
    encode = EncodeOptions(codec=args.codec, crf=args.crf, preset=args.preset,
                           pix_fmt=args.pix_fmt, copy_audio=not args.no_audio)
    protection = Protection(vf=args.vf, strength=args.strength, seed=args.seed,
                            against=args.against, encode=encode)
    return BatchOptions(output=Path(args.output), protection=protection,
                        split_seconds=split or None, address=args.address,
                        workers=args.workers, gpus_per_task=args.gpus_per_task,
                        retries=args.retries, report=args.report,
                        report_stride=args.report_stride, overwrite=args.overwrite,
                        device=args.device, batch_size=args.batch_size)


def run_command(args) -> int:
    """``vdf-stream batch``: the summary table goes to stdout, progress and per-item lines
    to stderr (not with -q)."""
    from ..batch.cluster import import_ray
    from ..batch.driver import run_batch
    from ..batch.summary import format_summary

    options = options_from_args(args)
    show = not args.quiet
    import_ray()  # say at once when Ray is missing
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if show else None
    result = run_batch(args.input, options, log=log, show_progress=show,
                       ray_messages=args.debug)
    print(format_summary(result, options.report), flush=True)
    if show:
        if result.ignored:
            print(f"passed over {len(result.ignored)} files that are not videos by their "
                  "extension", file=sys.stderr)
        print(f"manifest: {result.manifest}", file=sys.stderr)
    if result.interrupted:
        raise Interrupted("interrupted; finished items are kept, run the same command again "
                          "to resume")
    return result.exit_code
