"""What an adversary or a platform does to a published video: the degradations of
``vdf-stream eval --robustness``, and the tools that apply them to uint8 RGB batches.

:func:`degradations` lists them (H.264 re-encoding at four CRFs, down-and-up scaling, JPEG,
Gaussian blur, a median filter, a bilateral denoiser); :class:`Degrader` applies one to a
batch, through the built-in filters where one exists, :func:`h264_roundtrip` (libx264 in
memory, as a re-encoding platform would) or :func:`bilateral_denoise` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from ..media.frames import Frames, VideoInfo

H264_PRESET = "medium"


@dataclass(frozen=True)
class Degradation:
    """A transformation an adversary or a platform applies to a published video.

    ``graph`` is a vdf-stream filter graph for the degradations that are built-in filters;
    ``h264`` and ``bilateral`` are implemented here.
    """

    name: str
    label: str
    params: dict = field(default_factory=dict)
    graph: str | None = None


def degradations(width: int, height: int) -> list[Degradation]:
    """The degradations of ``--robustness`` for frames of ``width x height``."""
    items = [Degradation("h264", f"H.264 CRF {crf}", {"crf": crf, "preset": H264_PRESET,
                                                      "codec": "libx264"})
             for crf in (18, 23, 28, 35)]
    items += [Degradation("rescale", f"scale x{factor} and back",
                          {"factor": factor, "interpolation": "bicubic"},
                          f"scale=factor={factor},scale=w={width}:h={height}")
              for factor in (0.5, 0.75)]
    items += [Degradation("jpeg", f"JPEG q{quality}", {"quality": quality},
                          f"jpeg=quality={quality}") for quality in (90, 75, 50)]
    items += [Degradation("gaussian_blur", f"Gaussian blur sigma {sigma}", {"sigma": sigma},
                          f"gaussian_blur=sigma={sigma}") for sigma in (0.5, 1.0)]
    items.append(Degradation("median", "median 3x3", {"size": 3}, "median=size=3"))
    items.append(Degradation("bilateral", "bilateral denoiser",
                             {"radius": 3, "sigma_space": 2.0, "sigma_color": 0.1}))
    return items


def bilateral_denoise(images: torch.Tensor, radius: int = 3, sigma_space: float = 2.0,
                      sigma_color: float = 0.1) -> torch.Tensor:
    """Edge-preserving bilateral filter, the colour distance taken jointly over RGB.

    ``out(p) = sum_q w(p, q) in(q) / sum_q w(p, q)`` over the ``(2 radius + 1)^2`` window,
    ``w = exp(-|p - q|^2 / (2 sigma_space^2) - |in(p) - in(q)|^2 / (2 sigma_color^2))``
    with colours in [0, 1] (``sigma_color`` 0.1 is about 25 levels: it flattens noise of a
    few levels and keeps edges). Borders mirrored.

    Args:
        images: uint8 RGB ``(B, 3, H, W)``.

    Returns:
        uint8 RGB of the same shape, on the same device.
    """
    from ..media.pixels import reflect_pad2d

    if images.dim() != 4 or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    height, width = images.shape[-2:]
    values = images.float().div_(255.0)
    padded = reflect_pad2d(values, radius)
    total = torch.zeros_like(values)
    weight_sum = torch.zeros_like(values[:, :1])
    colour_scale = -1.0 / (2 * sigma_color**2)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            spatial = math.exp(-(dx * dx + dy * dy) / (2 * sigma_space**2))
            shifted = padded[..., radius + dy: radius + dy + height, radius + dx: radius + dx + width]
            distance = (shifted - values).square_().sum(dim=1, keepdim=True)
            weight = distance.mul_(colour_scale).exp_().mul_(spatial)
            total.addcmul_(shifted, weight)
            weight_sum.add_(weight)
    return total.div_(weight_sum).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)


def h264_roundtrip(images: torch.Tensor, crf: float, info: VideoInfo,
                   preset: str = H264_PRESET) -> torch.Tensor:
    """Encode frames as one H.264 sequence with libx264 at ``crf`` and decode them back,
    in memory (PyAV), as a re-encoding platform would.

    The frames are converted to YUV 4:2:0 (4:4:4 for odd sizes) with the stream's colour
    matrix and range, encoded at the stream's frame rate (25 when unknown) starting with a
    keyframe, decoded by FFmpeg's H.264 decoder and converted back to RGB.

    Args:
        images: uint8 RGB ``(B, 3, H, W)`` (any device; coded on the CPU).

    Returns:
        uint8 RGB of the same shape on the CPU.
    """
    import av

    from ..media.sources import SWSCALE_COLORSPACE, frame_to_array

    if images.dim() != 4 or images.dtype != torch.uint8 or images.shape[1] != 3:
        raise ValueError(f"images must be uint8 (B, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    count, _, height, width = images.shape
    if count == 0:
        return images.cpu().clone()
    pix_fmt = "yuv444p" if (width % 2 or height % 2) else "yuv420p"
    rate = Fraction(info.frame_rate) if info.frame_rate else Fraction(25)
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = pix_fmt
    encoder.time_base = 1 / rate
    encoder.framerate = rate
    encoder.options = {"crf": f"{crf:g}", "preset": preset}
    decoder = av.CodecContext.create("h264", "r")
    decoded: list[np.ndarray] = []
    full = info.color_range == "full"

    def decode(packets) -> None:
        for packet in packets:
            for frame in decoder.decode(packet):
                decoded.append(frame_to_array(frame, "rgb24", info))

    pixels = images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    for position, image in enumerate(pixels):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(
            format=pix_fmt, dst_colorspace=SWSCALE_COLORSPACE[info.colorspace],
            src_color_range="JPEG", dst_color_range="JPEG" if full else "MPEG")
        frame.pts = position
        decode(encoder.encode(frame))
    decode(encoder.encode(None))
    for frame in decoder.decode(None):
        decoded.append(frame_to_array(frame, "rgb24", info))
    if len(decoded) != count:
        raise RuntimeError(f"H.264 round trip returned {len(decoded)} frames for {count}")
    return torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).contiguous()


class Degrader:
    """Applies the degradations to uint8 RGB batches, graphs negotiated once."""

    def __init__(self, info: VideoInfo, device: torch.device):
        self.info = info
        self.device = device
        self.graphs: dict[str, object] = {}

    def __call__(self, degradation: Degradation, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` uint8 -> degraded uint8 of the same size, on ``self.device``."""
        if degradation.name == "h264":
            return h264_roundtrip(images, degradation.params["crf"], self.info,
                                  degradation.params["preset"]).to(self.device)
        images = images.to(self.device)
        if degradation.name == "bilateral":
            params = degradation.params
            return bilateral_denoise(images, params["radius"], params["sigma_space"],
                                     params["sigma_color"])
        if degradation.graph is None:
            raise ValueError(f"no way to apply degradation {degradation.name!r}")
        from ..media import colour
        from ..pipeline.engine import Graph
        from ..pipeline.filter import build_filters

        graph = self.graphs.get(degradation.graph)
        if graph is None:
            graph = Graph(build_filters(degradation.graph))
            graph.negotiate(self.info, self.device, "rgb24")
            self.graphs[degradation.graph] = graph
        count = images.shape[0]
        frames = Frames(images, "rgb24", list(range(count)), list(range(count)),
                        self.info.time_base)
        result = graph.process(frames, self.info)
        result = colour.convert(result, "rgb24", graph.output_info.colorspace,
                                graph.output_info.color_range)
        if tuple(result.data.shape) != tuple(images.shape):
            raise RuntimeError(f"degradation {degradation.label} changed the frame shape "
                               f"{tuple(images.shape)} to {tuple(result.data.shape)}")
        return result.data

    def close(self) -> None:
        for graph in self.graphs.values():
            graph.close()
