"""10-bit input stays 10-bit: its bit depth, chroma and colour tags survive `protect`, the
filters get its samples unrounded, and where an output cannot keep them one line says why.

The clips are made by the ffmpeg command line, as a user's camera or editor would make them:
HEVC Main10 with HLG tags (a phone's HDR clip) and ProRes 4:2:2 10-bit.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from helpers import run_cli

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="the ffmpeg and ffprobe command lines make and read these clips")

HLG_TAGS = {"color_primaries": "bt2020", "color_transfer": "arib-std-b67",
            "color_space": "bt2020nc"}


def _ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def _probe(path) -> dict:
    result = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                             "stream=codec_name,profile,pix_fmt,color_primaries,color_transfer,"
                             "color_space", "-of", "json", str(path)],
                            capture_output=True, check=True)
    return json.loads(result.stdout)["streams"][0]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ten_bit")
    hlg = folder / "phone_hlg.mp4"  # the picture in BT.2020, tagged HLG, HEVC Main10
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x64:r=25", "-frames:v", 10,
            "-vf", "scale=out_color_matrix=bt2020:out_range=tv,format=yuv420p10le",
            "-c:v", "libx265", "-x265-params", "log-level=error",
            "-color_primaries", "bt2020", "-color_trc", "arib-std-b67", "-colorspace", "bt2020nc",
            hlg)
    prores = folder / "edit_prores.mov"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x64:r=25", "-frames:v", 10,
            "-c:v", "prores_ks", "-pix_fmt", "yuv422p10le", prores)
    # a grey ramp one 10-bit level per column (64 levels: 16 in 8 bits), 4:2:2
    ramp = folder / "ramp_prores.mov"
    _ffmpeg("-f", "lavfi", "-i",
            "nullsrc=s=64x64:r=25,format=yuv422p10le,geq=lum='480+X+Y/16':cb=512:cr=512",
            "-frames:v", 4, "-c:v", "prores_ks", ramp)
    return {"hlg": hlg, "prores": prores, "ramp": ramp}


def _luma_rows(path) -> list[np.ndarray]:
    """The 10-bit luma plane of every frame (rows of uint16 samples)."""
    import av

    planes = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            assert frame.format.name.endswith("10le"), frame.format.name
            plane = frame.planes[0]
            rows = np.frombuffer(plane, np.uint16).reshape(plane.height, -1)
            planes.append(rows[:, :plane.width].astype(np.int32))
    return planes


@pytest.mark.parametrize("name, graph, pix_fmt, profile", [
    ("hlg", "null", "yuv420p10le", "High 10"),
    ("hlg", "gaussian_blur=sigma=0.5", "yuv420p10le", "High 10"),
    ("prores", "null", "yuv422p10le", "High 4:2:2"),
    ("prores", "scale=w=32:h=32", "yuv422p10le", "High 4:2:2"),
])
def test_ten_bit_input_keeps_depth_chroma_and_tags(clips, tmp_path, name, graph, pix_fmt,
                                                  profile):
    source = clips[name]
    target = tmp_path / "out.mp4"
    result = run_cli("protect", source, "-o", target, "--vf", graph, "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""  # nothing was lost, so nothing to say
    stream, original = _probe(target), _probe(source)
    assert stream["codec_name"] == "h264" and stream["profile"] == profile
    assert stream["pix_fmt"] == original["pix_fmt"] == pix_fmt
    for tag in HLG_TAGS:  # the input's tags, whatever they are, are written back
        assert stream.get(tag) == original.get(tag)
    if name == "hlg":
        assert {tag: stream.get(tag) for tag in HLG_TAGS} == HLG_TAGS
    luma = np.concatenate([plane.ravel() for plane in _luma_rows(target)])
    assert np.mean(luma % 4 != 0) > 0.5  # not 8-bit samples shifted up


@pytest.mark.parametrize("codec, graph", [("ffv1", "null"), ("ffv1", "gaussian_blur=sigma=0.5"),
                                          ("prores_ks", "null")])
def test_ten_bit_samples_are_not_rounded_to_8_bits(clips, tmp_path, codec, graph):
    """A ramp one 10-bit level per column keeps its 64 levels (8 bits would keep 16)."""
    target = tmp_path / "out.mkv"
    result = run_cli("protect", clips["ramp"], "-o", target, "--vf", graph, "--codec", codec,
                     "-q")
    assert result.returncode == 0, result.stderr.decode()
    assert _probe(target)["pix_fmt"] == "yuv422p10le"
    source = _luma_rows(clips["ramp"])
    for before, after in zip(source, _luma_rows(target), strict=True):
        inner = after[8:-8, 8:-8]  # away from the blur's edges
        assert min(len(np.unique(row)) for row in inner) >= 44  # 48 columns, 48 levels
        if graph == "null":
            assert np.abs(after - before).max() <= 2


def test_filters_get_the_ten_bit_samples_in_float(clips, tmp_path):
    """What a float filter such as vdf receives from a 10-bit input: RGB off the 8-bit grid."""
    from vdf_stream.media.frames import Frames
    from vdf_stream.media.sinks import EncodeOptions, open_sink
    from vdf_stream.media.sources import open_source
    from vdf_stream.pipeline.engine import Engine
    from vdf_stream.pipeline.filter import Filter

    class Probe(Filter):
        name = "probe"
        formats = ("rgbf32",)

        def __init__(self):
            super().__init__()
            self.seen = []

        def process(self, frames: Frames) -> Frames:
            self.seen.append((frames.format, frames.data.clone()))
            return frames

    probe = Probe()
    with open_source(str(clips["ramp"])) as source:
        assert source.info.bit_depth == 10
        engine = Engine(source, [probe], lambda info: open_sink(
            str(tmp_path / "out.mkv"), info, EncodeOptions(codec="ffv1")))
        assert engine.decode_format == "rgb48" and engine.sink_layout == "rgb48"
        stats = engine.run()
    assert stats.frames_out == 4
    layout, data = probe.seen[0]
    assert layout == "rgbf32" and data.dtype.is_floating_point
    levels = data[0, 1, 32] * 255  # green along a row of the grey ramp
    assert (levels - levels.round()).abs().max() > 0.2  # between 8-bit levels
    assert len(levels.unique()) >= 60


def test_an_8_bit_only_encoder_says_why_in_one_line(clips, tmp_path):
    target = tmp_path / "out.mp4"
    result = run_cli("protect", clips["hlg"], "-o", target, "--vf", "null", "--codec", "mpeg4")
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stderr.decode().splitlines()
    said = [line for line in lines if "8 bits" in line]
    assert len(said) == 1, lines
    assert said[0].startswith("warning: mpeg4 encodes at most 8 bits here")
    assert "HLG (HDR) tags are kept on 8-bit samples" in said[0]
    assert _probe(target)["pix_fmt"] == "yuv420p"
    # asked for explicitly: said too
    result = run_cli("protect", clips["prores"], "-o", tmp_path / "o2.mp4", "--pix-fmt",
                     "yuv420p", "--vf", "null")
    assert result.returncode == 0, result.stderr.decode()
    assert "--pix-fmt yuv420p: the yuv422p10le input is written as yuv420p, its 10-bit " \
           "samples are rounded to 8 bits and its 4:2:2 colour becomes 4:2:0" in \
           result.stderr.decode()


def test_pipes_keep_ten_bits_in_nut_and_say_why_not_in_y4m(clips, tmp_path):
    import io

    import av

    result = run_cli("protect", clips["prores"], "-o", "-", "-f", "nut", "--vf", "null", "-q")
    assert result.returncode == 0, result.stderr.decode()
    with av.open(io.BytesIO(result.stdout), format="nut") as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 10 and frames[0].format.name == "yuv422p10le"
    result = run_cli("protect", clips["prores"], "-o", "-", "--vf", "null")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.startswith(b"YUV4MPEG2 W64 H64 F25:1")
    assert "y4m output carries 8 bits here" in result.stderr.decode()
    assert "(-f nut keeps them)" in result.stderr.decode()


def test_ten_bit_lossless_round_trip_of_the_index_clip_stays_close(clips, tmp_path):
    """The RGB path of a 4:2:2 10-bit clip through `null` and a lossless encoder: within a
    few 10-bit levels of the input (chroma is resampled twice, as for 8-bit 4:2:2)."""
    target = tmp_path / "out.mkv"
    result = run_cli("protect", clips["prores"], "-o", target, "--codec", "ffv1", "--vf", "null",
                     "-q")
    assert result.returncode == 0, result.stderr.decode()
    for before, after in zip(_luma_rows(clips["prores"]), _luma_rows(target), strict=True):
        assert np.mean(np.abs(after - before)) < 4  # one 8-bit level is 4
