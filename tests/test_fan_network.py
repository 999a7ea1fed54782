"""FAN (2DFAN-4) rebuilt in torch: its parameter names, its weights (a state dict or the
package's TorchScript file, read without running it; the message when absent), its crop and
heatmap decoding against face-alignment's own functions, and the whole reading against the
package end to end, with seeded weights (the real ones are on their authors' site, out of
reach here). Gradients reach the pixels."""

from __future__ import annotations

import pickle
import shutil
import warnings
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from face_clips import decode, one_torch_thread  # noqa: F401  (autouse fixture)
from vdf_stream import assets
from vdf_stream.errors import AssetError
from vdf_stream.models import fan, weights

# The face of single_face.mp4's first frame, (x1, y1, x2, y2): the crop it gives runs past
# the frame's top (y -74..377), so the package's zero padding is exercised too.
BOX = (220.0, 60.0, 420.0, 300.0)
# A box whose crop square is exactly 256 pixels a side (x 192..448, y -33..223, past the
# frame's top): cv2 copies it without resampling, so the package's uint8 crop and our float
# one are the same numbers.
EXACT_BOX = (257.125, 47.125, 382.875, 172.875)
# Boxes for the crop comparison: that face, boxes past every edge of the 640x360 frame,
# small ones (a crop side under 256: cv2 enlarges) and large ones (it shrinks), and
# fractional coordinates as S3FD gives them.
CROP_BOXES = (
    BOX,
    EXACT_BOX,
    (-80.5, -60.25, 150.75, 200.0),
    (500.3, 250.9, 700.1, 420.7),
    (300.0, 170.0, 330.5, 200.0),
    (10.1, 20.2, 60.3, 55.4),
    (-300.0, -200.0, 900.0, 560.0),
    (123.456, 78.9, 345.678, 321.0),
)


@pytest.fixture(scope="module")
def package():
    return pytest.importorskip("face_alignment", reason="pip install -e '.[test]' installs it")


@pytest.fixture(scope="module")
def network() -> fan.FAN:
    """FAN with seed-0 weights and random batch-norm statistics, in eval mode."""
    torch.manual_seed(0)
    model = fan.FAN()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(3)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def crop_input() -> torch.Tensor:
    return torch.rand(1, 3, fan.INPUT_SIZE, fan.INPUT_SIZE, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def heatmaps(network, crop_input) -> torch.Tensor:
    """The network's output for :func:`crop_input`."""
    return network(crop_input)


@pytest.fixture(scope="module")
def traced(network, crop_input, tmp_path_factory):
    """The network traced and saved as TorchScript, as face-alignment 1.3+ ships FAN."""
    path = tmp_path_factory.mktemp("traced") / fan.PACKAGE_FILES[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation, the tracer's shape checks
        torch.jit.trace(network, crop_input, check_trace=False).save(str(path))
    return path


@pytest.fixture(scope="module")
def frame() -> torch.Tensor:
    """single_face.mp4's first frame, ``(1, 3, 360, 640)`` RGB in [0, 1] (values k / 255)."""
    return decode("single_face.mp4", (0,))


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty vdf-stream and torch caches, and no network loaded yet; returns the folder
    where face-alignment keeps its downloads."""
    monkeypatch.setenv("VDF_STREAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def package_geometry(box: np.ndarray) -> tuple[torch.Tensor, np.float64]:
    """The package's crop centre and scale for a float64 box, as its
    ``get_landmarks_from_image`` computes them."""
    centre = torch.tensor([box[2] - (box[2] - box[0]) / 2.0, box[3] - (box[3] - box[1]) / 2.0])
    centre[1] = centre[1] - (box[3] - box[1]) * 0.12
    return centre, (box[2] - box[0] + box[3] - box[1]) / 195


# -------------------------------------------------------------------------------------
# The network and its weights


def test_parameter_names_and_shapes():
    shapes = fan.expected_state_shapes()
    assert len(shapes) == 1129
    assert shapes["conv1.weight"] == (64, 3, 7, 7) and shapes["conv1.bias"] == (64,)
    assert "conv2.conv1.bias" not in shapes
    assert shapes["conv2.conv1.weight"] == (64, 64, 3, 3)
    assert shapes["conv2.conv3.weight"] == (32, 32, 3, 3)
    assert shapes["conv2.downsample.0.running_mean"] == (64,)
    assert shapes["conv2.downsample.2.weight"] == (128, 64, 1, 1)
    assert "conv3.downsample.0.weight" not in shapes
    assert shapes["conv4.downsample.2.weight"] == (256, 128, 1, 1)
    for stack in range(4):
        assert shapes[f"m{stack}.b2_plus_1.conv1.weight"] == (128, 256, 3, 3)
        assert {f"m{stack}.b{branch}_{level}.bn3.num_batches_tracked"
                for branch in (1, 2, 3) for level in (1, 2, 3, 4)} <= shapes.keys()
        assert shapes[f"top_m_{stack}.conv3.weight"] == (64, 64, 3, 3)
        assert shapes[f"conv_last{stack}.bias"] == (256,)
        assert shapes[f"bn_end{stack}.running_var"] == (256,)
        assert shapes[f"l{stack}.weight"] == (68, 256, 1, 1)
    for stack in range(3):
        assert shapes[f"bl{stack}.weight"] == (256, 256, 1, 1)
        assert shapes[f"al{stack}.weight"] == (256, 68, 1, 1)
    assert "bl3.weight" not in shapes and "al3.weight" not in shapes and "m4.b1_1.bn1.weight" not in shapes


def test_state_dicts_load_strictly(network, caches, tmp_path):
    """A state dict as the module saves it, and a training checkpoint's form (wrapped in
    ``state_dict``, ``module.`` prefixes, no batch-norm counters), are verified, kept and
    loaded with every value."""
    state = network.state_dict()
    plain = tmp_path / "fan.pth"
    torch.save(state, plain)
    kept = fan.add_fan(plain)
    assert kept == assets.user_weights_path("fan") and kept.is_file()
    assert fan.weights_path() == kept
    loaded = fan.load_fan()
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    values = loaded.state_dict()
    assert list(values) == list(state)
    assert all(torch.equal(values[key], state[key]) for key in state)
    assert fan.load_fan("cpu", torch.float32) is loaded
    assert fan.load_fan(dtype=torch.float64).conv1.weight.dtype == torch.float64

    wrapped = {"state_dict": {f"module.{key}": value for key, value in state.items()
                              if not key.endswith("num_batches_tracked")}, "epoch": 40}
    torch.save(wrapped, tmp_path / "checkpoint.pth.tar")
    fan.add_fan(tmp_path / "checkpoint.pth.tar")
    again = fan.load_fan()
    assert again is not loaded  # adding a copy drops the loaded one
    assert torch.equal(again.m3.b2_plus_1.conv2.weight, state["m3.b2_plus_1.conv2.weight"])
    assert int(again.bn1.num_batches_tracked) == 0


def test_wrong_files_are_refused_in_one_line(network, caches, tmp_path):
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    wrong = dict(network.state_dict())
    del wrong["l3.bias"]
    wrong["al0.weight"] = torch.zeros(256, 64, 1, 1)
    wrong["bl3.weight"] = torch.zeros(256, 256, 1, 1)
    torch.save(wrong, tmp_path / "wrong.pth")
    for path, words in ((garbage, ("not a PyTorch checkpoint",)),
                        (tmp_path / "wrong.pth", ("is not face-alignment's FAN", "l3.bias",
                                                  "al0.weight (256, 64, 1, 1)", "bl3.weight")),
                        (tmp_path / "absent.zip", ("no such file",))):
        with pytest.raises(AssetError) as caught:
            fan.add_fan(path)
        assert all(word in str(caught.value) for word in words) and "\n" not in str(caught.value)
    assert fan.weights_path() is None
    torch.save(wrong, caches / fan.PACKAGE_FILES[0])  # a bad download is refused when loaded
    with pytest.raises(AssetError, match="l3.bias"):
        fan.load_fan()


def test_weights_absent_then_an_old_download(network, caches):
    """Without weights, the one-line message; then face-alignment 1.0.1 to 1.2's download
    (a plain state dict, saved before batch norms counted batches) is found and loaded."""
    assert fan.package_cache_files() == [caches / name for name in fan.PACKAGE_FILES]
    assert fan.weights_path() is None
    with pytest.raises(fan.FanWeightsMissing) as caught:
        fan.load_fan()
    assert isinstance(caught.value, AssetError)
    assert str(caught.value) == fan.MISSING_MESSAGE and "\n" not in fan.MISSING_MESSAGE

    old = caches / "2DFAN4-11f355bf06.pth.tar"
    torch.save({key: value for key, value in network.state_dict().items()
                if not key.endswith("num_batches_tracked")}, old)
    assert fan.weights_path() == old
    assert torch.equal(fan.load_fan().l3.weight, network.l3.weight)


# -------------------------------------------------------------------------------------
# TorchScript archives, read without running them


class Small(nn.Module):
    """A scripted module with what FAN's archive holds: convolutions with and without bias,
    batch norms, a Sequential with a parameterless member, a nested module."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.downsample = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1, bias=False))
        self.head = nn.Sequential(nn.Conv2d(2, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.downsample(self.bn(self.conv(x))))


def test_traced_fan_reads_back_exactly(network, traced, crop_input, heatmaps):
    state = weights.read_torchscript_state(traced)
    assert list(state) == list(network.state_dict())
    assert "conv2.downsample.0.running_mean" in state and "training" not in state
    assert all(torch.equal(state[key], value) for key, value in network.state_dict().items())
    assert weights.is_torchscript(traced)
    assert weights.read_checkpoint(traced).keys() == state.keys()
    model = fan.FAN()
    model.load_state_dict(state, strict=True)
    assert heatmaps.shape == (1, 68, 64, 64)
    assert torch.equal(model.eval()(crop_input), heatmaps)


def test_scripted_module_reads_back_exactly(tmp_path):
    torch.manual_seed(1)
    module = Small()
    for norm in (module.bn, module.downsample[0]):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.num_batches_tracked.fill_(5)
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(module).save(str(tmp_path / "small.pt"))
    state = weights.read_torchscript_state(tmp_path / "small.pt")
    assert list(state) == list(module.state_dict())
    assert state["downsample.0.num_batches_tracked"].dtype == torch.int64
    copy = Small()
    copy.load_state_dict(state, strict=True)
    image = torch.rand(2, 3, 9, 7)
    assert torch.equal(copy.eval()(image), module(image))


class Payload:
    """Pickles to a call of ``os.system``: what a hostile archive's data.pkl could hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_foreign_globals_are_refused(tmp_path):
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("hostile/data.pkl", pickle.dumps(Payload(marker), protocol=2))
        archive.writestr("hostile/code/__torch__.py", "")
        archive.writestr("hostile/constants.pkl", pickle.dumps((), protocol=2))
    assert weights.is_torchscript(hostile)
    with pytest.raises(AssetError) as caught:
        weights.read_checkpoint(hostile)
    assert "system" in str(caught.value) and "refused" in str(caught.value)
    assert "\n" not in str(caught.value) and not marker.exists()

    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w") as archive:
        archive.writestr("damaged/data.pkl", b"\x80\x02}q\x00(X")
        archive.writestr("damaged/code/__torch__.py", "")
    with pytest.raises(AssetError, match="damaged"):
        weights.read_torchscript_state(damaged)


# -------------------------------------------------------------------------------------
# Crop and decoding against the package's functions


def test_crop_is_the_packages(package, frame):
    """Our float crop against the package's uint8 one (``utils.crop``) on a real frame: the
    same integer square, and pixels within cv2's own uint8 rounding (its 11-bit weights and
    the final rounding: up to 0.75 of a level between cv2's uint8 and float resizes);
    against cv2's float resize of the same zero-padded square, float rounding only."""
    import cv2
    from face_alignment.utils import crop, transform

    image = (frame[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    boxes = torch.tensor(CROP_BOXES, dtype=torch.float64)
    centre, scale = fan.box_geometry(boxes.float())  # float32 boxes are widened exactly
    crops = fan.crop(frame.expand(len(boxes), -1, -1, -1), centre, scale)
    assert crops.shape == (len(boxes), 3, 256, 256) and crops.dtype == torch.float32
    ours = crops * 255
    corners = fan.crop_corners(centre, scale)
    height, width = image.shape[:2]
    worst_package = worst_cv2 = 0.0
    for index, box in enumerate(boxes.float().double().numpy()):
        package_centre, package_scale = package_geometry(box)
        assert torch.equal(centre[index], package_centre) and float(scale[index]) == package_scale
        ul = transform([1, 1], package_centre, package_scale, 256.0, True)
        br = transform([256.0, 256.0], package_centre, package_scale, 256.0, True)
        assert corners[index].tolist() == [ul.tolist(), br.tolist()]
        theirs = crop(image, package_centre, package_scale).astype(np.float64)
        if tuple(boxes[index].tolist()) == EXACT_BOX:  # FAN's very input: uint8 / 255
            assert torch.equal(crops[index], torch.from_numpy(theirs).float().permute(2, 0, 1) / 255)
        mine = ours[index].permute(1, 2, 0).double().numpy()
        worst_package = max(worst_package, float(np.abs(mine - theirs).max()))
        assert np.abs(mine - theirs).mean() < 0.3  # uint8 rounding: 0.25 on average
        (left, top), (right, bottom) = corners[index].tolist()
        padded = np.zeros((bottom - top, right - left, 3), np.float32)
        y0, y1, x0, x1 = max(top, 0), min(bottom, height), max(left, 0), min(right, width)
        padded[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
        resized = cv2.resize(padded, (256, 256), interpolation=cv2.INTER_LINEAR)
        worst_cv2 = max(worst_cv2, float(np.abs(mine - resized).max()))
    assert worst_package <= 0.76, worst_package  # measured 0.754
    assert worst_cv2 < 1e-3, worst_cv2  # measured 5e-5


def test_decode_is_the_packages(package):
    """``decode`` against ``get_preds_fromhm`` (the package's arg-max, quarter-pixel shift,
    inverse transform and truncation): random heatmaps, and Gaussian peaks anywhere,
    the border included, and equal maxima (the first wins)."""
    from face_alignment.utils import get_preds_fromhm

    generator = torch.Generator().manual_seed(3)
    boxes = torch.tensor(CROP_BOXES, dtype=torch.float64)
    centre, scale = fan.box_geometry(boxes)
    count = len(boxes)
    random = torch.rand(count, 68, 64, 64, generator=generator) - 0.3
    grid = torch.arange(64.0)
    where = torch.rand(count, 68, 2, generator=generator) * 66 - 1
    peaks = torch.exp(-((grid - where[..., 0, None, None]) ** 2 + (grid[:, None] - where[..., 1, None, None]) ** 2) / 4.5)
    peaks[:, :4] = 0.0
    peaks[:, 0, 10, 20] = peaks[:, 0, 30, 5] = 1.0  # equal maxima
    peaks[:, 1, 0, 0] = 1.0  # corners and edges: no shift
    peaks[:, 2, 63, 31] = 1.0
    peaks[:, 3, 20, 40] = peaks[:, 3, 20, 41] = 0.9  # a tie between neighbours
    peaks[:, 3, 21, 40] = 1.0
    for maps in (random, peaks):
        ours = fan.decode(maps, centre, scale)
        assert ours.dtype == torch.float32
        for index in range(count):
            _, expected, _ = get_preds_fromhm(maps[index:index + 1].numpy(), centre[index].numpy(),
                                              float(scale[index]))
            np.testing.assert_array_equal(ours[index].numpy(), expected[0])


def test_soft_decode_follows_a_clean_peak():
    """On single Gaussian peaks (FAN's training targets are 1.75 cells wide; also 1 cell,
    and low peaks over a negative floor), ``soft_decode`` lands near the peak's centre and
    near ``decode`` (which moves by quarter cells and truncates to whole pixels)."""
    generator = torch.Generator().manual_seed(4)
    boxes = torch.tensor(CROP_BOXES, dtype=torch.float64)
    centre, scale = fan.box_geometry(boxes)
    cell = (fan.SCALE_SIDE * scale / fan.HEATMAP_SIZE)[:, None]
    grid = torch.arange(64.0)
    for width, height, floor, near in ((1.75, 1.0, 0.0, 0.15), (1.0, 1.0, 0.0, 0.45),
                                       (1.75, 0.3, -0.05, 0.15)):
        where = torch.rand(len(boxes), 68, 2, generator=generator) * 48 + 8
        maps = floor + height * torch.exp(-((grid - where[..., 0, None, None]) ** 2
                                            + (grid[:, None] - where[..., 1, None, None]) ** 2)
                                          / (2 * width ** 2))
        maps.requires_grad_(True)
        soft = fan.soft_decode(maps, centre, scale)
        hard = fan.decode(maps, centre, scale)
        # the peak's cell-centred position through the package's inverse transform
        side = 200 * scale[:, None, None]
        truth = (where.double() + 0.5) * side / 64 + centre[:, None] - side / 2
        assert soft.dtype == torch.float32
        assert float(((soft.detach().double() - truth).norm(dim=-1) / cell).max()) < near
        # decode's quarter-cell steps, and its truncation to whole frame pixels
        assert bool(((soft.detach() - hard).abs() < 0.45 * cell[..., None].float() + 1).all())
        soft.sum().backward()
        assert torch.isfinite(maps.grad).all() and maps.grad.abs().sum() > 0


# -------------------------------------------------------------------------------------
# End to end


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # face-alignment loads TorchScript
def test_the_package_reads_what_we_read(package, network, traced, caches, frame):
    """face-alignment 1.4.1 itself, with FAN traced from ours (seeded weights) where it
    looks for its download and a seeded S3FD (needed to construct it), reads a real frame
    in given boxes; ``FanLandmarks`` with ``load_fan`` (which finds the package's TorchScript
    file and reads it without running it) gives the same points.

    In :data:`EXACT_BOX` the two crops are the same numbers, so every point must be equal.
    In the face's box cv2 resamples in uint8 (up to 0.75 of a level from our float crop) and
    random weights' heatmaps are rough (maxima apart by 1e-4 where the crops move them by
    1e-3), so a point may rarely jump to another maximum (1 in 272 over four boxes of this
    frame; none in this one)."""
    from face_alignment import api
    from face_alignment.detection.sfd.net_s3fd import s3fd as package_s3fd

    version = torch.__version__.split("+")[0].rsplit(".", 1)[0]
    url = api.models_urls.get(version, api.default_model_urls)["2DFAN-4"]
    picked = url.rsplit("/", 1)[-1]
    assert picked in fan.PACKAGE_FILES
    shutil.copyfile(traced, caches / picked)
    torch.manual_seed(0)
    torch.save(package_s3fd().state_dict(), caches / "s3fd-619a316812.pth")

    assert fan.weights_path() == caches / picked
    landmarks = fan.FanLandmarks(fan.load_fan())
    boxes = torch.tensor([EXACT_BOX, BOX])
    frames = frame.double().expand(2, -1, -1, -1)  # any float dtype: cast for the network
    soft, hard = landmarks(frames, boxes)
    assert soft.shape == hard.shape == (2, 68, 2) and soft.dtype == hard.dtype == torch.float64

    reader = package.FaceAlignment(package.LandmarksType.TWO_D, device="cpu", flip_input=False)
    image = (frame[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    expected = np.stack([reader.get_landmarks_from_image(image, detected_faces=[np.array([*box, 1.0])])[0]
                         for box in boxes.tolist()])
    np.testing.assert_array_equal(hard[0].numpy(), expected[0])
    assert (hard[1].numpy() == expected[1]).all(axis=-1).sum() >= 64  # measured: all 68
    for index in range(2):
        assert len({tuple(point) for point in expected[index].tolist()}) > 10  # not all at one place
    corners = fan.crop_corners(*fan.box_geometry(boxes))
    assert corners[0].tolist() == [[192, -33], [448, 223]]  # 256 a side, past the frame's top
    low, high = corners[:, None, 0].double(), corners[:, None, 1].double()
    assert bool(((soft >= low) & (soft <= high)).all())


def test_gradients_reach_the_pixels(network, frame):
    frames = frame.clone().requires_grad_(True)
    soft, hard = fan.FanLandmarks(network)(frames, torch.tensor([BOX]))
    assert not hard.requires_grad
    soft.sum().backward()
    gradient = frames.grad
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    # only the crop's pixels matter: x 94..546, y -74..377 (clipped to the frame)
    assert gradient[..., :, :90].abs().sum() == 0 and gradient[..., :, 550:].abs().sum() == 0


def test_real_weights_on_a_real_face():
    """With the real weights (face-alignment downloads FAN's and S3FD's to torch's hub cache
    on its first run online; out of reach on this project's machines, hence the skip): S3FD
    finds the face of single_face.mp4 and FAN puts the eyes where they are."""
    from vdf_stream.models import s3fd
    from vdf_stream.models.talking_face import FanTarget

    if fan.weights_path() is None or s3fd.weights_path() is None:
        pytest.skip("FAN's and S3FD's real weights are not here (face-alignment downloads "
                    "them on its first run where its authors' site is reachable)")
    frame = decode("single_face.mp4", (0,))
    found, points = FanTarget().read(frame)
    assert bool(found[0]) and points.shape == (1, 68, 2)
    eyes = points[0, [fan.RIGHT_EYE_OUTER, fan.LEFT_EYE_OUTER]]
    assert eyes[0, 0] < eyes[1, 0]  # the person's right eye on the image left
    assert 150 < float(eyes[:, 0].mean()) < 500 and 50 < float(eyes[:, 1].mean()) < 250
