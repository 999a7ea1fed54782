"""--against (a pipeline's recipe) and targets=fan / targets=bisenet when their weights are
absent: the exact lines, the asset exit code, and no output left behind."""

from __future__ import annotations

import pytest

from helpers import cut_clip, run_cli
from seeded_weights import seeded_cache
from vdf_stream.errors import AssetError
from vdf_stream.models import bisenet, fan, s3fd
from vdf_stream.protection.options import ProtectionOptions
from vdf_stream.protection.recipes import FAN_AND_S3FD_MISSING, resolve_targets


@pytest.fixture
def empty(tmp_path, monkeypatch):
    """No weights of the user's anywhere: an empty cache and an empty torch hub."""
    monkeypatch.setenv("VDF_STREAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_a_recipe_says_in_one_line_what_is_missing(empty):
    chosen, note = resolve_targets(ProtectionOptions(against="ernerf"))
    assert chosen == ["mesh"]
    assert note == ("against ernerf: protecting against mesh without FAN and BiSeNet, whose "
                    f"weights are missing. {FAN_AND_S3FD_MISSING}; {bisenet.MISSING_MESSAGE}")
    assert "\n" not in note


def test_a_recipe_takes_what_is_here(empty, monkeypatch):
    seeded_cache(empty / "cache", ("bisenet",))
    chosen, note = resolve_targets(ProtectionOptions(against="synctalk", targets="mesh+mtcnn"))
    assert chosen == ["mesh", "mtcnn", "bisenet"]
    assert note == ("against synctalk: protecting against mesh+mtcnn+bisenet without FAN, whose "
                    f"weights are missing. {FAN_AND_S3FD_MISSING}")
    seeded_cache(empty / "cache", ("fan",))
    _, note = resolve_targets(ProtectionOptions(against="ernerf"))
    assert note.endswith(f"without FAN, whose weights are missing. {s3fd.MISSING_MESSAGE}")
    seeded_cache(empty / "cache", ("s3fd",))
    assert resolve_targets(ProtectionOptions(against="ernerf")) == (
        ["mesh", "fan", "bisenet"], None)


def test_a_named_target_without_weights_is_an_asset_error(empty):
    with pytest.raises(AssetError) as raised:
        resolve_targets(ProtectionOptions(targets="mesh+fan"))
    assert str(raised.value) == f"targets=fan: {FAN_AND_S3FD_MISSING}"
    with pytest.raises(AssetError) as raised:
        resolve_targets(ProtectionOptions(targets="bisenet"))
    assert str(raised.value) == f"targets=bisenet: {bisenet.MISSING_MESSAGE}"
    seeded_cache(empty / "cache", ("s3fd",))
    with pytest.raises(AssetError) as raised:
        resolve_targets(ProtectionOptions(targets="fan"))
    assert str(raised.value) == f"targets=fan: {fan.MISSING_MESSAGE}"


def test_protect_without_the_weights_stops_before_writing(empty, clip):
    source = cut_clip(clip("single_face.mp4"), empty / "cut.mp4", frames=2)
    output = empty / "out.mp4"
    env = {"VDF_STREAM_CACHE": str(seeded_cache(empty / "cache", ())),
           "TORCH_HOME": str(empty / "torch")}
    result = run_cli("protect", source, "-o", output, "--vf", "vdf=targets=mesh+fan", env=env)
    assert result.returncode == 6
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"targets=fan: {FAN_AND_S3FD_MISSING}"), lines
    assert not output.exists()


def test_protect_against_a_pipeline_says_what_it_left_out(empty, clip):
    source = cut_clip(clip("single_face.mp4"), empty / "cut.mp4", frames=2)
    output = empty / "out.mp4"
    env = {"VDF_STREAM_CACHE": str(seeded_cache(empty / "cache", ())),
           "TORCH_HOME": str(empty / "torch")}
    result = run_cli("protect", source, "-o", output, "--vf", "vdf=steps=1:refine_steps=0",
                     "--against", "ernerf", env=env)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.decode().splitlines() if "against ernerf" in line]
    assert notes == ["note: against ernerf: protecting against mesh without FAN and BiSeNet, "
                     f"whose weights are missing. {FAN_AND_S3FD_MISSING}; "
                     f"{bisenet.MISSING_MESSAGE}"]
    assert output.is_file()


def test_the_options_name_the_recipes():
    from typing import get_args

    from vdf_stream.protection.options import RECIPES, Against

    assert get_args(Against) == ("none", *RECIPES)  # the option's values and the recipes agree
    with pytest.raises(ValueError, match="against must be one of none, ernerf"):
        ProtectionOptions(against="nerface").validate()
    result = run_cli("protect", "--help")
    assert b"--against PIPELINE" in result.stdout


@pytest.mark.slow
def test_fan_and_bisenet_end_to_end_with_seeded_weights(tmp_path, clip):
    """protect with targets=mesh+fan+bisenet on a real clip, then eval --transfer reads FAN
    and parses with BiSeNet: every frame kept, every column there."""
    import json

    from helpers import decode_all

    source = cut_clip(clip("single_face.mp4"), tmp_path / "cut.mp4", frames=2)
    output = tmp_path / "out.mp4"
    env = {"VDF_STREAM_CACHE": str(seeded_cache(tmp_path / "cache")),
           "TORCH_HOME": str(tmp_path / "torch")}
    result = run_cli("protect", source, "-o", output, "--vf",
                     "vdf=targets=mesh+fan+bisenet:steps=2:refine_steps=1", env=env)
    assert result.returncode == 0, result.stderr
    assert len(decode_all(output)[0]) == 2
    report = tmp_path / "eval.json"
    result = run_cli("eval", source, output, "--transfer", "--no-visibility", "--json", report,
                     env=env)
    assert result.returncode == 0, result.stderr
    measured = json.loads(report.read_text())
    assert measured["parser"] == "bisenet"
    transfer = measured["transfer"]
    assert {"fan_nme", "fan_faces_lost"} <= set(transfer["efficacy"])
    assert len(transfer["per_frame"]["fan_nme"]) == 2
    assert not any("FAN" in note for note in measured["notes"])
    # without FAN's weights the columns are left out and a note says how to get them
    (tmp_path / "cache" / "models" / "fan_2dfan4.pth").unlink()
    result = run_cli("eval", source, output, "--transfer", "--no-visibility", "--json", report,
                     "--frames", "1", env=env)
    assert result.returncode == 0, result.stderr
    measured = json.loads(report.read_text())
    assert "fan_nme" not in measured["transfer"]["efficacy"]
    assert any(note.startswith("--transfer: FAN") for note in measured["notes"])


def test_batch_without_the_weights_stops_before_any_work(empty, capsys):
    from helpers import make_clip
    from vdf_stream.cli.main import main

    (empty / "in").mkdir()
    make_clip(empty / "in" / "a.mp4", frames=3)
    code = main(["batch", str(empty / "in"), "-o", str(empty / "out"), "--vf",
                 "vdf=targets=bisenet", "-q"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 6 and len(lines) == 1, lines
    assert lines[0].endswith(f"targets=bisenet: {bisenet.MISSING_MESSAGE}")
    assert not (empty / "out").exists()
