"""Built-in filters, one self-contained module each (installed as ``vdf_stream.filters``).

Each module declares one :class:`vdf_stream.pipeline.filter.Filter` subclass; the entry-point group
``vdf_stream.filters`` in pyproject.toml registers it under its name.
"""
