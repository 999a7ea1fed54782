"""The graph syntax, typed options, the registry and the `filters` / `--help` commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import torch

from vdf_stream.pipeline import filter as filter_module
from vdf_stream.pipeline.engine import Graph
from vdf_stream.errors import UsageError
from vdf_stream.pipeline.filter import Filter, build_filters, parse_graph, parse_options
from vdf_stream.media.frames import Frames, VideoInfo

from helpers import run_cli


@dataclass
class _Options:
    level: int = field(default=3, metadata={"help": "how much"})
    gain: float = 1.0
    mode: Literal["fast", "slow"] = "fast"
    label: str = ""
    enabled: bool = True

    def validate(self):
        if self.level < 0:
            raise ValueError("level must be >= 0")


class _Dummy(Filter):
    name = "dummy"
    description = "for tests"
    Options = _Options


def test_graph_is_split_on_commas_with_escapes():
    specs = parse_graph(r"scale=w=320:h=-2, jpeg=quality=75 ,null,dummy=label=a\,b\:c")
    assert [s.name for s in specs] == ["scale", "jpeg", "null", "dummy"]
    assert specs[0].arguments == "w=320:h=-2" and specs[2].arguments is None
    options = parse_options(_Dummy, specs[3].arguments)
    assert options.label == "a,b:c"


def test_typed_options_named_and_positional():
    options = parse_options(_Dummy, "5:0.5:mode=slow:enabled=off")
    assert (options.level, options.gain, options.mode, options.enabled) == (5, 0.5, "slow", False)
    assert parse_options(_Dummy, "gain=8/255").gain == pytest.approx(8 / 255)


@pytest.mark.parametrize("text, message", [
    ("levl=3", "unknown option 'levl'; options: level, gain, mode, label, enabled"),
    ("level=three", "not a valid int"),
    ("mode=medium", "not one of fast, slow"),
    ("level=1:level=2", "given twice"),
    ("1:2:fast:x:yes:6", "too many values"),
    ("level=-1", "level must be >= 0"),
])
def test_bad_options_are_usage_errors(text, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_options(_Dummy, text)


def test_empty_graph_and_unknown_filter():
    with pytest.raises(UsageError, match="empty"):
        parse_graph("  ")
    with pytest.raises(UsageError, match="empty filter"):
        parse_graph("null,,null")
    with pytest.raises(UsageError, match="available filters: .*null"):
        build_filters("nonexistent")


def test_third_party_filter_registered_through_an_entry_point(monkeypatch):
    class _EntryPoint:
        name = "dummy"
        value = f"{__name__}:_Dummy"

    monkeypatch.setattr(filter_module.metadata, "entry_points",
                        lambda group: [_EntryPoint()] if group == "vdf_stream.filters" else [])
    filters = build_filters("null,dummy=level=7")
    assert isinstance(filters[1], _Dummy) and filters[1].options.level == 7


def test_negotiation_keeps_i420_for_null_and_converts_for_rgb_filters():
    info = VideoInfo(64, 48, time_base=1)
    graph = Graph(build_filters("null,gaussian_blur=sigma=1,null"))
    graph.negotiate(info, torch.device("cpu"), "yuv420p")
    assert graph.input_formats == ["yuv420p", "rgbf32", "rgbf32"]
    frames = Frames(torch.full((2, 1, 72, 64), 128, dtype=torch.uint8), "yuv420p", [0, 1],
                    [0, 1], 1)
    out = graph.process(frames, info)
    assert out.format == "rgbf32" and out.data.shape == (2, 3, 48, 64)


def test_filters_command_lists_every_filter_with_options():
    result = run_cli("filters")
    assert result.returncode == 0
    text = result.stdout.decode()
    for name in ("null", "scale", "jpeg", "gaussian_blur", "median"):
        assert f"\n{name}: " in "\n" + text
    assert "quality=75  (int) JPEG quality" in text
    # defaults as a user would type them, and every line fits in 100 columns
    assert "eps=8/255  (float)" in text and "share=on  (bool)" in text
    assert "0.0313" not in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_help_and_version_are_for_newcomers():
    result = run_cli("--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "deepfake" in text and "exit codes" in text and "protect" in text
    result = run_cli("protect", "--help")
    assert result.returncode == 0
    for flag in ("--vf", "--crf", "--preset", "--pix-fmt", "--no-audio", "--size", "--fps",
                 "--device", "-f FORMAT"):
        assert flag in result.stdout.decode()
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.decode().startswith("vdf-stream ")
