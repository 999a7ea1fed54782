"""The faster paths give the same output as the plain ones: the apply path on the face box
(the default preset's attention is 0 outside it), the box alone for the live loop, the
frames kept planar, freed memory kept, and the live optimiser in a process of its own."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import torch

from vdf_stream.media.frames import image_to_batch
from vdf_stream.protection import perturb as P


@pytest.fixture(scope="module")
def face_frames(clip):
    """Two real frames of single_face.mp4 (the second without its face region) and the
    face regions the detector finds in them."""
    import av

    from vdf_stream.models.detection import FaceDetector
    from vdf_stream.models.mesh import choose_regions

    with av.open(str(clip("single_face.mp4"))) as container:
        images = [frame.to_ndarray(format="rgb24")
                  for _, frame in zip(range(2), container.decode(video=0))]
    frames = torch.cat([image_to_batch(image) for image in images])
    region, found = choose_regions(FaceDetector().detect(frames), tuple(frames.shape[-2:]))
    assert bool(found.all())
    return images, frames, region, found


def _params(height: int, width: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    params = P.make_params(1, height, width, init_scale=4 / 255, generator=generator)
    for tensor in (params.face_amplitude, params.face_phase, params.frame_amplitude,
                   params.frame_phase):
        tensor.normal_(0, 0.4, generator=generator)
    return params


@pytest.mark.parametrize("case", [
    {},  # the default preset's options
    {"chroma": 0.5, "levels": 1023.0},
    {"quantize": False, "gain": 0.6},
    {"absent": True},
])
def test_the_box_path_is_the_whole_frame_path(face_frames, case):
    _, frames, region, found = face_frames
    case = dict(case)
    if case.pop("absent", False):
        found = torch.tensor([True, False])
    options = {"chroma": 0.0, "texture_floor": 0.15, "region_floor": 0.0,
               "texture_reference": 0.03, **case}
    params = _params(*frames.shape[-2:])
    eps = 4 / 255
    with torch.no_grad():
        box_path = P.perturb(frames, params, region, eps, face_present=found, **options)
        whole = P.prepare(frames, region, eps, found, params.face_amplitude.shape[-2],
                          params.grid(), 0.0, 0.15, 0.03, levels=options.get("levels", 255.0))
        plain = P.perturb(frames, params, region, eps, face_present=found, prepared=whole,
                          **options)
    assert not whole.in_box
    assert torch.equal(box_path, plain)
    assert (box_path != frames).any()  # it did protect


def test_box_only_is_the_box_and_the_rest_is_the_input(face_frames):
    images, frames, region, found = face_frames
    frame, image = frames[:1], images[0]
    params = _params(*frame.shape[-2:])
    eps = 4 / 255
    options = {"chroma": 0.0, "texture_floor": 0.15, "region_floor": 0.0,
               "texture_reference": 0.03}
    with torch.no_grad():
        prepared = P.prepare_apply(frame, region[0], eps, found[:1], params, **options)
        box = P.perturb(frame, params, region[0], eps, face_present=found[:1],
                        prepared=prepared, box_only=True, **options)
        whole = P.perturb(frame, params, region[0], eps, face_present=found[:1], **options)
    assert prepared.in_box
    x0, y0, x1, y1 = prepared.box
    assert 0 < (x1 - x0) * (y1 - y0) < frame.shape[-1] * frame.shape[-2] / 2
    assert torch.equal(box, whole[..., y0:y1, x0:x1])
    outside = whole.clone()
    outside[..., y0:y1, x0:x1] = frame[..., y0:y1, x0:x1]
    assert torch.equal(outside, frame)  # outside the box, the 8-bit input exactly
    pixels = (whole[0] * 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(pixels[:y0], image[:y0]) and np.array_equal(pixels[y1:], image[y1:])


def test_presets_with_change_outside_the_face_take_the_whole_frame(face_frames):
    _, frames, region, found = face_frames
    params = _params(*frames.shape[-2:])
    prepared = P.prepare_apply(frames, region, 4 / 255, found, params, region_floor=0.5)
    assert not prepared.in_box and prepared.weight.shape[-2:] == frames.shape[-2:]


def test_decoded_frames_are_planar_floats():
    image = np.random.default_rng(0).integers(0, 256, (36, 64, 3), dtype=np.uint8)
    batch = image_to_batch(image)
    assert batch.is_contiguous() and batch.shape == (1, 3, 36, 64)
    assert torch.equal((batch[0] * 255).round().byte().permute(1, 2, 0),
                       torch.from_numpy(image))


def test_freed_memory_is_kept_and_threads_can_yield():
    from vdf_stream.resources import keep_freed_memory, lower_priority

    if not os.uname().sysname == "Linux":
        pytest.skip("glibc and per-thread priorities are Linux's")
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
    seen = {}

    def worker():
        seen["applied"] = lower_priority(5)
        seen["niceness"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"applied": True, "niceness": 5}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == 0  # only that thread


def test_capture_prepares_each_frame_on_a_thread_beside_decoding():
    from fractions import Fraction

    from vdf_stream.media.capture import PatternCapture

    capture = PatternCapture(size=(64, 36), rate=Fraction(60), frames=4)
    capture.prepare = lambda pixels: (threading.current_thread().name, int(pixels.sum()))
    capture.start()
    frames = []
    while len(frames) < 4:
        frame = capture.slot.get(timeout=5)
        if frame is None:
            break
        frames.append(frame)
    capture.stop()
    # on a thread of its own, so that decoding keeps the camera's pace
    assert frames and all(frame.prepared[0] == "prepare pattern" for frame in frames)
    assert all(frame.prepared[1] == int(frame.pixels.sum()) for frame in frames)


def test_the_optimiser_process_publishes_and_stops(face_frames):
    from vdf_stream.live.optimiser import Keyframe, ParameterBoard, Published, fallback_params
    from vdf_stream.live.protector import LiveOptions
    from vdf_stream.live.worker import OptimiserProcess, OptimiserProcessError

    images, frames, region, _ = face_frames
    height, width = frames.shape[-2:]
    options = LiveOptions(steps=2, publish_steps=1)
    board = ParameterBoard(Published(fallback_params(height, width, 4 / 255), 0, None, 0.0))
    optimiser = OptimiserProcess(board, torch.device("cpu"), options)
    optimiser.start()
    try:
        optimiser.warm_up(height, width)
        deadline = time.monotonic() + 60
        while board.publications == 0 and time.monotonic() < deadline:
            optimiser.offer(Keyframe(frames[:1], region[0], 7), images[0])
            time.sleep(0.05)
        assert board.publications > 0 and optimiser.error is None
        latest = board.latest()
        assert latest.keyframe_index == 7 and latest.generation >= 1
        assert latest.params.face_spatial.shape == (1, 3, 192, 192)
        assert not torch.equal(latest.params.face_spatial,
                               fallback_params(height, width, 4 / 255).face_spatial)
        while optimiser.steps == 0 and time.monotonic() < deadline:  # its counters follow
            time.sleep(0.05)
        assert optimiser.decisions["new"] >= 1 and optimiser.steps >= 1
        optimiser._process.kill()  # a child that dies is an error of the run, in one line
        deadline = time.monotonic() + 10
        while optimiser.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert isinstance(optimiser.error, OptimiserProcessError)
        assert "ended unexpectedly" in str(optimiser.error)
    finally:
        optimiser.stop()
    assert not optimiser._process.is_alive()
