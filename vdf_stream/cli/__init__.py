"""The ``vdf-stream`` command line: argparse, and nothing the library does itself.

:mod:`.main` holds the top parser and ``main`` (the console script); each command has its
module (:mod:`.protect`, :mod:`.eval`, :mod:`.batch`, :mod:`.filters`, :mod:`.models`; live
mode's arguments are in :mod:`vdf_stream.live`), and :mod:`.common` the options several
commands share. The work itself is done below: :mod:`vdf_stream.pipeline.session` for
``protect``, :mod:`vdf_stream.batch`, :mod:`vdf_stream.evaluation`.
"""
