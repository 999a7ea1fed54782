"""Typed errors and the exit codes the command line turns them into.

Every failure a user can cause (a missing file, a malformed stream, an unwritable output)
is raised as one of these, carrying a one-line message. The CLI prints that line on stderr
and exits with the class's code; nothing else is printed unless ``--debug`` is given. A
failure met once the output is open (during the run) ends its message with what is on
disk: the output finalised with the frames written, or nothing written and no file left.

Exit codes (also listed in ``vdf-stream --help``):

==== ============================================================================
code meaning
==== ============================================================================
0    success, or the reader of stdout closed the pipe early (quiet exit)
1    internal error (a bug: please report it with the output of ``--debug``)
2    usage error: bad arguments, unknown filter or option
3    input error: missing, unreadable, not a video, malformed header
4    output error: unwritable path, output equal to input, encoder unavailable,
     or a write that failed part-way
5    damaged input: the stream was corrupt or truncated part-way; what could be
     decoded was written and the output finalised (no file is left when no frame
     could be)
6    asset error: a model or clip could not be fetched or failed its checksum
130  interrupted (Ctrl-C); the frames written so far are finalised and playable,
     copied audio cut where they end (no file is left when none were)
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
  4    output error: unwritable path, output equal to input, encoder unavailable,
       or a write that failed part-way
  5    damaged input: corrupt or truncated part-way; what could be decoded is written
       and finalised (no file is left when nothing could be)
  6    asset error: a model or clip could not be fetched or failed its checksum
  130  interrupted (Ctrl-C); the frames written so far are finalised and playable
       (no file is left when none were)"""


class VdfError(Exception):
    """Base class: a failure with a one-line message and an exit code.

    ``on_disk``, set when the failure came during a run, says what the run left on disk
    ("out.mp4 is finalised with 22 frames"); it is said after the message. A caller that
    changes what is on disk afterwards (removes a partial file) sets it anew."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, on_disk: str | None = None):
        super().__init__(message)
        self.message = message
        self.on_disk = on_disk

    def __str__(self) -> str:
        return f"{self.message}; {self.on_disk}" if self.on_disk else self.message


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


class InternalError(VdfError):
    """A bug met during a run, caught so that the message can still say what is on disk."""

    exit_code = EXIT_INTERNAL


class FormatMismatchError(VdfError):
    """A frame does not match the format the stream was negotiated with."""

    exit_code = EXIT_INPUT


class ReaderClosed(Exception):
    """The process reading our stdout went away; the run stops quietly."""


class Interrupted(Exception):
    """The run was interrupted (Ctrl-C or a stop request)."""
