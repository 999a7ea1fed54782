"""``jpeg``: compress every frame with a real JPEG codec and decode it back.

Frames go through Pillow's libjpeg (libjpeg-turbo in Pillow's wheels) exactly as a photo
saved with ``Image.save(buffer, "JPEG", quality=..., subsampling=...)`` and opened again,
in memory, so the artefacts (8x8 block quantisation, chroma subsampling, the decoder's
upsampling) are the ones a re-encoded upload would carry. The codec runs on the CPU: the
batch is moved there once and the result moved back to the batch's device.

:func:`jpeg_roundtrip` is the pure function; :class:`JpegFilter` only holds the options and
calls it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy
import torch
from PIL import Image

from vdf_stream.media.colour import to_float, to_uint8
from vdf_stream.pipeline.filter import Filter
from vdf_stream.media.frames import Frames

Subsampling = Literal["420", "422", "444"]

# Pillow's names for the chroma subsampling of the JPEG encoder.
PILLOW_SUBSAMPLING = {"444": "4:4:4", "422": "4:2:2", "420": "4:2:0"}


def encode_jpeg(image: numpy.ndarray, quality: int, subsampling: str = "420") -> bytes:
    """Encode one RGB image as JPEG bytes with Pillow.

    Args:
        image: ``(H, W, 3)`` uint8 RGB array.
        quality: libjpeg quality, 1 (worst) to 100 (best).
        subsampling: chroma subsampling, ``"420"``, ``"422"`` or ``"444"``.

    Returns:
        The JPEG file (baseline, standard quantisation tables scaled by ``quality``).
    """
    if image.dtype != numpy.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(
        buffer, format="JPEG", quality=quality, subsampling=PILLOW_SUBSAMPLING[subsampling]
    )
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> numpy.ndarray:
    """Decode JPEG bytes with Pillow into an ``(H, W, 3)`` uint8 RGB array."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode != "RGB":
            image = image.convert("RGB")
        return numpy.asarray(image)


def jpeg_roundtrip(images: torch.Tensor, quality: int, subsampling: str = "420") -> torch.Tensor:
    """Encode every image as JPEG and decode it again.

    Args:
        images: uint8 RGB images in ``[0, 255]``.
        quality: libjpeg quality, 1 (worst) to 100 (best).
        subsampling: chroma subsampling, ``"420"``, ``"422"`` or ``"444"``.

    Returns:
        The decoded images, a new uint8 tensor on the input's device; the input is not
        modified.

    Shape:
        - images: :math:`(B, 3, H, W)`
        - output: :math:`(B, 3, H, W)`
    """
    if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(
            f"images must be uint8 (B, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be between 1 and 100, got {quality}")
    if subsampling not in PILLOW_SUBSAMPLING:
        raise ValueError(
            f"subsampling must be one of {', '.join(PILLOW_SUBSAMPLING)}, got {subsampling!r}"
        )
    if images.shape[0] == 0:
        return images.clone()
    # One transfer for the whole batch; the codec itself only runs on the CPU.
    pixels = images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    decoded = [decode_jpeg(encode_jpeg(image, quality, subsampling)) for image in pixels]
    result = torch.from_numpy(numpy.stack(decoded)).permute(0, 3, 1, 2).contiguous()
    return result.to(images.device)


@dataclass
class JpegOptions:
    quality: int = field(
        default=75, metadata={"help": "JPEG quality from 1 (worst) to 100 (best), as in libjpeg"}
    )
    subsampling: Subsampling = field(
        default="420", metadata={"help": "chroma subsampling: 420 (usual), 422 or 444 (none)"}
    )

    def validate(self) -> None:
        if not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be between 1 and 100, got {self.quality}")
        if self.subsampling not in get_args(Subsampling):
            raise ValueError(
                f"subsampling must be one of {', '.join(get_args(Subsampling))}, "
                f"got {self.subsampling!r}"
            )


class JpegFilter(Filter):
    name = "jpeg"
    description = "compress each frame as a JPEG at the given quality and decode it back"
    Options = JpegOptions
    formats = ("rgb24", "rgbf32")

    def process(self, frames: Frames) -> Frames:
        if frames.format == "rgb24":
            images = frames.data
        elif frames.format == "rgbf32":
            images = to_uint8(frames.data)
        else:
            raise ValueError(
                f"{self.name} accepts {', '.join(self.formats)} frames, got {frames.format}"
            )
        decoded = jpeg_roundtrip(images, self.options.quality, self.options.subsampling)
        if frames.format == "rgbf32":
            decoded = to_float(decoded).to(frames.data.dtype)
        return frames.with_data(decoded, frames.format)
