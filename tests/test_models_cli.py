"""``vdf-stream models``: the real command line, as subprocesses.

Read-only commands use the normal cache. Commands that change the cache (a corrupted file,
an added checkpoint) run on a private copy of the model files, named by VDF_STREAM_CACHE,
so the shared cache is never touched and no wheel is downloaded. Each command is a new
Python process that imports torch: a few seconds each on a small machine.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from helpers import run_cli
from PIL import Image

from vdf_stream import assets
from vdf_stream.errors import AssetError

MODEL_NAMES = [name for name, asset in assets.ASSETS.items() if asset.kind == "model"]
CLIP_NAMES = [name for name, asset in assets.ASSETS.items() if asset.kind == "clip"]
OFFLINE_INDEX = "file:///nonexistent/vdf-stream-test-index/simple"


@pytest.fixture(scope="module")
def model_folder():
    """The normal cache's model folder, with every pinned model present and verified."""
    try:
        paths = assets.fetch_all("model", progress=False)
    except AssetError as error:
        pytest.skip(f"the models are not cached and cannot be fetched: {error}")
    return paths[0].parent


@pytest.fixture
def private_cache(tmp_path, model_folder):
    """A private cache holding a copy of the model files (no clips, no BiSeNet)."""
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    for name in MODEL_NAMES:
        shutil.copyfile(model_folder / name, cache / "models" / name)
    return cache


def run_models(*args, cache=None, offline: bool = True, torch_home=None):
    """``vdf-stream models ARGS`` -> (exit code, stdout text, stderr lines); ``torch_home``:
    where face-alignment's downloads are looked for."""
    env = {} if torch_home is None else {"TORCH_HOME": str(torch_home)}
    if cache is not None:
        env["VDF_STREAM_CACHE"] = str(cache)
    if offline:  # a command that tries to download fails at once instead
        env["VDF_STREAM_INDEX_URL"] = OFFLINE_INDEX
    completed = run_cli("models", *args, env=env, timeout=180)
    stderr = completed.stderr.decode("utf-8", "replace")
    return completed.returncode, completed.stdout.decode("utf-8", "replace"), stderr.splitlines()


def table_row(stdout: str, name: str) -> str:
    rows = [line for line in stdout.splitlines() if line.split()[:1] == [name]]
    assert len(rows) == 1, stdout
    return rows[0]


def assert_one_error_line(stderr: list[str]) -> str:
    assert len(stderr) == 1, stderr
    assert stderr[0].startswith("vdf-stream: "), stderr
    assert "Traceback" not in stderr[0]
    return stderr[0]


# -------------------------------------------------------------------------------------
# list, verify, fetch


def test_list_shows_every_model_verified_and_bisenet(model_folder):
    code, stdout, stderr = run_models("list")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith(f"cache: {model_folder.parent} ")
    assert max(len(line) for line in lines) <= 100, "the table fits in 100 columns"
    for name in MODEL_NAMES:
        row = table_row(stdout, name)
        assert " verified " in row, row
        below = lines[lines.index(row) + 1]  # the description, on the line under its row
        assert assets.ASSETS[name].description.startswith(below.strip()[:40])
    bisenet_row = table_row(stdout, "bisenet_79999_iter.pth")
    assert " added " in bisenet_row or " not added " in bisenet_row
    for name in CLIP_NAMES:  # present or not, every clip has a row
        table_row(stdout, name)


def test_verify_passes_on_the_cache(model_folder):
    code, stdout, stderr = run_models("verify")
    assert code == 0, stderr
    for name in MODEL_NAMES:
        assert " verified " in table_row(stdout, name)
    assert any("files verified" in line for line in stderr), stderr


def test_verify_names_a_corrupted_file_and_exits_6(private_cache):
    damaged = private_cache / "models" / "face_detection_short_range.tflite"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    damaged.write_bytes(bytes(data))

    code, stdout, stderr = run_models("verify", cache=private_cache)
    assert code == 6, (stdout, stderr)
    line = assert_one_error_line(stderr)
    assert "face_detection_short_range.tflite" in line and "vdf-stream models fetch" in line
    assert all(name not in line for name in MODEL_NAMES[1:])
    assert " bad checksum " in table_row(stdout, "face_detection_short_range.tflite")
    for name in MODEL_NAMES[1:]:
        assert " verified " in table_row(stdout, name)
    assert damaged.read_bytes() == bytes(data), "verify must not modify or delete files"

    code, stdout, stderr = run_models("list", cache=private_cache)
    assert code == 0, stderr
    assert " bad checksum " in table_row(stdout, "face_detection_short_range.tflite")


def test_verify_reports_missing_files_and_fails_on_them_only_when_strict(private_cache):
    code, stdout, stderr = run_models("verify", cache=private_cache)
    assert code == 0, stderr
    for name in CLIP_NAMES:
        assert " missing " in table_row(stdout, name)
    assert any("missing" in line and "single_face.mp4" in line for line in stderr), stderr

    code, stdout, stderr = run_models("verify", "--strict", cache=private_cache)
    assert code == 6, stderr
    line = assert_one_error_line(stderr)
    assert "missing" in line and all(name in line for name in CLIP_NAMES)
    assert "vdf-stream models fetch --clips" in line


def test_fetch_offline_says_what_to_run_in_one_line(tmp_path):
    code, stdout, stderr = run_models("fetch", "-q", cache=tmp_path / "empty")
    assert code == 6
    line = assert_one_error_line(stderr)
    assert "cannot download" in line and "vdf-stream models fetch" in line


def test_fetch_with_everything_cached_downloads_nothing(private_cache):
    code, stdout, stderr = run_models("fetch", cache=private_cache)  # offline index
    assert code == 0, stderr
    for name in MODEL_NAMES:
        assert " verified " in table_row(stdout, name)
    assert f"{len(MODEL_NAMES)} files verified in {private_cache / 'models'}" in stdout


def test_models_without_an_action_is_a_usage_error():
    code, stdout, stderr = run_models()
    assert code == 2
    assert "vdf-stream models fetch | list" in assert_one_error_line(stderr)


# -------------------------------------------------------------------------------------
# add bisenet


@pytest.mark.slow
def test_add_bisenet_keeps_a_checked_copy(tmp_path):
    from vdf_stream.models.bisenet import CACHE_NAME, BiSeNet

    model = BiSeNet()
    download = tmp_path / "79999_iter.pth"
    torch.save(model.state_dict(), download)
    cache = tmp_path / "cache"

    code, stdout, stderr = run_models("add", "bisenet", download, cache=cache)
    assert code == 0, stderr
    cached = cache / "models" / CACHE_NAME
    assert str(cached) in stdout
    state = torch.load(cached, map_location="cpu", weights_only=True)
    BiSeNet().load_state_dict(state, strict=True)
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())

    code, stdout, stderr = run_models("list", cache=cache)
    assert " added " in table_row(stdout, CACHE_NAME)
    code, stdout, stderr = run_models("verify", cache=cache)
    assert code == 0, stderr
    assert " checked " in table_row(stdout, CACHE_NAME)

    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])  # truncated
    code, stdout, stderr = run_models("verify", cache=cache)
    assert code == 6
    line = assert_one_error_line(stderr)
    assert CACHE_NAME in line and "vdf-stream models add bisenet" in line
    assert " bad checkpoint " in table_row(stdout, CACHE_NAME)


def test_add_bisenet_refuses_a_garbage_file_in_one_line(tmp_path):
    garbage = tmp_path / "79999_iter.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    cache = tmp_path / "cache"
    code, stdout, stderr = run_models("add", "bisenet", garbage, cache=cache)
    assert code == 6
    assert str(garbage) in assert_one_error_line(stderr)
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())


def test_add_bisenet_refuses_a_checkpoint_of_another_network(tmp_path):
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, other)
    code, stdout, stderr = run_models("add", "bisenet", other, cache=tmp_path / "cache")
    assert code == 6
    line = assert_one_error_line(stderr)
    assert "missing parameters" in line and "unexpected parameters: conv1.weight" in line


def test_add_bisenet_missing_file_is_an_input_error(tmp_path):
    code, stdout, stderr = run_models("add", "bisenet", tmp_path / "nowhere.pth",
                                      cache=tmp_path / "cache")
    assert code == 3
    assert "no such file" in assert_one_error_line(stderr)


def test_list_says_how_to_get_each_network_the_user_brings(private_cache, tmp_path):
    from vdf_stream.models import s3fd
    from seeded_weights import state

    torch_home = tmp_path / "torch"
    code, stdout, stderr = run_models("list", cache=private_cache, torch_home=torch_home)
    assert code == 0, stderr
    lines = stdout.splitlines()
    for name, command in (("bisenet_79999_iter.pth", "models add bisenet PATH"),
                          ("fan_2dfan4.pth", "models add fan PATH"),
                          ("s3fd.pth", "models add s3fd PATH")):
        row = table_row(stdout, name)
        assert " not added " in row, row
        below = " ".join(line.strip() for line in lines[lines.index(row) + 1:][:3])
        assert command in below, below
    # face-alignment's own download is found where the package keeps it
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state("s3fd"), folder / s3fd.PACKAGE_FILE)
    code, stdout, stderr = run_models("list", cache=private_cache, torch_home=torch_home)
    assert " in face-alignment's cache " in table_row(stdout, s3fd.PACKAGE_FILE)
    code, stdout, stderr = run_models("verify", cache=private_cache, torch_home=torch_home)
    assert code == 0, stderr
    assert " checked " in table_row(stdout, s3fd.PACKAGE_FILE)


@pytest.mark.slow
def test_add_fan_shows_its_checksum_and_keeps_a_strict_copy(private_cache, tmp_path):
    from vdf_stream.models import fan
    from seeded_weights import state

    # the form of face-alignment 1.0-1.2's download: a training checkpoint of DataParallel
    download = tmp_path / "2DFAN4-11f355bf06.pth.tar"
    torch.save({"state_dict": {f"module.{key}": value for key, value in state("fan").items()}},
               download)
    code, stdout, stderr = run_models("add", "fan", download, cache=private_cache,
                                      torch_home=tmp_path / "torch")
    assert code == 0, stderr
    kept = private_cache / "models" / "fan_2dfan4.pth"
    assert str(kept) in stdout and assets.sha256_of(download) in stdout
    network = fan.FAN()
    network.load_state_dict(torch.load(kept, map_location="cpu", weights_only=True), strict=True)
    assert all(torch.equal(network.state_dict()[key], value)
               for key, value in state("fan").items())
    code, stdout, stderr = run_models("list", cache=private_cache, torch_home=tmp_path / "torch")
    assert " added " in table_row(stdout, "fan_2dfan4.pth")
    code, stdout, stderr = run_models("verify", cache=private_cache,
                                      torch_home=tmp_path / "torch")
    assert code == 0 and " checked " in table_row(stdout, "fan_2dfan4.pth"), stderr


def test_add_fan_refuses_another_networks_checkpoint_in_one_line(tmp_path):
    from seeded_weights import state

    other = tmp_path / "79999_iter.pth"
    torch.save(state("bisenet"), other)
    code, stdout, stderr = run_models("add", "fan", other, cache=tmp_path / "cache",
                                      torch_home=tmp_path / "torch")
    assert code == 6
    line = assert_one_error_line(stderr)
    assert "is not face-alignment's FAN" in line and "missing parameters" in line
    assert not (tmp_path / "cache" / "models" / "fan_2dfan4.pth").exists()


# -------------------------------------------------------------------------------------
# show


def decode_frame(path, index: int) -> np.ndarray:
    from vdf_stream.media.sources import open_source

    with open_source(str(path)) as source:
        for decoded in source.frames("rgb24"):
            if decoded.index == index:
                return decoded.pixels
    raise AssertionError(f"{path} has no frame {index}")


@pytest.mark.slow
def test_show_draws_the_models_over_a_video_frame(clip, model_folder, tmp_path):
    video = clip("single_face.mp4")
    output = tmp_path / "frame30.png"
    code, stdout, stderr = run_models("show", video, "--frame", "30", "-o", output)
    assert code == 0, stderr
    assert any("1 face(s)" in line and "presence" in line for line in stderr), stderr

    frame = decode_frame(video, 30)
    with Image.open(output) as picture:
        assert picture.format == "PNG" and picture.size == (640, 360)
        drawn = np.asarray(picture.convert("RGB"))
    changed = np.abs(drawn.astype(int) - frame.astype(int)).max(axis=-1) > 8
    assert changed.mean() > 0.2, changed.mean()  # the person mask alone covers a large part
    # The mesh colour (pure green) is drawn, and lies in the middle of the frame where the
    # face is (the clip's face is centred; its box spans about x 205-375, y 115-290).
    mesh = (drawn[..., 1] > 200) & (drawn[..., 0] < 80) & (drawn[..., 2] < 150)
    assert mesh.sum() > 400, mesh.sum()
    rows, columns = np.nonzero(mesh)
    assert 200 < columns.min() and columns.max() < 390, (columns.min(), columns.max())
    assert 90 < rows.min() and rows.max() < 310, (rows.min(), rows.max())
    assert not mesh[:, :150].any() and not mesh[:, 500:].any()


@pytest.mark.slow
def test_show_on_a_picture_writes_the_default_name(clip, model_folder, tmp_path):
    # A phone-style JPEG: stored sideways, with the EXIF orientation that turns it upright.
    picture = tmp_path / "still.jpg"
    sideways = Image.fromarray(decode_frame(clip("single_face.mp4"), 0)).rotate(90, expand=True)
    exif = sideways.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    sideways.save(picture, exif=exif, quality=95)
    code, stdout, stderr = run_models("show", picture)
    assert code == 0, stderr
    assert len(stderr) == 1 and "1 face(s)" in stderr[0], stderr  # found upright
    with Image.open(tmp_path / "still_models.png") as drawn:
        assert drawn.size == (640, 360)

    code, stdout, stderr = run_models("show", picture, "-q")  # exists now: -y is needed
    assert code == 4 and "use -y" in assert_one_error_line(stderr)
    code, stdout, stderr = run_models("show", picture, "--frame", "2", "-y")
    assert code == 2 and "still picture" in assert_one_error_line(stderr)


@pytest.mark.slow
def test_show_without_a_face_still_writes_the_picture(model_folder, tmp_path):
    empty = tmp_path / "wall.png"
    Image.new("RGB", (320, 240), (120, 130, 140)).save(empty)
    output = tmp_path / "wall_drawn.png"
    code, stdout, stderr = run_models("show", empty, "-o", output)
    assert code == 0, stderr
    assert len(stderr) == 1 and "no face found" in stderr[0]
    with Image.open(output) as drawn:
        assert drawn.size == (320, 240)
        pixels = np.asarray(drawn.convert("RGB"))
    red_text = (pixels[..., 0] > 200) & (pixels[..., 1] < 120)
    assert red_text[:40, :200].sum() > 20  # "no face found", top left


def test_show_past_the_last_frame_is_an_input_error(clip, model_folder, tmp_path):
    code, stdout, stderr = run_models("show", clip("single_face.mp4"), "--frame", "72",
                                      "-o", tmp_path / "x.png")
    assert code == 3
    assert "has 72 frames" in assert_one_error_line(stderr)
    assert not (tmp_path / "x.png").exists()
