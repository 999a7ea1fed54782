"""``vdf-stream batch``: protect a whole library of videos, spread over Ray.

One process is not enough for thousands of clips or hours-long recordings, so the work is
handed to Ray, an existing distributed engine: a local Ray on this machine by default, or a
running cluster (``--address auto`` or ``ray://host:port``). Nothing here schedules, retries
after a crash or moves work between machines by itself; Ray does.

The pieces:

* **items**: every video under ``INPUT_DIR`` (or named in a list file) becomes one output at
  the same relative path under ``OUTPUT_DIR``;
* **units**: an item is protected as one Ray task, or, when it is longer than
  ``--split-long``, as one task per segment (:mod:`vdf_stream.media.segments`) followed by a join
  task that stream-copies the segments and the source's audio into the output;
* **the manifest** ``OUTPUT_DIR/vdf-batch.jsonl``: one JSON object per state change of an
  item (running, done, failed, interrupted), with the hash of the settings that made it, the
  output's SHA-256, its frame count, speed and, with ``--report``, its eval figures. A new
  run reads it back and skips every item that is done with the same settings and whose
  output still has the recorded checksum; everything else is redone;
* **atomic outputs**: a unit writes under a hidden temporary name (``.NAME.partial.EXT``)
  and renames it when the file is complete, so a crash, a killed worker or Ctrl-C never
  leaves a file that looks done;
* **failures stay in their item**: a worker lost mid-task is retried by Ray (``max_retries``),
  an input that cannot be decoded fails at once (retrying would fail the same way); either
  way the item is recorded as failed and the others go on.

Paths must be readable and writable at the same place on every machine of a cluster (a
shared file system), and vdf-stream must be installed there.

The rooms: :mod:`.options` (what is asked), :mod:`.plan` (items and their fate),
:mod:`.manifest`, :mod:`.tasks` (what runs on the workers, through the same session as
``vdf-stream protect``), :mod:`.cluster` (Ray), :mod:`.driver` (the run),
:mod:`.summary` (the closing table). The command's arguments are in
:mod:`vdf_stream.cli.batch`.
"""


from .driver import BatchResult, run_batch
from .options import BatchOptions, Protection

__all__ = ["BatchOptions", "BatchResult", "Protection", "run_batch"]
