"""Ghost networks on the real models: noise on the feature maps moves the readings a little,
differently at every call, never through the heads that write them, and is gone after."""

import pytest
import torch
from face_clips import decode, one_torch_thread  # noqa: F401  (autouse fixture)

from vdf_stream.models import mesh, surrogate
from vdf_stream.models.ghost import feature_noise


@pytest.fixture(scope="module")
def frame():
    return decode("single_face.mp4", (16,))


@pytest.fixture(scope="module")
def pipeline():
    return mesh.FacePipeline(segmentation=False)


def _mesh_error(pipeline, frame, clean):
    points = pipeline(frame).landmarks
    eye = (clean[0, 33] - clean[0, 263]).norm()
    return float((points - clean).norm(dim=-1).mean() / eye)


@torch.no_grad()
def test_noise_moves_the_mesh_a_little_and_is_gone_after(pipeline, frame):
    clean = pipeline(frame).landmarks
    generator = torch.Generator().manual_seed(0)
    with feature_noise([pipeline.landmarker], 0.1, generator) as wrapped:
        errors = [_mesh_error(pipeline, frame, clean) for _ in range(3)]
    # the face mesh graph has 45 convolutions; the two heads that write the points and
    # the face flag are left alone
    assert wrapped == 43
    assert all(0.003 < error < 0.04 for error in errors), errors
    assert len(set(errors)) == 3  # a new network at every call
    assert torch.equal(pipeline(frame).landmarks, clean)


@torch.no_grad()
def test_the_same_seed_draws_the_same_networks(pipeline, frame):
    clean = pipeline(frame).landmarks
    runs = []
    for _ in range(2):
        with feature_noise([pipeline.landmarker], 0.1, torch.Generator().manual_seed(3)):
            runs.append([_mesh_error(pipeline, frame, clean) for _ in range(2)])
    assert runs[0] == runs[1]


@torch.no_grad()
def test_surrogate_convolutions_take_the_noise(frame):
    model = surrogate.FaceApi68Surrogate()
    faces = model.detector.detect(frame)
    _, clean = model.read(frame, faces)
    with feature_noise([model], 0.1, torch.Generator().manual_seed(0)) as wrapped:
        _, noisy = model.read(frame, faces)
    assert wrapped > 20
    error = float(((noisy - clean).norm(dim=-1).mean(-1) / model.eye_distance(clean))[0])
    assert 0.002 < error < 0.04
    _, after = model.read(frame, faces)
    assert torch.equal(after, clean)


def test_strength_zero_wraps_nothing_and_out_of_range_is_refused(pipeline):
    with feature_noise([pipeline.landmarker], 0.0) as wrapped:
        assert wrapped == 0
    with pytest.raises(ValueError, match="strength"):
        with feature_noise([pipeline.landmarker], 1.5):
            pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@torch.no_grad()
def test_cuda_networks_draw_their_noise_on_the_gpu(frame):
    """A CPU generator (the objective's) with networks on the GPU: the noise is drawn on the
    GPU from its own stream, not copied across."""
    pipeline = mesh.FacePipeline(device="cuda", segmentation=False)
    frame = frame.cuda()
    clean = pipeline(frame).landmarks
    with feature_noise([pipeline.landmarker], 0.1, torch.Generator().manual_seed(0)):
        error = _mesh_error(pipeline, frame, clean)
    assert 0.003 < error < 0.04


def test_the_objective_reads_ghosts_at_every_step_and_the_clean_networks_outside(pipeline):
    """``ObjectiveWeights.ghost``: each step's terms read the mesh and the surrogates with
    fresh noise, so the clean frame itself reads a little off, differently each time; the
    reference, read outside the steps, is the networks' own."""
    from vdf_stream.protection.objective import Objective, ObjectiveWeights, Transformations

    data = decode("single_face.mp4", (0,))
    tiny = surrogate.FaceApi68TinySurrogate()
    weights = ObjectiveWeights(surrogates={"faceapi68tiny": 1.0}, ghost=0.2)
    objective = Objective(pipeline, weights, Transformations().none(), {"faceapi68tiny": tiny})
    assert objective.ghost_networks() == [pipeline.landmarker, tiny]
    reference = objective.reference(data)
    generator = torch.Generator().manual_seed(0)
    readings = [objective.terms(data, data, reference, 8 / 255, generator)[1]
                for _ in range(2)]
    nme = [reading.landmark_nme for reading in readings]
    points = [reading.surrogates["faceapi68tiny_nme"] for reading in readings]
    # measured: mesh NME 0.014 and 0.022, tiny 0.014 and 0.013
    assert all(0.002 < value < 0.06 for value in nme + points) and nme[0] != nme[1]
    weights.ghost = 0.0
    assert objective.ghost_networks() == []
    clean = objective.terms(data, data, reference, 8 / 255, generator)[1]
    assert clean.landmark_nme < 1e-4 and clean.surrogates["faceapi68tiny_nme"] < 1e-4
