"""vdf-stream: protect portrait video against personalised 3-D talking-face deepfakes.

The engine decodes, filters and encodes video frame-exactly; see :mod:`vdf_stream.api`
for the Python entry points (:func:`protect`, :func:`iterate`) and ``vdf-stream --help``
for the command line.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "protect", "iterate"]


def __getattr__(name):
    # Imported on first use so that `import vdf_stream` stays light (no torch, no PyAV).
    if name in ("protect", "iterate"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'vdf_stream' has no attribute {name!r}")
