"""The ``vdf-stream`` command: the top parser, the dispatch to each command's module, and the
one place where errors become one line on stderr and an exit code."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback

from .. import __version__
from ..errors import (EXIT_CODES_HELP, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, Interrupted,
                      ReaderClosed, UsageError, VdfError)
from . import batch, filters, live, models, protect
from . import eval as eval_command  # "eval" would hide the built-in
from .common import EXAMPLES, Parser, add_common_options

DESCRIPTION = """\
vdf-stream protects portrait video against personalised 3-D talking-face deepfakes
(ER-NeRF, GeneFace, SyncTalk, TalkingGaussian...). It adds a small, bounded
change, made to look the same once the video is published, that makes the face
readers those generators depend on read the face wrongly. It works as a streaming
filter: files, ffmpeg pipes, and live video."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vdf-stream",
        description=DESCRIPTION,
        epilog=EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vdf-stream {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    protect.add_parser(commands)
    eval_command.add_parser(commands)
    batch.add_parser(commands)
    live.add_parser(commands)
    filters.add_parser(commands)
    models.add_parser(commands, add_common_options)
    return parser


def _run(args) -> int:
    """Carry out the parsed command; return its exit code (errors are raised)."""
    if args.command == "protect":
        return protect.run_protect(args)
    if args.command == "filters":
        return filters.run_filters_command(args)
    if args.command == "eval":
        return eval_command.run_eval(args)
    if args.command == "batch":
        return batch.run_command(args)
    if args.command == "live":
        return live.run_command(args)
    if args.command == "models":
        return models.run(args)
    raise UsageError(f"unknown command {args.command!r}")


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
        return _run(args)
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
