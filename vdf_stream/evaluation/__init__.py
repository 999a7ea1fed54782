"""``vdf-stream eval``: how visible a protection is (:mod:`.visibility`, beside the codec
floor) and what the face readers read (:mod:`.readers`, :mod:`.metrics`), after
degradations (:mod:`.degradations`); the criteria that decide the answers, defined once
(:mod:`.criteria`); :mod:`.evaluate` runs it, :mod:`.table` and :mod:`.report` show it."""
