"""Frames are never lost, duplicated or reordered, through files and every pipe format."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from helpers import decode_all, index_pattern, make_clip, psnr, read_index, run_cli


def _indices(frames):
    return [read_index(frame) for frame in frames]


def test_file_to_file_keeps_every_frame_in_order_and_timestamps(tmp_path):
    source = make_clip(tmp_path / "in.mp4", frames=40)
    result = run_cli("protect", source, "-o", tmp_path / "out.mp4", "--vf", "null", "-q")
    assert result.returncode == 0, result.stderr.decode()
    frames, pts, time_base = decode_all(tmp_path / "out.mp4")
    _, source_pts, source_time_base = decode_all(source)
    assert _indices(frames) == list(range(40))
    assert [p * time_base for p in pts] == [p * source_time_base for p in source_pts]


def test_default_output_name_follows_input(tmp_path):
    source = make_clip(tmp_path / "talk.mp4", frames=5)
    result = run_cli("protect", source, "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "talk_protected.mp4").is_file()


def test_variable_frame_rate_stays_variable(tmp_path):
    pts = [0, 40, 80, 200, 233, 266, 500, 540, 900, 901, 1000, 1400]
    source = make_clip(tmp_path / "vfr.mkv", frames=len(pts), pts=pts)
    for name in ("out.mkv", "out.mp4"):
        result = run_cli("protect", source, "-o", tmp_path / name, "-q")
        assert result.returncode == 0, result.stderr.decode()
        frames, out_pts, time_base = decode_all(tmp_path / name)
        assert _indices(frames) == list(range(len(pts)))
        assert [Fraction(p) * time_base for p in out_pts] == [Fraction(p, 1000) for p in pts]


@pytest.mark.parametrize("graph", ["null", "scale=w=160:h=120,scale=w=320:h=240",
                                   "gaussian_blur=sigma=0.5", "median", "jpeg=quality=95",
                                   # vdf holds frames while its apply thread works
                                   "vdf=quiet=1,scale=w=320:h=240", "scale=w=320:h=240,vdf=quiet=1"])
def test_graphs_keep_count_and_order(tmp_path, graph):
    source = make_clip(tmp_path / "in.mp4", frames=12)
    result = run_cli("protect", source, "-o", tmp_path / "out.mkv", "--vf", graph, "-q",
                     "--batch-size", "4")
    assert result.returncode == 0, result.stderr.decode()
    frames, _, _ = decode_all(tmp_path / "out.mkv")
    assert _indices(frames) == list(range(12))


def _y4m(frames_rgb, width, height):
    """Encode RGB frames as y4m (4:4:4 first converted by PyAV to yuv420p)."""
    import av

    header = f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\n".encode()
    body = []
    for rgb in frames_rgb:
        frame = av.VideoFrame.from_ndarray(rgb, "rgb24").reformat(format="yuv420p")
        body.append(b"FRAME\n" + frame.to_ndarray().tobytes())
    return header + b"".join(body)


def test_y4m_in_y4m_out_is_bit_exact_with_null(tmp_path):
    width, height = 320, 240
    data = _y4m([index_pattern(i, width, height) for i in range(20)], width, height)
    result = run_cli("protect", "-", "-o", "-", "-q", input=data)
    assert result.returncode == 0, result.stderr.decode()
    header, _, _ = result.stdout.partition(b"\n")
    assert header.startswith(b"YUV4MPEG2 W320 H240 F25:1")
    # frames pass untouched: same bytes after the header
    assert result.stdout.split(b"\n", 1)[1] == data.split(b"\n", 1)[1]
    assert result.stderr == b""


def test_nut_in_nut_out_keeps_timestamps(tmp_path):
    pts = [0, 40, 120, 160, 400, 440]
    source = make_clip(tmp_path / "vfr.mkv", frames=len(pts), pts=pts)
    import av

    nut = tmp_path / "in.nut"
    with av.open(str(source)) as inp, av.open(str(nut), "w") as out:
        stream = out.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for frame in inp.decode(video=0):
            frame.pts = frame.pts  # keep
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    result = run_cli("protect", "-", "-o", "-", "-f", "nut", "-q", input=nut.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    frames, out_pts, time_base = decode_all(result.stdout, stream_format="nut")
    assert _indices(frames) == list(range(len(pts)))
    assert [Fraction(p) * time_base for p in out_pts] == [Fraction(p, 1000) for p in pts]


@pytest.mark.parametrize("pix_fmt", ["rgb24", "bgr24", "yuv420p"])
def test_raw_in_raw_out(pix_fmt):
    width, height = 320, 240
    import av

    frames = []
    for i in range(10):
        rgb = index_pattern(i, width, height)
        if pix_fmt == "rgb24":
            frames.append(rgb.tobytes())
        elif pix_fmt == "bgr24":
            frames.append(rgb[:, :, ::-1].tobytes())
        else:
            frames.append(av.VideoFrame.from_ndarray(rgb, "rgb24").reformat(
                format="yuv420p").to_ndarray().tobytes())
    data = b"".join(frames)
    result = run_cli("protect", "-", "--size", f"{width}x{height}", "--fps", "25",
                     "--pix-fmt", pix_fmt, "-o", "-", "-f", "rawvideo", "-q", input=data)
    assert result.returncode == 0, result.stderr.decode()
    if pix_fmt == "yuv420p":
        assert result.stdout == data  # untouched by null
    else:
        out = np.frombuffer(result.stdout, np.uint8).reshape(10, height, width, 3)
        original = np.frombuffer(data, np.uint8).reshape(10, height, width, 3)
        assert np.array_equal(out, original)  # rgb passes through exactly


def test_odd_size_raw_rgb_passes_and_odd_yuv420_output_is_refused(tmp_path):
    width, height = 321, 241
    data = b"".join(index_pattern(i, width, height).tobytes() for i in range(6))
    result = run_cli("protect", "-", "--size", f"{width}x{height}", "--fps", "30000/1001",
                     "--pix-fmt", "rgb24", "-o", "-", "-f", "rawvideo", "-q", input=data)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == data
    # yuv420p cannot hold 321x241: one clear line, exit 4, nothing written
    result = run_cli("protect", "-", "--size", f"{width}x{height}", "--fps", "25",
                     "--pix-fmt", "rgb24", "-o", tmp_path / "odd.mp4", "-q", input=data)
    assert result.returncode == 4
    assert b"odd" in result.stderr and result.stderr.count(b"\n") == 1
    assert not (tmp_path / "odd.mp4").exists()
    # ... but 4:4:4 can
    result = run_cli("protect", "-", "--size", f"{width}x{height}", "--fps", "25",
                     "--pix-fmt", "rgb24", "--output-pix-fmt", "yuv444p",
                     "-o", tmp_path / "odd.mkv", "-q", input=data)
    assert result.returncode == 0, result.stderr.decode()
    frames, _, _ = decode_all(tmp_path / "odd.mkv")
    assert [f.shape for f in frames] == [(height, width, 3)] * 6
    assert _indices(frames) == list(range(6))


def test_odd_size_file_with_scale_to_even(tmp_path):
    source = make_clip(tmp_path / "odd.mkv", frames=8, size=(321, 241), codec="ffv1",
                       pix_fmt="yuv444p")
    result = run_cli("protect", source, "-o", tmp_path / "even.mp4", "-q",
                     "--vf", "scale=w=320:h=-2")
    assert result.returncode == 0, result.stderr.decode()
    frames, _, _ = decode_all(tmp_path / "even.mp4")
    assert frames[0].shape == (240, 320, 3)
    assert _indices(frames) == list(range(8))


def test_python_api_iterate_and_protect(tmp_path):
    import vdf_stream

    source = make_clip(tmp_path / "in.mp4", frames=10)
    seen = []
    for frames in vdf_stream.iterate(str(source), batch_size=4):
        assert frames.data.dtype.is_floating_point and frames.data.shape[1:] == (3, 240, 320)
        seen += frames.indices
        for position, rgb in enumerate(frames.data):
            pixels = (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            assert read_index(pixels) == frames.indices[position]
    assert seen == list(range(10))
    stats = vdf_stream.protect(str(source), str(tmp_path / "api.mp4"), vf="null")
    assert stats.frames_in == stats.frames_out == 10
