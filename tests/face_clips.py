"""For the surrogate-model tests: frames of the real test clips, decoded once per session,
and one torch thread per test module (import the fixture into the module)."""

from __future__ import annotations

import functools

import av
import pytest
import torch

from vdf_stream import assets


@functools.lru_cache(maxsize=None)
def decode(clip: str, indices: tuple[int, ...]) -> torch.Tensor:
    """Frames ``indices`` (ascending) of a pinned clip, ``(N, 3, H, W)`` float RGB in [0, 1]."""
    wanted = set(indices)
    frames = {}
    with av.open(str(assets.fetch(clip, progress=False))) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[index] = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
            if index >= max(indices):
                break
    missing = wanted - set(frames)
    if missing:
        raise ValueError(f"{clip} has no frames {sorted(missing)}")
    return torch.stack([frames[index] for index in indices]).float() / 255


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Run a module's models on one thread: these small networks gain nothing from a second
    one, and on a shared 2-core machine two threads wait for each other (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
