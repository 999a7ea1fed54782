"""The device-side colour conversion agrees with FFmpeg's swscale, for each matrix and range."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdf_stream.media import colour
from vdf_stream.media.frames import Frames

from helpers import index_pattern

SWSCALE = {"bt601": "itu601", "bt709": "itu709", "bt2020": "bt2020"}


def _smooth_rgb(height=64, width=96):
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // (width - 1), y * 255 // (height - 1),
                    (x + y) * 255 // (width + height - 2)], axis=-1)
    return rgb.astype(np.uint8)


@pytest.mark.parametrize("matrix", ["bt601", "bt709", "bt2020"])
@pytest.mark.parametrize("colour_range", ["limited", "full"])
def test_yuv420p_to_rgb_matches_swscale(matrix, colour_range):
    import av

    rgb = _smooth_rgb()
    av_range = "JPEG" if colour_range == "full" else "MPEG"
    frame = av.VideoFrame.from_ndarray(rgb, "rgb24").reformat(
        format="yuv420p", dst_colorspace=SWSCALE[matrix], src_color_range="JPEG",
        dst_color_range=av_range)
    i420 = frame.to_ndarray()
    reference = frame.to_ndarray(format="rgb24", src_colorspace=SWSCALE[matrix],
                                 src_color_range=av_range, dst_color_range="JPEG")
    ours = colour.yuv420p_to_rgb(torch.from_numpy(i420)[None, None], matrix, colour_range)
    ours = (ours[0].permute(1, 2, 0) * 255).round().numpy()
    difference = np.abs(ours - reference.astype(np.float64))
    # the same matrix and range: most pixels agree to a level; chroma upsampling and
    # swscale's fast rounding differ by a few levels at most
    assert np.median(difference) <= 1.0
    assert difference.max() <= 6.0
    # and ours is at least as close to the RGB that was encoded as swscale's is
    ours_error = np.abs(ours - rgb).mean()
    swscale_error = np.abs(reference.astype(np.float64) - rgb).mean()
    assert ours_error <= swscale_error + 0.25


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
def test_rgb_to_yuv420p_matches_swscale(matrix):
    import av

    rgb = _smooth_rgb()
    reference = av.VideoFrame.from_ndarray(rgb, "rgb24").reformat(
        format="yuv420p", dst_colorspace=SWSCALE[matrix], src_color_range="JPEG",
        dst_color_range="MPEG").to_ndarray().astype(np.int32)
    ours = colour.rgb_to_yuv420p(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255,
                                 matrix, "limited")[0, 0].numpy().astype(np.int32)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= 2


def test_round_trip_is_close_and_input_is_not_modified():
    rgb = torch.from_numpy(index_pattern(3, 64, 48)).permute(2, 0, 1)[None].float() / 255
    before = rgb.clone()
    i420 = colour.rgb_to_yuv420p(rgb)
    back = colour.yuv420p_to_rgb(i420)
    assert torch.equal(rgb, before)
    assert i420.shape == (1, 1, 72, 64) and i420.dtype == torch.uint8
    # 4:2:0 loses chroma detail at edges; flat areas come back within a few levels
    assert (back - rgb).abs().mean() < 4 / 255


def test_convert_keeps_timing_and_rejects_odd_sizes():
    data = torch.rand(2, 3, 8, 10)
    frames = Frames(data, "rgbf32", [0, 5], [0, 1], 1)
    converted = colour.convert(frames, "yuv420p")
    assert converted.format == "yuv420p" and converted.pts == [0, 5]
    assert converted.height == 8 and converted.width == 10
    assert colour.convert(frames, "rgbf32") is frames
    with pytest.raises(ValueError, match="even"):
        colour.rgb_to_yuv420p(torch.rand(1, 3, 7, 10))


def test_batched_equals_unbatched():
    data = torch.rand(3, 3, 16, 16)
    whole = colour.rgb_to_yuv420p(data)
    parts = torch.cat([colour.rgb_to_yuv420p(data[i:i + 1]) for i in range(3)])
    assert torch.equal(whole, parts)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    data = torch.rand(2, 3, 32, 48)
    cpu = colour.rgb_to_yuv420p(data, "bt709")
    gpu = colour.rgb_to_yuv420p(data.cuda(), "bt709").cpu()
    assert (cpu.int() - gpu.int()).abs().max() <= 1
    back_cpu = colour.yuv420p_to_rgb(cpu, "bt709")
    back_gpu = colour.yuv420p_to_rgb(cpu.cuda(), "bt709").cpu()
    assert torch.allclose(back_cpu, back_gpu, atol=1e-5)


def test_rgb48_carries_more_than_8_bits_and_converts_to_every_layout():
    data = torch.linspace(0, 1, 3 * 8 * 10).reshape(1, 3, 8, 10)
    frames = Frames(data, "rgbf32", [0], [0], 1)
    deep = colour.convert(frames, "rgb48")
    assert deep.data.dtype == torch.uint16 and deep.data.shape == (1, 3, 8, 10)
    back = colour.convert(deep, "rgbf32").data
    assert (back - data).abs().max() <= 0.5 / 65535 + 1e-7  # 16-bit steps, not 8-bit ones
    assert (colour.convert(deep, "rgb24").data == colour.to_uint8(data)).all()
    assert colour.convert(deep, "yuv420p").data.shape == (1, 1, 12, 10)
    assert torch.equal(data, frames.data)  # the input is not modified


@pytest.mark.cuda
def test_rgb48_cuda_matches_cpu():
    data = torch.rand(2, 3, 16, 16)
    frames = Frames(data, "rgbf32", [0, 1], [0, 1], 1)
    cpu = colour.convert(frames, "rgb48").data
    gpu = colour.convert(Frames(data.cuda(), "rgbf32", [0, 1], [0, 1], 1), "rgb48").data
    assert torch.equal(cpu, gpu.cpu())
    assert torch.allclose(colour.convert(Frames(gpu, "rgb48", [0, 1], [0, 1], 1), "rgbf32")
                          .data.cpu(), colour.convert(Frames(cpu, "rgb48", [0, 1], [0, 1], 1),
                                                      "rgbf32").data)
