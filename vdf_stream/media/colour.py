"""Colour conversion between the frame layouts of :mod:`vdf_stream.media.frames`, on any device.

Pure functions on tensors; the input is never modified. On the CPU the engine lets
FFmpeg's swscale convert while decoding and encoding (it is faster there); on a GPU these
functions do it on the device so that frames never travel as RGB over the bus.

YUV <-> RGB uses the matrix of ``colorspace`` (BT.601, BT.709, BT.2020 non-constant
luminance) and ``color_range`` ("limited": Y in 16-235, chroma in 16-240; "full": 0-255).
Chroma is upsampled bilinearly (centre-sited) and downsampled by 2x2 averaging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .frames import Frames, planar_float

# (Kr, Kb) luma coefficients of each matrix.
LUMA_COEFFICIENTS = {
    "bt601": (0.299, 0.114),
    "bt709": (0.2126, 0.0722),
    "bt2020": (0.2627, 0.0593),
}


def _coefficients(colorspace: str) -> tuple[float, float, float]:
    try:
        kr, kb = LUMA_COEFFICIENTS[colorspace]
    except KeyError:
        raise ValueError(
            f"unknown colorspace {colorspace!r}; expected one of {sorted(LUMA_COEFFICIENTS)}"
        ) from None
    return kr, 1.0 - kr - kb, kb


def _check_yuv420p(data: torch.Tensor) -> tuple[int, int]:
    if data.dim() != 4 or data.shape[1] != 1 or data.dtype != torch.uint8:
        raise ValueError(
            f"yuv420p frames must be uint8 (B, 1, H*3/2, W), got {data.dtype} {tuple(data.shape)}"
        )
    rows, width = data.shape[2], data.shape[3]
    height = rows * 2 // 3
    if height * 3 // 2 != rows or height % 2 or width % 2:
        raise ValueError(f"yuv420p frames need an even width and height, got {width}x{height}")
    return height, width


def split_yuv420p(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views of the Y, U and V planes of I420 frames: (B,1,H,W), (B,1,H/2,W/2) twice."""
    height, width = _check_yuv420p(data)
    batch = data.shape[0]
    luma = data[:, :, :height, :]
    chroma = data[:, 0, height:, :].reshape(batch, 2, height // 2, width // 2)
    return luma, chroma[:, 0:1], chroma[:, 1:2]


def yuv420p_to_rgb(data: torch.Tensor, colorspace: str = "bt601",
                   color_range: str = "limited") -> torch.Tensor:
    """I420 ``(B, 1, H*3/2, W)`` uint8 -> RGB ``(B, 3, H, W)`` float32 in [0, 1]."""
    kr, kg, kb = _coefficients(colorspace)
    luma, u, v = split_yuv420p(data)
    height, width = luma.shape[2], luma.shape[3]
    y = luma.float()
    chroma = torch.cat([u, v], dim=1).float()
    chroma = F.interpolate(chroma, size=(height, width), mode="bilinear", align_corners=False)
    if color_range == "full":
        y = y / 255.0
        chroma = (chroma - 128.0) / 255.0
    else:
        y = (y - 16.0) / 219.0
        chroma = (chroma - 128.0) / 224.0
    cb, cr = chroma[:, 0:1], chroma[:, 1:2]
    red = y + 2.0 * (1.0 - kr) * cr
    blue = y + 2.0 * (1.0 - kb) * cb
    green = (y - kr * red - kb * blue) / kg
    return torch.cat([red, green, blue], dim=1).clamp_(0.0, 1.0)


def rgb_to_yuv420p(rgb: torch.Tensor, colorspace: str = "bt601",
                   color_range: str = "limited") -> torch.Tensor:
    """RGB ``(B, 3, H, W)`` float in [0, 1] -> I420 ``(B, 1, H*3/2, W)`` uint8 (rounded)."""
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"RGB frames must be (B, 3, H, W), got {tuple(rgb.shape)}")
    batch, _, height, width = rgb.shape
    if height % 2 or width % 2:
        raise ValueError(f"4:2:0 output needs an even width and height, got {width}x{height}")
    kr, kg, kb = _coefficients(colorspace)
    rgb = rgb.float()
    red, green, blue = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = kr * red + kg * green + kb * blue
    cb = (blue - y) / (2.0 * (1.0 - kb))
    cr = (red - y) / (2.0 * (1.0 - kr))
    chroma = F.avg_pool2d(torch.cat([cb, cr], dim=1), 2)
    if color_range == "full":
        y = y * 255.0
        chroma = chroma * 255.0 + 128.0
    else:
        y = y * 219.0 + 16.0
        chroma = chroma * 224.0 + 128.0
    y = y.round_().clamp_(0, 255).to(torch.uint8)
    chroma = chroma.round_().clamp_(0, 255).to(torch.uint8)
    planes = chroma.reshape(batch, 1, height // 2, width)  # U plane then V plane, packed
    return torch.cat([y, planes], dim=2)


def to_float(rgb24: torch.Tensor) -> torch.Tensor:
    return planar_float(rgb24).div_(255.0)


def to_uint8(rgbf32: torch.Tensor) -> torch.Tensor:
    return rgbf32.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def rgb48_to_float(rgb48: torch.Tensor) -> torch.Tensor:
    return planar_float(rgb48).div_(65535.0)


def to_uint16(rgbf32: torch.Tensor) -> torch.Tensor:
    """RGB float in [0, 1] -> ``rgb48`` (uint16, [0, 65535], rounded)."""
    return rgbf32.mul(65535.0).round_().clamp_(0, 65535).to(torch.uint16)


def convert(frames: Frames, format: str, colorspace: str = "bt601",
            color_range: str = "limited") -> Frames:
    """Return ``frames`` in layout ``format`` (the same object when it already is)."""
    source = frames.format
    if source == format:
        return frames
    data = frames.data
    if source == "yuv420p":
        data = yuv420p_to_rgb(data, colorspace, color_range)
        source = "rgbf32"
    elif source == "rgb24":
        data = to_float(data)
        source = "rgbf32"
    elif source == "rgb48":
        data = rgb48_to_float(data)
        source = "rgbf32"
    # now rgbf32
    if format == "rgbf32":
        result = data
    elif format == "rgb24":
        result = to_uint8(data)
    elif format == "rgb48":
        result = to_uint16(data)
    elif format == "yuv420p":
        result = rgb_to_yuv420p(data, colorspace, color_range)
    else:
        raise ValueError(f"cannot convert to unknown format {format!r}")
    return frames.with_data(result, format)
