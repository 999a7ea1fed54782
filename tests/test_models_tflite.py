"""The converted MediaPipe models against the reference TFLite runtime, on real face crops.

Inputs are crops of the real clip ``single_face.mp4`` (640 x 360, one face roughly in the
middle). The crop boxes were chosen by looking at the frames: the face spans about
x 220..375, y 90..310 throughout the clip, the subject's left eye (image right) sits
around (330, 170).

Tolerances, float32 against ``ai_edge_litert`` (XNNPACK): both runtimes compute in float32
from the same float32 weights, but sum in different orders (XNNPACK vs oneDNN kernels), so
they differ by rounding that grows with the magnitude of the values and the depth of the
network. Measured worst cases on these crops: detector regressors 1.1e-4 and score logits
1.4e-4 (values up to ~260), face landmarks 6e-5 px, presence logit 2e-5, iris 5e-5 px,
selfie probability 3e-5. The tolerances below are ~15x those: ``PIXELS`` (2e-3 in output
units: pixels of the model input, or logits) and ``PROBABILITY`` (2e-4). A real mistake
(a padding off by one, a wrong layout, a weight not restored) moves outputs by 0.1 to 100.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdf_stream import assets
from vdf_stream.models import tflite, zoo

PIXELS = 2e-3  # abs tolerance for pixel coordinates and logits (see the module docstring)
PROBABILITY = 2e-4  # abs tolerance for probabilities

FRAME_INDICES = (0, 23, 47, 71)  # four frames spread over the 72-frame clip


class Case:
    """How to make a model's input from a frame, and how litert wants it."""

    def __init__(self, name, asset, box, size, network_range):
        self.name = name
        self.asset = asset
        self.box = box  # (left, top, right, bottom) in frame pixels
        self.size = size
        self.network_range = network_range  # what the .tflite itself takes


CASES = {
    case.name: case
    for case in (
        # The detector sees a square around the face, as after MediaPipe's letterbox.
        Case("face_detection", "face_detection_short_range.tflite",
             (118, 0, 478, 360), 128, (-1.0, 1.0)),
        # The face mesh sees the face with a margin (MediaPipe: 1.5 x the detection box).
        Case("face_landmark", "face_landmark.tflite", (178, 80, 418, 320), 192, (0.0, 1.0)),
        # The iris model sees a left eye.
        Case("iris_landmark", "iris_landmark.tflite", (298, 138, 362, 202), 64, (0.0, 1.0)),
        # Selfie segmentation sees the whole frame, stretched.
        Case("selfie_segmentation", "selfie_segmentation.tflite",
             (0, 0, 640, 360), 256, (0.0, 1.0)),
    )
}  # fmt: skip


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Four RGB frames (360, 640, 3) uint8 of the real clip."""
    import av

    wanted = set(FRAME_INDICES)
    picked = []
    with av.open(str(assets.fetch("single_face.mp4"))) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                picked.append(frame.to_ndarray(format="rgb24"))
            if index >= max(wanted):
                break
    assert len(picked) == len(FRAME_INDICES)
    return picked


def crops(frames: list[np.ndarray], case: Case) -> torch.Tensor:
    """The model inputs: (4, 3, S, S) float32 in [0, 1]."""
    from PIL import Image

    images = [
        np.asarray(
            Image.fromarray(frame).crop(case.box).resize((case.size, case.size), Image.BILINEAR),
            dtype=np.float32,
        )
        / 255.0
        for frame in frames
    ]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def results(frames):
    """Per model: the crops and the float32 CPU outputs for the batch of four (run once)."""
    cache = {}

    def get(name):
        if name not in cache:
            images = crops(frames, CASES[name])
            with torch.no_grad():
                cache[name] = (images, zoo.load(name)(images))
        return cache[name]

    return get


def litert_outputs(case: Case, images: torch.Tensor) -> list[list[np.ndarray]]:
    """The reference runtime's outputs, one list per image, in the file's output order."""
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = interpreter_module.Interpreter(model_path=str(assets.fetch(case.asset)))
    interpreter.allocate_tensors()
    (input_detail,) = interpreter.get_input_details()
    low, high = case.network_range
    outputs = []
    for image in images:
        nhwc = image.permute(1, 2, 0).numpy()[None] * (high - low) + low
        interpreter.set_tensor(input_detail["index"], nhwc.astype(np.float32))
        interpreter.invoke()
        outputs.append(
            [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]
        )
    return outputs


def reference_fields(name: str, outputs: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
    """litert outputs reshaped like the zoo's named outputs."""
    batch = len(outputs)
    stacked = [np.concatenate([o[k] for o in outputs]) for k in range(len(outputs[0]))]
    if name == "face_detection":
        return {"regressors": stacked[0], "scores": stacked[1]}
    if name == "face_landmark":
        return {
            "landmarks": stacked[0].reshape(batch, 468, 3),
            "presence": stacked[1].reshape(batch),
        }
    if name == "iris_landmark":
        return {
            "eye_contour": stacked[0].reshape(batch, 71, 3),
            "iris": stacked[1].reshape(batch, 5, 3),
        }
    return {"mask": stacked[0].transpose(0, 3, 1, 2)}


TOLERANCE = {
    "regressors": PIXELS,
    "scores": PIXELS,
    "landmarks": PIXELS,
    "presence": PIXELS,
    "eye_contour": PIXELS,
    "iris": PIXELS,
    "mask": PROBABILITY,
    "logits": PIXELS,  # selfie logits: no litert counterpart, used for batch and CUDA checks
}


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_matches_reference_runtime(results, name):
    images, outputs = results(name)
    reference = reference_fields(name, litert_outputs(CASES[name], images[:2]))
    for field, expected in reference.items():
        actual = getattr(outputs, field)[:2].numpy()
        assert actual.shape == expected.shape, field
        difference = np.abs(actual - expected).max()
        assert difference <= TOLERANCE[field], f"{name}.{field}: max |difference| {difference:.3g}"


def test_outputs_make_sense_on_a_real_face(results):
    """Not a comparison: the models see what is there (guards the input normalisation)."""
    images, detection = results("face_detection")
    best = detection.scores[..., 0].argmax(dim=1)
    assert (torch.sigmoid(detection.scores[torch.arange(len(images)), best, 0]) > 0.8).all()
    _, mesh = results("face_landmark")
    assert (torch.sigmoid(mesh.presence) > 0.9).all()
    assert mesh.landmarks[..., :2].min() > 0 and mesh.landmarks[..., :2].max() < 192
    _, eye = results("iris_landmark")
    iris_centre = eye.iris[:, 0, :2]  # the iris is near the middle of the eye crop
    assert ((iris_centre - 32).abs() < 12).all()
    _, selfie = results("selfie_segmentation")
    assert selfie.mask[:, 0, 80:220, 96:144].mean() > 0.9  # the face and neck
    assert selfie.mask[:, 0, :64, :32].mean() < 0.1  # the wall at the top left


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_batch_equals_single_runs(results, name):
    images, batched = results(name)
    model = zoo.load(name)
    with torch.no_grad():
        singles = [model(images[i : i + 1]) for i in range(len(images))]
    for field in batched._fields:
        together = getattr(batched, field)
        one_by_one = torch.cat([getattr(s, field) for s in singles])
        # Same runtime, same weights: only kernel choices for the batch size differ, which
        # changes the summation order as litert does (measured up to 7e-4 on selfie logits
        # of magnitude ~6, 2e-4 px on face landmarks).
        torch.testing.assert_close(together, one_by_one, rtol=1e-4, atol=TOLERANCE[field])


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_gradients_reach_the_input(results, name):
    images, _ = results(name)
    model = zoo.load(name)
    assert not any(p.requires_grad for p in model.parameters())
    x = images[:1].clone().requires_grad_(True)
    outputs = model(x)
    loss = sum(getattr(outputs, field).float().mean() for field in outputs._fields)
    loss.backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().max() > 0


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_bfloat16_is_close(results, name):
    images, reference = results(name)
    model = zoo.load(name, dtype=torch.bfloat16)
    with torch.no_grad():
        outputs = model(images[:1])  # float32 images are cast by the module
    for field in outputs._fields:
        assert getattr(outputs, field).dtype == torch.bfloat16
    # bfloat16 keeps 8 significant bits (relative step 2^-8 = 0.4%), compounded over
    # ~40 layers: measured ~0.3% of the input size for landmarks, a few percent on
    # probabilities at the mask's edges. Checked loosely, on what a caller would use.
    got = {f: getattr(outputs, f).float() for f in outputs._fields}
    want = {f: getattr(reference, f)[:1] for f in reference._fields}
    if name == "face_detection":
        best = want["scores"][0, :, 0].argmax()  # the face's anchor
        probability = torch.sigmoid(got["scores"][0, best])
        assert abs(probability - torch.sigmoid(want["scores"][0, best])) < 0.05
        assert (got["regressors"][0, best] - want["regressors"][0, best]).abs().max() < 0.015 * 128
    elif name == "face_landmark":
        assert (got["landmarks"] - want["landmarks"]).abs().max() < 0.01 * 192
        assert (got["presence"] - want["presence"]).abs().max() < 1.0
    elif name == "iris_landmark":
        assert (got["eye_contour"] - want["eye_contour"]).abs().max() < 0.01 * 64
        assert (got["iris"] - want["iris"]).abs().max() < 0.01 * 64
    else:
        difference = (got["mask"] - want["mask"]).abs()
        assert difference.mean() < 0.01
        assert (difference > 0.05).float().mean() < 0.01


def test_load_is_shared_and_frozen():
    first = zoo.load("iris_landmark")
    assert zoo.load("iris_landmark", device="cpu") is first
    assert not first.training
    own = zoo.build("iris_landmark")
    assert own is not first and all(p.requires_grad for p in own.parameters())


def test_input_checks_name_expected_and_actual():
    model = zoo.load("iris_landmark")
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\), got \(1, 3, 32, 32\)"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(TypeError, match="float images"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown model"):
        zoo.load("hand_landmark")


def test_detection_anchors_follow_the_output_layout(results):
    anchors = zoo.face_detection_anchors(dtype=torch.float64)
    assert anchors.shape == (896, 2)
    torch.testing.assert_close(anchors[1], anchors[0])  # 2 anchors a cell on the 16 x 16 grid
    torch.testing.assert_close(anchors[2], torch.tensor([1.5 / 16, 0.5 / 16], dtype=torch.float64))
    torch.testing.assert_close(anchors[512], torch.tensor([0.5 / 8, 0.5 / 8], dtype=torch.float64))
    torch.testing.assert_close(anchors[-1], torch.tensor([7.5 / 8, 7.5 / 8], dtype=torch.float64))
    # The real face's best anchor, plus its regressed offset, lands on the face: the middle
    # of the detector's crop horizontally, a little below the middle vertically.
    images, detection = results("face_detection")
    best = detection.scores[..., 0].argmax(dim=1)
    for b in range(len(images)):
        centre = anchors[best[b]] + detection.regressors[b, best[b], :2].double() / 128
        assert abs(centre[0] - 0.5) < 0.1 and abs(centre[1] - 0.6) < 0.15


def test_converter_reports_operators_and_rejects_garbage():
    spec = tflite.read_graph(assets.fetch("selfie_segmentation.tflite"))
    assert "Convolution2DTransposeBias" in spec.operator_kinds()
    assert "DEQUANTIZE" not in spec.operator_kinds()  # fp16 weights folded to float32
    assert all(a.dtype != np.float16 for a in spec.constants.values())
    with pytest.raises(tflite.ModelConversionError):
        tflite.read_graph(b"not a flatbuffer at all")


def test_same_padding_is_tflite_asymmetric():
    # 128 -> 64 with a 5x5 stride-2 kernel: 3 pixels of padding, 1 before and 2 after.
    assert tflite._same_padding(128, 5, 2) == (1, 2)
    assert tflite._same_padding(64, 3, 2) == (0, 1)
    assert tflite._same_padding(64, 3, 1) == (1, 1)
    assert tflite._same_padding(16, 16, 16) == (0, 0)


def test_legacy_bilinear_resize_matches_tflite_formula():
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(1, 2, 3, 5)
    y = tflite._resize_bilinear_legacy(x, (4, 7))
    # TFLite without half-pixel centres: source = out * in / out_size, neighbours clamped.
    expected = np.zeros((1, 2, 4, 7), np.float32)
    data = x.numpy()
    for i in range(4):
        for j in range(7):
            sy, sx = i * 3 / 4, j * 5 / 7
            y0, x0 = int(np.floor(sy)), int(np.floor(sx))
            y1, x1 = min(y0 + 1, 2), min(x0 + 1, 4)
            dy, dx = sy - y0, sx - x0
            top = data[..., y0, x0] * (1 - dx) + data[..., y0, x1] * dx
            bottom = data[..., y1, x0] * (1 - dx) + data[..., y1, x1] * dx
            expected[..., i, j] = top * (1 - dy) + bottom * dy
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_cuda_matches_cpu(results, name):
    images, on_cpu = results(name)  # built on the CPU, then moved
    model = zoo.load(name, device="cuda")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            on_gpu = model(images.cuda())
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    for field in on_cpu._fields:
        torch.testing.assert_close(
            getattr(on_gpu, field).cpu(), getattr(on_cpu, field), rtol=1e-4, atol=TOLERANCE[field]
        )
    with torch.no_grad():  # bfloat16 runs on the GPU too
        half = zoo.load(name, device="cuda", dtype=torch.bfloat16)(images.cuda())
    assert all(torch.isfinite(getattr(half, f)).all() for f in half._fields)
