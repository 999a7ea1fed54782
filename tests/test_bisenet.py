"""BiSeNet face parser: checkpoint layout, registration, forward, and the region merge."""

import pickle

import pytest
import torch

from vdf_stream.errors import AssetError
from vdf_stream.models import bisenet


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VDF_STREAM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    network = bisenet.BiSeNet()
    # Non-trivial batch-norm statistics, so that a wrong load would show.
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return network.eval()


def test_checkpoint_layout_matches_face_parsing_pytorch():
    shapes = bisenet.expected_state_shapes()
    # Names and shapes of the published checkpoint (face-parsing.PyTorch model.py / resnet.py).
    assert shapes["cp.resnet.conv1.weight"] == (64, 3, 7, 7)
    assert shapes["cp.resnet.layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert shapes["cp.resnet.layer4.1.bn2.running_var"] == (512,)
    assert shapes["cp.arm16.conv.conv.weight"] == (128, 256, 3, 3)
    assert shapes["cp.arm32.conv_atten.weight"] == (128, 128, 1, 1)
    assert shapes["cp.arm32.bn_atten.weight"] == (128,)
    assert shapes["cp.conv_avg.conv.weight"] == (128, 512, 1, 1)
    assert shapes["cp.conv_head16.bn.num_batches_tracked"] == ()
    assert shapes["ffm.convblk.conv.weight"] == (256, 256, 1, 1)
    assert shapes["ffm.conv1.weight"] == (64, 256, 1, 1)
    assert shapes["ffm.conv2.weight"] == (256, 64, 1, 1)
    assert shapes["conv_out.conv_out.weight"] == (19, 256, 1, 1)
    assert shapes["conv_out16.conv.conv.weight"] == (64, 128, 3, 3)
    assert shapes["conv_out32.conv_out.weight"] == (19, 64, 1, 1)
    assert not any(key.startswith("sp.") for key in shapes)  # no spatial path in the checkpoint
    assert not any(key in ("mean", "std") for key in shapes)
    assert "cp.resnet.layer1.0.downsample.0.weight" not in shapes
    parameters = sum(torch.Size(shape).numel() for key, shape in shapes.items()
                     if not key.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert parameters == sum(p.numel() for p in bisenet.BiSeNet().parameters())
    assert 13_000_000 < parameters < 13_500_000  # the 79999_iter.pth network: about 13.3 M


def test_forward_shapes(model):
    images = torch.rand(2, 3, 512, 512, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, logits16, logits32 = model(images, auxiliary=True)
        small = model(images[:1, :, :64, :96])
    assert logits.shape == logits16.shape == logits32.shape == (2, 19, 512, 512)
    assert torch.isfinite(logits).all()
    assert small.shape == (1, 19, 64, 96)


def test_add_bisenet_round_trip_loads_strict(model, cache, tmp_path):
    download = tmp_path / "79999_iter.pth"
    torch.save(model.state_dict(), download)
    cached = bisenet.add_bisenet(download)
    assert cached == cache / "models" / "bisenet_79999_iter.pth" and cached.is_file()
    state = torch.load(cached, map_location="cpu", weights_only=True)
    fresh = bisenet.BiSeNet()
    fresh.load_state_dict(state, strict=True)
    loaded = bisenet.load_bisenet()
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    images = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_add_bisenet_accepts_data_parallel_and_old_checkpoints(model, cache, tmp_path):
    state = {f"module.{key}": value for key, value in model.state_dict().items()
             if not key.endswith("num_batches_tracked")}
    download = tmp_path / "old.pth"
    torch.save(state, download)
    cached = bisenet.add_bisenet(download)
    bisenet.BiSeNet().load_state_dict(torch.load(cached, weights_only=True), strict=True)


def test_mismatched_checkpoints_are_refused_clearly(model, cache, tmp_path):
    state = dict(model.state_dict())
    missing = dict(state)
    del missing["ffm.conv1.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(AssetError, match=r"1 missing parameters: ffm\.conv1\.weight"):
        bisenet.add_bisenet(tmp_path / "missing.pth")
    wrong = dict(state)
    wrong["conv_out.conv_out.weight"] = torch.zeros(11, 256, 1, 1)  # an 11-class parser
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(AssetError, match=r"conv_out\.conv_out\.weight \(11, 256, 1, 1\) \(expected \(19, 256, 1, 1\)\)"):
        bisenet.add_bisenet(tmp_path / "wrong.pth")
    extra = dict(state)
    extra["sp.conv1.conv.weight"] = torch.zeros(64, 3, 7, 7)
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(AssetError, match=r"unexpected parameters: sp\.conv1\.conv\.weight"):
        bisenet.add_bisenet(tmp_path / "extra.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(AssetError, match="not a BiSeNet state dict"):
        bisenet.add_bisenet(tmp_path / "tensor.pth")
    assert not bisenet.cached_path().exists()


def test_unreadable_files_are_refused_clearly(cache, tmp_path):
    (tmp_path / "corrupt.pth").write_bytes(b"PK\x03\x04 not really a zip archive" * 10)
    with pytest.raises(AssetError, match="cannot read .*corrupt.pth"):
        bisenet.add_bisenet(tmp_path / "corrupt.pth")

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(tmp_path / "pickle.pth", "wb") as handle:
        pickle.dump({"cp.resnet.conv1.weight": Payload()}, handle, protocol=2)
    with pytest.raises(AssetError, match="objects other than tensors") as refused:
        bisenet.add_bisenet(tmp_path / "pickle.pth")
    assert "weights_only=False" not in str(refused.value)  # never advise the unsafe load
    with pytest.raises(AssetError, match="no such file"):
        bisenet.add_bisenet(tmp_path / "absent.pth")
    with pytest.raises(AssetError, match="not added"):
        bisenet.load_bisenet()


def test_region_merge_follows_er_nerf():
    assert len(bisenet.CLASS_NAMES) == len(bisenet.CLASS_TO_REGION) == 19
    expected = {0: "background", 1: "head", 5: "head", 10: "head", 13: "head", 14: "neck",
                15: "neck", 16: "torso", 17: "head", 18: "head"}
    logits = torch.full((1, 19, 1, 19), -10.0)
    for label in range(19):
        logits[0, label, 0, label] = 10.0
    labels = bisenet.region_labels(logits)[0, 0]
    for label, region in expected.items():
        assert bisenet.REGION_NAMES[labels[label]] == region, label
    masks = bisenet.region_masks(logits)
    assert masks["torso"][0, 0].nonzero().flatten().tolist() == [16]
    assert masks["neck"][0, 0].nonzero().flatten().tolist() == [14, 15]
    probabilities = bisenet.region_probabilities(torch.randn(2, 19, 4, 5))
    torch.testing.assert_close(probabilities.sum(1), torch.ones(2, 4, 5))
    # Region probability = sum of its class probabilities.
    class_logits = torch.randn(1, 19, 2, 2)
    by_class = torch.softmax(class_logits, 1)
    torch.testing.assert_close(bisenet.region_probabilities(class_logits)[:, bisenet.NECK],
                               by_class[:, 14] + by_class[:, 15])
    with pytest.raises(ValueError, match="19"):
        bisenet.region_logits(torch.zeros(1, 18, 2, 2))


def test_parse_resizes_and_is_differentiable(model):
    frames = torch.rand(1, 3, 90, 160, generator=torch.Generator().manual_seed(3)).requires_grad_()
    logits = bisenet.parse(model, frames, size=128)
    assert logits.shape == (1, 19, 90, 160)
    bisenet.region_probabilities(logits)[:, bisenet.HEAD].mean().backward()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0
