"""The session builder: one way from source to sink for the Python API, ``vdf-stream
protect`` and ``vdf-stream batch``, so that the same input and seed give the same frames."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from helpers import cut_clip, run_cli
from vdf_stream.errors import UsageError
from vdf_stream.pipeline.engine import torch_threads
from vdf_stream.pipeline.session import build_graph

GRAPH = "vdf=steps=3"  # the protection, with few optimiser steps: seconds per run on a CPU
SEED = 3


def _vdf(filters):
    (found,) = [item for item in filters if item.name == "vdf"]
    return found.options


def test_strength_and_seed_fill_what_the_graph_leaves_unset():
    options = _vdf(build_graph("vdf", strength="high", seed=5))
    assert (options.strength, options.seed) == ("high", 5)
    options = _vdf(build_graph("vdf=seed=2:strength=low", strength="high", seed=5))
    assert (options.strength, options.seed) == ("low", 2)  # the graph's own text wins
    options = _vdf(build_graph("vdf=high", seed=5))  # a positional value counts as given
    assert (options.strength, options.seed) == ("high", 5)
    filters = build_graph("scale=factor=1,vdf=steps=2", strength="low")
    assert [item.name for item in filters] == ["scale", "vdf"]
    assert (_vdf(filters).strength, _vdf(filters).steps, _vdf(filters).seed) == ("low", 2, 0)
    assert _vdf(build_graph("vdf")).strength == "medium"  # nothing given: the defaults
    build_graph("null", strength="high", seed=1)  # no vdf filter: nothing to set
    with pytest.raises(UsageError, match="vdf: seed must be >= 0"):
        build_graph("vdf", seed=-1)


def _frame_hashes(path: Path) -> list[str]:
    import av

    with av.open(str(path)) as container:
        return [hashlib.md5(frame.to_ndarray(format="yuv420p").tobytes()).hexdigest()
                for frame in container.decode(video=0)]


def test_api_cli_and_batch_write_the_same_frames_with_the_same_seed(tmp_path, clip):
    """Lossless FFV1 outputs, so the decoded frames are the filter's own. The API is called
    with torch set to another thread count than a run uses: it used to keep the caller's
    count, and a different count gives different frames."""
    from vdf_stream import protect
    from vdf_stream.batch import Protection
    from vdf_stream.batch.tasks import UnitSpec, execute_unit
    from vdf_stream.media.sinks import EncodeOptions

    source = cut_clip(clip("single_face.mp4"), tmp_path / "cut.mp4", frames=4)
    lossless = EncodeOptions(codec="ffv1", copy_audio=False)  # as --codec ffv1 --no-audio

    by_cli = tmp_path / "cli.mkv"
    result = run_cli("protect", source, "-o", by_cli, "--vf", GRAPH, "--seed", SEED,
                     "--codec", "ffv1", "--no-audio", "--device", "cpu", "-q")
    assert result.returncode == 0, result.stderr.decode()

    caller = torch_threads(0) + 1
    before = torch.get_num_threads()
    torch.set_num_threads(caller)
    try:
        by_api = tmp_path / "api.mkv"
        stats = protect(str(source), str(by_api), vf=GRAPH, seed=SEED, device="cpu",
                        encode=lossless)
        assert torch.get_num_threads() == caller  # the caller's count is given back
    finally:
        torch.set_num_threads(before)
    assert stats.frames_out == 4

    by_batch = tmp_path / "batch.mkv"
    unit = execute_unit(UnitSpec(
        key="cut.mp4", unit="cut.mp4", source=str(source), target=str(by_batch),
        segment=None, protection=Protection(vf=GRAPH, seed=SEED, encode=lossless),
        device="cpu", batch_size=1, threads=torch_threads(0), work=str(tmp_path / "work")))
    assert unit.ok, unit.message

    originals = _frame_hashes(source)
    cli_frames = _frame_hashes(by_cli)
    assert len(cli_frames) == 4
    assert all(a != b for a, b in zip(cli_frames, originals))  # protected, every frame
    assert _frame_hashes(by_api) == cli_frames
    assert _frame_hashes(by_batch) == cli_frames


def test_a_chain_keeps_the_protection_and_a_graph_without_it_says_so(tmp_path, clip):
    """``--vf`` replaces the default graph: ``scale=...,vdf`` downscales then protects (the
    example the help and the README show); ``scale=...`` alone writes unprotected frames and
    says so."""
    source = cut_clip(clip("single_face.mp4"), tmp_path / "cut.mp4", frames=2)
    outputs = {}
    for name, graph in (("chain", "scale=w=320:h=-2,vdf=steps=2"), ("plain", "scale=w=320:h=-2")):
        outputs[name] = tmp_path / f"{name}.mkv"
        result = run_cli("protect", source, "-o", outputs[name], "--vf", graph, "--codec",
                         "ffv1", "--no-audio", "--device", "cpu")
        assert result.returncode == 0, result.stderr.decode()
        note = "contains no protection filter; frames are not protected"
        assert (note in result.stderr.decode()) == (name == "plain")
    import av

    with av.open(str(outputs["chain"])) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (320, 180)
    assert _frame_hashes(outputs["chain"]) != _frame_hashes(outputs["plain"])
