"""Live protection (``vdf_stream.live``): fake cameras (a real clip played at its real pace,
a generated test pattern), a fake virtual-camera backend registered with pyvirtualcam, and
the errors of the command line. A real v4l2loopback test runs where such a device exists."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vdf_stream import live
from vdf_stream.cli.main import main
from vdf_stream.errors import EXIT_INPUT, EXIT_OUTPUT, DamagedInputError

EPS_LEVELS = 4  # medium: eps = 4/255


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the machine's cores are shared by the capture, the protector and
    the optimiser (and by other test runs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class FakeVirtualCamera:
    """A pyvirtualcam backend that keeps what it is sent (the interface of
    ``pyvirtualcam.Backend``)."""

    instances: list = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.closed = False
        FakeVirtualCamera.instances.append(self)

    def send(self, frame):
        self.frames.append(frame.copy())
        self.times.append(time.perf_counter())

    def close(self):
        self.closed = True

    def device(self):
        return "fake-virtual-camera"

    def native_fourcc(self):
        return None


@pytest.fixture
def fake_backend():
    pyvirtualcam = pytest.importorskip("pyvirtualcam")
    pyvirtualcam.register_backend("vdf-test", FakeVirtualCamera)
    FakeVirtualCamera.instances.clear()
    yield FakeVirtualCamera
    FakeVirtualCamera.instances.clear()
    # registration has no public undo; left registered, it would answer every later Camera()
    from pyvirtualcam import camera

    camera.BACKENDS.pop("vdf-test", None)


class Sources(live.Output):
    """Keeps the captured (clean) frame of every delivered frame, and when it was delivered."""

    def __init__(self):
        self.frames: list[live.CapturedFrame] = []
        self.times: list[float] = []

    def write(self, pixels, frame):
        self.frames.append(frame)
        self.times.append(time.perf_counter())


def assert_protected(delivered: list[np.ndarray], sources: list[live.CapturedFrame],
                     eps_levels: int = EPS_LEVELS) -> None:
    assert len(delivered) == len(sources) > 0
    for output, source in zip(delivered, sources):
        output = output.reshape(source.pixels.shape)
        delta = np.abs(output.astype(np.int16) - source.pixels.astype(np.int16))
        assert delta.max() > 0, f"frame {source.index} was delivered unchanged"
        assert delta.max() <= eps_levels, f"frame {source.index}: |delta| {delta.max()} > eps"


def test_latest_frame_slot_keeps_only_the_newest():
    slot = live.LatestFrame()
    for item in range(5):
        slot.put(item)
    assert slot.get(timeout=0) == 4 and slot.dropped == 4
    assert slot.get(timeout=0.01) is None  # emptied
    slot.put(5)
    slot.close()
    assert slot.get() == 5 and slot.get() is None  # what was left, then the end


def test_real_clip_to_fake_virtual_camera(clip, fake_backend):
    """single_face.mp4 played three times at its real pace (30 fps) through the optimiser and the
    protector into a virtual camera: every frame protected within eps, in order, latency
    measured, nothing delivered in a pile after the capture ended."""
    capture = live.RealtimeCapture(str(clip("single_face.mp4")), loops=3)
    camera = live.VirtualCameraOutput(capture.info.width, capture.info.height, 30,
                                      backend="vdf-test")
    sources = Sources()
    options = live.LiveOptions(steps=4, publish_steps=1, refine_steps=2)
    run = live.LiveProtector(capture, [camera, sources], options)
    stats = run.run()
    backend = fake_backend.instances[0]
    assert backend.closed
    assert_protected(backend.frames, sources.frames)
    indices = [frame.index for frame in sources.frames]
    assert indices == sorted(set(indices)) == stats.delivered_indices
    assert stats.captured == 216 == stats.delivered + stats.dropped
    assert len(stats.latencies) == stats.delivered
    assert 0 < stats.latency_ms(0.5) <= stats.latency_ms(0.95) < 5000
    # the one-slot buffers: once the last frame was captured, at most three frames are left
    # to deliver (the one being protected then, the one prepared and waiting, and the last
    # one, being prepared), never a pile
    assert sum(t > capture.last_frame_at for t in backend.times) <= 3
    # the optimiser published parameters and later frames used them
    assert stats.publications >= 1 and stats.fallback_frames < stats.delivered
    summary = stats.summary()
    assert summary["added_latency_ms"]["p95"] > 0 and summary["delivered"] == stats.delivered


def test_pattern_drops_at_capture_when_the_protector_is_slow(fake_backend):
    """A generated pattern (no face: the fallback's frame term protects it, with the high
    preset, which keeps half its budget outside the face; medium changes the face only) at
    30 fps into a protector slowed to ~8 fps: frames are dropped at capture and counted, the
    delivered ones are protected and in order, latency stays bounded (no queue builds up)."""
    capture = live.PatternCapture((320, 180), Fraction(30), frames=45)
    camera = live.VirtualCameraOutput(320, 180, 30, backend="vdf-test")
    sources = Sources()
    run = live.LiveProtector(capture, [camera, sources],
                             live.LiveOptions(optimise=False, strength="high"), slow_down=0.12)
    stats = run.run()
    assert stats.dropped > 10 and stats.captured == 45 == stats.delivered + stats.dropped
    assert_protected(fake_backend.instances[0].frames, sources.frames, eps_levels=6)
    indices = [frame.index for frame in sources.frames]
    assert indices == sorted(set(indices))
    # each delivered frame waited at most ~one processing time plus its own
    assert stats.latency_ms(0.95) < 1000


def test_hold_delivers_nothing_before_optimised_parameters():
    capture = live.PatternCapture((160, 96), Fraction(30), frames=6)
    sources = Sources()
    options = live.LiveOptions(optimise=False, fallback="hold")
    stats = live.LiveProtector(capture, [sources], options).run()
    assert stats.delivered == 0 and stats.held + stats.dropped == 6 and not sources.frames


class BrokenCamera(live.PatternCapture):
    """A camera unplugged after a few frames."""

    def _frames(self):
        for count, item in enumerate(super()._frames()):
            if count == 8:
                raise DamagedInputError("camera pattern stopped delivering frames (unplugged?)")
            yield item


def _decoded_frames(path: Path) -> list:
    import av

    with av.open(str(path)) as container:
        return [frame.pts for frame in container.decode(video=0)]


def test_unplugged_camera_finalises_the_recording(tmp_path):
    capture = BrokenCamera((160, 96), Fraction(30))
    path = tmp_path / "rec.mp4"
    recording = live.RecordOutput(str(path), capture.info)
    run = live.LiveProtector(capture, [recording], live.LiveOptions(optimise=False))
    with pytest.raises(DamagedInputError, match="unplugged"):
        run.run()
    pts = _decoded_frames(path)
    assert len(pts) == run.stats.delivered > 0 and pts == sorted(pts)


def test_ctrl_c_finalises_the_recording(tmp_path):
    capture = live.PatternCapture((160, 96), Fraction(30))

    class Interrupting(live.Output):
        def write(self, pixels, frame):
            if frame.index >= 5:
                raise KeyboardInterrupt()

    path = tmp_path / "rec.mp4"
    recording = live.RecordOutput(str(path), capture.info)
    run = live.LiveProtector(capture, [recording, Interrupting()], live.LiveOptions(optimise=False))
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert len(_decoded_frames(path)) >= 1


def test_command_records_a_realtime_file(clip, tmp_path, capsys):
    record = tmp_path / "live.mp4"
    original = tmp_path / "original.mp4"
    code = main(["live", "--realtime", str(clip("single_face.mp4")), "--size", "320x180",
                 "--record", str(record), "--record-original", str(original),
                 "--strength", "low", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "frames delivered" in err and "latency" in err
    protected, clean = _decoded_frames(record), _decoded_frames(original)
    assert len(protected) == len(clean) > 0 and protected == clean


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_missing_camera_is_one_line(tmp_path, capsys):
    code = main(["live", "--camera", str(tmp_path / "video99"), "--record", str(tmp_path / "x.mp4")])
    assert code == EXIT_INPUT
    assert "no such device" in _one_line_error(capsys)
    assert not (tmp_path / "x.mp4").exists()


def test_missing_pyvirtualcam_says_what_to_install(clip, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)  # import fails
    code = main(["live", "--virtual-cam", "--realtime", str(clip("single_face.mp4"))])
    assert code == EXIT_OUTPUT
    assert 'pip install "vdf-stream[live]"' in _one_line_error(capsys)


def _loopback_devices() -> list[str]:
    return [camera.device for camera in live.list_cameras() if camera.loopback]


def test_missing_virtual_camera_device_says_how_to_load_it(clip, capsys):
    pytest.importorskip("pyvirtualcam")
    if _loopback_devices():
        pytest.skip("a v4l2loopback device exists here")
    code = main(["live", "--virtual-cam", "--realtime", str(clip("single_face.mp4"))])
    assert code == EXIT_OUTPUT
    line = _one_line_error(capsys)
    assert "modprobe v4l2loopback" in line and "OBS" in line


def test_no_output_chosen_is_a_usage_error(capsys):
    assert main(["live", "--realtime", "x.mp4"]) == 2
    assert "--virtual-cam" in _one_line_error(capsys)


@pytest.mark.skipif(not _loopback_devices(), reason="no v4l2loopback device (sudo modprobe "
                                                     "v4l2loopback devices=1 exclusive_caps=1)")
def test_real_v4l2loopback_device():
    """Protected frames into a real loopback device, read back from it."""
    import av

    pytest.importorskip("pyvirtualcam")
    device = _loopback_devices()[0]
    capture = live.PatternCapture((320, 180), Fraction(30), frames=60)
    camera = live.VirtualCameraOutput(320, 180, 30, device=device)
    received = []

    def read_back():
        try:
            with av.open(device, format="v4l2") as container:
                for frame in container.decode(video=0):
                    received.append(frame.to_ndarray(format="rgb24"))
                    if len(received) >= 5:
                        return
        except Exception as error:  # reported below
            received.append(error)

    reader = threading.Thread(target=read_back, daemon=True)
    run = live.LiveProtector(capture, [camera], live.LiveOptions(optimise=False))
    reader.start()
    stats = run.run()
    reader.join(5)
    assert stats.delivered > 0 and camera.camera.frames_sent == stats.delivered
    frames = [item for item in received if isinstance(item, np.ndarray)]
    assert frames and frames[0].shape == (180, 320, 3), received[:1]


def test_a_file_played_live_starts_its_clock_when_the_protector_is_ready(clip):
    """A file as input (``--realtime``) waits for the protector's first frame before its
    clock starts: a start-up slower than the clip drops nothing (it dropped all but 2 of 72
    frames on a loaded machine)."""
    capture = live.RealtimeCapture(str(clip("single_face.mp4")))
    capture.start()
    try:
        time.sleep(1.0)  # start-up: 30 frames of the clip
        first = capture.slot.get(timeout=5)
        assert first is not None and first.index == 0 and capture.dropped == 0
        capture.consumer_ready.set()
        seen = [first.index]
        while len(seen) < 10:
            frame = capture.slot.get(timeout=5)
            assert frame is not None
            seen.append(frame.index)
        assert capture.dropped == 0 and seen == list(range(10))
    finally:
        capture.stop()
