"""Typed errors and the exit codes the command line turns them into.

Every failure a user can cause (a missing file, a malformed stream, an unwritable output)
is raised as one of these, carrying a one-line message. The CLI prints that line on stderr
and exits with the class's code; nothing else is printed unless ``--debug`` is given.

Exit codes (also listed in ``vdf-stream --help``):

==== ============================================================================
code meaning
==== ============================================================================
0    success, or the reader of stdout closed the pipe early (quiet exit)
1    internal error (a bug: please report it with the output of ``--debug``)
2    usage error: bad arguments, unknown filter or option
3    input error: missing, unreadable, not a video, malformed header
4    output error: unwritable path, output equal to input, encoder unavailable
5    damaged input: the stream was corrupt or truncated part-way; what could be
     decoded was processed and the output is finalised and playable
6    asset error: a model or clip could not be fetched or failed its checksum
130  interrupted (Ctrl-C); the output is finalised and playable up to that point
==== ============================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_OUTPUT = 4
EXIT_DAMAGED = 5
EXIT_ASSET = 6
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    success (also: the reader of stdout closed the pipe early)
  1    internal error (please report it, with the output of --debug)
  2    usage error: bad arguments, unknown filter or option
  3    input error: missing, unreadable, not a video, malformed header
  4    output error: unwritable path, output equal to input, encoder unavailable
  5    damaged input: corrupt or truncated part-way; output finalised up to there
  6    asset error: a model or clip could not be fetched or failed its checksum
  130  interrupted (Ctrl-C); output finalised up to that point"""


class VdfError(Exception):
    """Base class: a failure with a one-line message and an exit code."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(VdfError):
    """Bad command-line arguments, an unknown filter or an unknown option."""

    exit_code = EXIT_USAGE


class InputError(VdfError):
    """The input cannot be opened or is not a video this program can read."""

    exit_code = EXIT_INPUT


class OutputError(VdfError):
    """The output cannot be written."""

    exit_code = EXIT_OUTPUT


class DamagedInputError(VdfError):
    """The input broke part-way; everything before the damage was processed and written."""

    exit_code = EXIT_DAMAGED


class AssetError(VdfError):
    """A model or test clip could not be fetched, or did not match its checksum."""

    exit_code = EXIT_ASSET


class FormatMismatchError(VdfError):
    """A frame does not match the format the stream was negotiated with."""

    exit_code = EXIT_INPUT


class ReaderClosed(Exception):
    """The process reading our stdout went away; the run stops quietly."""


class Interrupted(Exception):
    """The run was interrupted (Ctrl-C or a stop request)."""
