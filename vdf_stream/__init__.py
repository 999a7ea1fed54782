"""vdf-stream: protect portrait video against personalised 3-D talking-face deepfakes."""

__version__ = "0.1.0"
