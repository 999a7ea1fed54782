"""Frames in and out: decoded frames and their description (:mod:`.frames`), colour
conversion (:mod:`.colour`), shared pixel operations (:mod:`.pixels`), sources (files, pipes,
raw frames: :mod:`.sources`, :mod:`.y4m`, :mod:`.segments`), sinks (:mod:`.sinks`), and live
mode's cameras and outputs (:mod:`.capture`, :mod:`.outputs`). Nothing here knows about faces
or protection."""
