"""The VDF perturbation: dual-domain (FFT amplitude and phase, plus a spatial term), face
aligned, content-aware attention, ``eps * tanh`` bound, straight-through 8-bit quantisation.

Two calls, as in torchvision's ``make_params`` / ``transform``:

* :func:`make_params` builds the parameters (zeros plus an optional small seeded start);
  the optimiser (:mod:`vdf_stream.protection.objective`) changes them on keyframes only;
* :func:`perturb` applies parameters to frames: pure, batched, differentiable with respect
  to the parameters, never editing its input. It runs on every frame.

What :func:`perturb` computes for frames ``x`` ``(B, 3, H, W)`` in ``[0, 1]``:

1. **face term** (follows the head): the frame is cut to an ``S x S`` face-aligned crop
   (:func:`vdf_stream.models.alignment.crop`, the region the face mesh reads, so the
   parameters live in the face's own frame and move, turn and scale with it). The crop's
   own spectrum is modulated per colour channel, ``C' = C * exp(A + i P)`` (``A`` log
   amplitude gain, ``P`` phase shift, both ``(3, S, S/2 + 1)``), and a spatial term ``D``
   is added: ``face = (irfft2(C') - crop + D) * taper``. The taper (a raised cosine over
   the outer 15% of the crop) fades it out at the region's border. It is warped back into
   the frame (:func:`~vdf_stream.models.alignment.uncrop`).
2. **frame term** (covers the rest of the image, for the person segmenter and the
   detector, which read the whole frame): the same spectrum modulation on the frame
   downscaled ``frame_scale`` times (``A_f``, ``P_f``), the change upsampled back.
3. **attention** ``M`` in ``[0, 1]``, from the content only (no parameters):
   ``M = (region_floor + (1 - region_floor) * face) * (texture_floor + (1 - texture_floor)
   * texture)`` where ``face`` is the tapered face region (where the face pipeline looks)
   and ``texture = min(1, local luma std (5x5) / texture_reference)`` (where texture
   hides a change: flat skin and sky get less, hair, edges and fabric more).
4. **bound**: ``y = clamp(x + eps * M * tanh((face + frame) / eps), 0, 1)``, so
   ``|y - x| <= eps`` before quantisation.
5. **quantisation** (``quantize=True``): ``y`` is rounded to the 8-bit grid and clamped to
   the grid points inside ``[x - eps, x + eps]`` (so the bound holds after rounding too,
   for any ``x``, as long as ``eps >= 1/255``); the backward pass treats the rounding as
   the identity (straight-through estimator).

With all parameters zero the output is the input rounded to 8 bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..models import alignment
from ..models.alignment import RegionOfInterest
from ..media.pixels import luma as _luma
from .attention import (TEXTURE_REFERENCE, TEXTURE_WINDOW, attention, taper_window,
                        texture_map)

LEVELS = 255.0
CROP_SIZE = 192  # the face mesh's own input size: the face term lives on its grid
FRAME_SCALE = 4  # the frame term's spectrum is taken on the frame downscaled this much
# Tolerance, in 8-bit levels, of the bound check when placing on the grid (float error).
_GRID_TOLERANCE = 1e-3


@dataclass
class PerturbParams:
    """Parameters of the perturbation for ``B`` frames (or 1, broadcast to every frame).

    Attributes:
        face_amplitude: ``(B, 3, S, S // 2 + 1)`` log-amplitude gain of the face crop's
            spectrum (0 = unchanged).
        face_phase: ``(B, 3, S, S // 2 + 1)`` phase shift in radians.
        face_spatial: ``(B, 3, S, S)`` additive change in the face crop, in [0, 1] units.
        frame_amplitude, frame_phase: ``(B, 3, h, w // 2 + 1)`` the same for the frame
            downscaled to ``h x w``.
    """

    face_amplitude: torch.Tensor
    face_phase: torch.Tensor
    face_spatial: torch.Tensor
    frame_amplitude: torch.Tensor
    frame_phase: torch.Tensor

    def tensors(self) -> list[torch.Tensor]:
        return [getattr(self, f.name) for f in fields(self)]

    def map(self, function) -> PerturbParams:
        return PerturbParams(*[function(t) for t in self.tensors()])

    def detach(self) -> PerturbParams:
        return self.map(lambda t: t.detach().clone())

    def requires_grad_(self, flag: bool = True) -> PerturbParams:
        for tensor in self.tensors():
            tensor.requires_grad_(flag)
        return self

    def to(self, device=None, dtype=None) -> PerturbParams:
        return self.map(lambda t: t.to(device=device, dtype=dtype))

    def __len__(self) -> int:
        return self.face_amplitude.shape[0]

    def select(self, index: int) -> PerturbParams:
        return self.map(lambda t: t[index:index + 1])

    @staticmethod
    def cat(items: list[PerturbParams]) -> PerturbParams:
        names = [f.name for f in fields(PerturbParams)]
        return PerturbParams(*[torch.cat([getattr(p, n) for p in items]) for n in names])

    def grid(self) -> tuple[int, int]:
        """``(h, w)``: the frame term's grid (:func:`frame_grid`)."""
        return self.frame_amplitude.shape[-2], (self.frame_amplitude.shape[-1] - 1) * 2

    def scaled(self, factor: float) -> PerturbParams:
        """The parameters times ``factor`` (VDF's similarity-scaled warm start)."""
        return self.map(lambda t: t * factor)


def frame_grid(height: int, width: int, frame_scale: int = FRAME_SCALE) -> tuple[int, int]:
    """Size ``(h, w)`` of the downscaled frame the frame term modulates."""
    return max(8, round(height / frame_scale)), max(8, round(width / frame_scale))


def make_params(batch: int, height: int, width: int, crop_size: int = CROP_SIZE,
                frame_scale: int = FRAME_SCALE, init_scale: float = 0.0,
                generator: torch.Generator | None = None, device=None,
                dtype=torch.float32) -> PerturbParams:
    """New parameters for ``batch`` frames of ``height x width``.

    Args:
        init_scale: standard deviation of a random start of the spatial term (0: zeros,
            which leave the frames unchanged). Drawn on the CPU from ``generator`` then
            moved, so a seed gives the same start on every device.
    """
    h, w = frame_grid(height, width, frame_scale)
    shapes = [(batch, 3, crop_size, crop_size // 2 + 1), (batch, 3, crop_size, crop_size // 2 + 1),
              (batch, 3, crop_size, crop_size), (batch, 3, h, w // 2 + 1), (batch, 3, h, w // 2 + 1)]
    tensors = [torch.zeros(shape, dtype=dtype) for shape in shapes]
    if init_scale > 0:
        tensors[2] = torch.randn(shapes[2], generator=generator, dtype=dtype) * init_scale
    return PerturbParams(*[t.to(device) for t in tensors])


def _check(frames: torch.Tensor, params: PerturbParams, regions: RegionOfInterest | None,
           eps: float) -> None:
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] != 3 \
            or not frames.is_floating_point():
        got = (f"{frames.dtype} {tuple(frames.shape)}" if isinstance(frames, torch.Tensor)
               else type(frames).__name__)
        raise ValueError(f"frames must be float RGB (B, 3, H, W) in [0, 1], got {got}")
    batch = frames.shape[0]
    if len(params) not in (1, batch):
        raise ValueError(f"parameters for {len(params)} frames, expected 1 or {batch}")
    if params.frame_amplitude.shape[-2:] != params.frame_phase.shape[-2:]:
        raise ValueError("frame_amplitude and frame_phase shapes differ")
    if regions is not None and len(regions) != batch:
        raise ValueError(f"{len(regions)} face regions for {batch} frames")
    if not (math.isfinite(eps) and eps >= 1 / LEVELS - 1e-9 and eps <= 1):
        raise ValueError(f"eps must be in [1/255, 1] (the bound must hold on the 8-bit grid), "
                         f"got {eps}")
    device = frames.device
    for tensor in params.tensors():
        if tensor.device != device:
            raise ValueError(f"parameters are on {tensor.device}, frames on {device}")


def modulate(images: torch.Tensor, amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``irfft2(rfft2(images) * exp(amplitude + i phase)) - images``: the change a spectrum
    modulation makes. ``images (B, C, H, W)``; ``amplitude``, ``phase`` ``(B|1, C, H, W//2+1)``."""
    size = images.shape[-2:]
    spectrum = torch.fft.rfft2(images.float())
    gain = torch.polar(torch.exp(amplitude.float()), phase.float())
    return torch.fft.irfft2(spectrum * gain, s=size) - images.float()


def _crop_each(frames: torch.Tensor, regions: RegionOfInterest, size: int) -> torch.Tensor:
    # One frame at a time: alignment.crop picks its anti-alias factor from the smallest
    # region of the batch, which would make a frame's crop depend on its batch mates.
    return torch.cat([alignment.crop(frames[i:i + 1], regions[i], size)
                      for i in range(frames.shape[0])])


@dataclass
class Prepared:
    """What :func:`perturb` computes from the frames and regions alone, whatever the
    parameters: computed once by :func:`prepare` when the same frames are perturbed with
    many parameters (the optimiser's steps).

    Attributes:
        small, small_spectrum: the frames downscaled to the frame term's grid, and their
            ``rfft2``.
        crops, crop_spectrum: the face-aligned crops ``(B, 3, S, S)`` and their ``rfft2``
            (``None`` without regions).
        box: ``(x0, y0, x1, y1)`` the frame rectangle the regions cover (:func:`region_box`).
        weight: ``(B, 1, H, W)`` the attention.
        low, high: ``(B, 3, H, W)`` the grid levels (of ``levels``; 255: 8 bits) the output
            grid points inside ``[x - eps, x + eps] & [0, 1]``).
        warp: without a ``window``, where the box's pixels sample the crop
            (:func:`~vdf_stream.models.alignment.uncrop_grid`): the taper and the face term
            are warped into the frame along the same grid.
        in_box: made by :func:`_prepare_in_box`: ``weight``, ``low`` and ``high`` are the
            box's, and the attention is 0 outside it, where the frames stay as they are.
        rows, columns: with a ``window`` (:func:`prepare`), the bilinear upsampling of the
            frame term as matrices restricted to the window's rows ``(h', h)`` and columns
            ``(w', w)``; ``box``, ``weight``, ``low`` and ``high`` are then the window's.
        outside: with a ``window``, ``(B, 1, h, w)`` on the frame term's grid: the mean
            squared attention of the frame pixels each cell covers outside the window,
            times the pixels a cell covers (0 for cells inside): what
            :func:`frame_term_outside` weighs the frame term's change with.
    """

    small: torch.Tensor
    small_spectrum: torch.Tensor
    crops: torch.Tensor | None
    crop_spectrum: torch.Tensor | None
    box: tuple[int, int, int, int]
    weight: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    rows: torch.Tensor | None = None
    columns: torch.Tensor | None = None
    outside: torch.Tensor | None = None
    levels: float = LEVELS  # the grid low and high count in
    warp: tuple[torch.Tensor, torch.Tensor] | None = None  # box pixels -> crop (no window)
    in_box: bool = False  # weight, low, high (and the change) of the box only


def upsampling_matrix(size: int, source: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(size, source)``: bilinear (``align_corners=False``) upsampling of a length-``source``
    signal to ``size`` samples as a matrix (``F.interpolate`` of the identity)."""
    identity = torch.eye(source, device=device, dtype=dtype).view(source, 1, source)
    return F.interpolate(identity, size=size, mode="linear", align_corners=False
                         ).view(source, size).T.contiguous()


def _into_box(images: torch.Tensor, regions: RegionOfInterest, frame_size: tuple[int, int],
              box: tuple[int, int, int, int], face_present: torch.Tensor | None,
              warp: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Crop-space ``images (B, C, S, S)`` warped into the ``box`` of frames of ``frame_size``
    (``(B, C, y1 - y0, x1 - x0)``), 0 outside the regions and for frames without a face.
    ``box`` must not be empty; ``warp``: its :func:`~vdf_stream.models.alignment.uncrop_grid`
    when already made."""
    warped, inside = alignment.uncrop(images, regions, frame_size, box=box, grid=warp)
    warped = warped * inside
    if face_present is not None:
        warped = warped * face_present.to(warped.dtype).view(-1, 1, 1, 1)
    return warped


def _into_frame(images: torch.Tensor, regions: RegionOfInterest, frame_size: tuple[int, int],
                box: tuple[int, int, int, int], face_present: torch.Tensor | None,
                warp: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """:func:`_into_box` padded with 0 to the whole frames."""
    height, width = frame_size
    x0, y0, x1, y1 = box
    warped = _into_box(images, regions, frame_size, box, face_present, warp)
    return F.pad(warped, (x0, width - x1, y0, height - y1))


def _taper_in_frame(regions: RegionOfInterest, size: int, frame_size: tuple[int, int],
                    box: tuple[int, int, int, int], face_present: torch.Tensor | None,
                    like: torch.Tensor,
                    warp: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``(B, 1, H, W)``: the tapered face region (the taper window warped into the frame;
    ``warp``: :func:`_into_box`'s)."""
    height, width = frame_size
    batch = len(regions)
    x0, y0, x1, y1 = box
    if not batch or x1 <= x0 or y1 <= y0:
        return like.new_zeros(batch, 1, height, width)
    window = taper_window(size, device=like.device, dtype=like.dtype)
    return _into_frame(window.expand(batch, 1, size, size), regions, frame_size, box,
                       face_present, warp)


def prepare(frames: torch.Tensor, regions: RegionOfInterest | None, eps: float,
            face_present: torch.Tensor | None = None, crop_size: int = CROP_SIZE,
            grid: tuple[int, int] | None = None, region_floor: float = 0.5,
            texture_floor: float = 0.4, texture_reference: float = TEXTURE_REFERENCE,
            window: tuple[int, int, int, int] | None = None,
            levels: float = LEVELS) -> Prepared:
    """The parameter-free part of :func:`perturb` for frames ``(B, 3, H, W)`` (detached).

    ``grid``: the frame term's ``(h, w)`` (default :func:`frame_grid`); ``window``:
    ``(x0, y0, x1, y1)``, to perturb only that part of the frames (``perturb(frames[..., y0:y1,
    x0:x1], params, regions moved by -(x0, y0), ...)``: the same values there as
    perturbing the whole frames, computed from the whole frames); ``levels``: the grid the
    output is rounded to (255: 8 bits; 1023: 10 bits); the other arguments as
    :func:`perturb`'s."""
    with torch.no_grad():
        x = frames.detach().float()
        batch, _, height, width = x.shape
        h, w = grid if grid is not None else frame_grid(height, width)
        small = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                              antialias=True)
        crops = crop_spectrum = warp = None
        box = (0, 0, 0, 0)
        if regions is not None and batch:
            crops = _crop_each(x, regions, crop_size)
            crop_spectrum = torch.fft.rfft2(crops)
            box = alignment.region_box(regions, (height, width))
            if window is None and box[2] > box[0] and box[3] > box[1]:
                warp = alignment.uncrop_grid(regions, crop_size, (height, width), box, like=x)
            face_region = _taper_in_frame(regions, crop_size, (height, width), box,
                                          face_present, x, warp)
        else:
            face_region = x.new_zeros(batch, 1, height, width)
        weight = attention(x, face_region, region_floor, texture_floor, texture_reference)
        low, high = grid_bounds(x, eps, levels)
        rows = columns = outside = None
        if window is not None:
            x0, y0, x1, y1 = window
            rows = upsampling_matrix(height, h, x.device)[y0:y1]
            columns = upsampling_matrix(width, w, x.device)[x0:x1]
            beyond = torch.ones_like(weight)
            beyond[..., y0:y1, x0:x1] = 0
            outside = F.adaptive_avg_pool2d(weight.square() * beyond, (h, w)) * (height * width
                                                                                 / (h * w))
            weight, low, high = (t[..., y0:y1, x0:x1] for t in (weight, low, high))
            bx0, by0, bx1, by1 = box
            box = (max(bx0, x0) - x0, max(by0, y0) - y0, min(bx1, x1) - x0, min(by1, y1) - y0)
            box = (box[0], box[1], max(box[2], box[0]), max(box[3], box[1]))
        return Prepared(small, torch.fft.rfft2(small), crops, crop_spectrum, box, weight,
                        low, high, rows, columns, outside, levels, warp)


def _prepare_in_box(frames: torch.Tensor, regions: RegionOfInterest, eps: float,
                    face_present: torch.Tensor | None, crop_size: int, grid: tuple[int, int],
                    texture_floor: float, texture_reference: float,
                    levels: float) -> Prepared | None:
    """:func:`prepare` for an attention that is 0 outside the face regions (``region_floor``
    0, the default preset's): only the regions' box can change, so the attention and the
    grid levels are made for the box alone (the texture map on the box widened by its
    window's reach, so that it holds the same values there); ``None`` when the box is
    empty. The spectra are the whole frames' and crops', as :func:`prepare`'s."""
    with torch.no_grad():
        x = frames.detach().float()
        batch, _, height, width = x.shape
        box = alignment.region_box(regions, (height, width))
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return None
        small = F.interpolate(x, size=grid, mode="bilinear", align_corners=False,
                              antialias=True)
        crops = _crop_each(x, regions, crop_size)
        warp = alignment.uncrop_grid(regions, crop_size, (height, width), box, like=x)
        window = taper_window(crop_size, device=x.device, dtype=x.dtype)
        taper = _into_box(window.expand(batch, 1, crop_size, crop_size), regions,
                          (height, width), box, face_present, warp)
        reach = TEXTURE_WINDOW // 2
        wx0, wy0 = max(x0 - reach, 0), max(y0 - reach, 0)
        wx1, wy1 = min(x1 + reach, width), min(y1 + reach, height)
        texture = texture_map(x[..., wy0:wy1, wx0:wx1], texture_reference)
        texture = texture[..., y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
        weight = texture.mul_(1 - texture_floor).add_(texture_floor).mul_(taper).clamp_(0, 1)
        low, high = grid_bounds(x[..., y0:y1, x0:x1], eps, levels)
        return Prepared(small, torch.fft.rfft2(small), crops, torch.fft.rfft2(crops), box,
                        weight, low, high, levels=levels, warp=warp, in_box=True)


def prepare_apply(frames: torch.Tensor, regions: RegionOfInterest | None, eps: float,
                  face_present: torch.Tensor | None, params: PerturbParams,
                  region_floor: float = 0.5, texture_floor: float = 0.4,
                  texture_reference: float = TEXTURE_REFERENCE, levels: float = LEVELS,
                  psnr_floor: float | None = None, highpass: float = 0.0,
                  backend: str = "torch", **_) -> Prepared:
    """What :func:`perturb` computes first from the frames alone when it is given parameters
    of ``params``' shapes and these options (the same keywords; the others are ignored):
    the box of the face regions only when the attention is 0 outside it (``region_floor``
    0), the whole frames otherwise. Made ahead (live mode makes it on its prepare thread,
    while the frame before is protected) and passed as ``perturb(prepared=)``."""
    crop_size, grid = params.face_amplitude.shape[-2], params.grid()
    prepared = None
    if (region_floor <= 0 and regions is not None and backend == "torch"
            and psnr_floor is None and highpass <= 0):
        prepared = _prepare_in_box(frames, regions, eps, face_present, crop_size, grid,
                                   texture_floor, texture_reference, levels)
    if prepared is None:
        prepared = prepare(frames, regions, eps, face_present, crop_size, grid, region_floor,
                           texture_floor, texture_reference, levels=levels)
    return prepared


def _modulated(images: torch.Tensor, spectrum: torch.Tensor, amplitude: torch.Tensor,
               phase: torch.Tensor) -> torch.Tensor:
    """:func:`modulate` given the images' spectrum."""
    gain = torch.polar(torch.exp(amplitude.float()), phase.float())
    return torch.fft.irfft2(spectrum * gain, s=images.shape[-2:]) - images


def frame_term_outside(params: PerturbParams, prepared: Prepared, eps: float,
                       chroma: float = 1.0) -> torch.Tensor:
    """``sum(((output - frames) / eps)^2)`` over the pixels and channels outside the window
    of ``prepared`` (:func:`prepare`), where only the frame term changes the frames,
    estimated on the frame term's own grid (each cell's bounded change ``M tanh(f / eps)``
    standing for the pixels it covers; rounding and clipping left out). Differentiable with
    respect to the frame term's parameters: the optimiser's fidelity term keeps its hold on
    the frame term outside the window it steps on."""
    if prepared.outside is None:
        return params.frame_amplitude.new_zeros(())
    batch = prepared.small.shape[0]

    def expand(tensor: torch.Tensor) -> torch.Tensor:
        return (tensor.expand(batch, *tensor.shape[1:]) if tensor.shape[0] == 1 != batch
                else tensor)

    change = _modulated(prepared.small, prepared.small_spectrum, expand(params.frame_amplitude),
                        expand(params.frame_phase))
    if chroma <= 0:
        change = _luma(change).expand(-1, 3, -1, -1)
    elif chroma < 1:
        change = limit_chroma(change, chroma)
    return (prepared.outside * torch.tanh(change / eps).square()).sum()


def raw_change(frames: torch.Tensor, params: PerturbParams, regions: RegionOfInterest | None,
               face_present: torch.Tensor | None = None, luma: bool = False,
               prepared: Prepared | None = None) -> torch.Tensor:
    """The unbounded change ``(B, 3, H, W)``: the frame term plus the face term warped into
    the frame (fading out over the taper, 0 outside the regions and without a face).

    ``luma``: return only the change's luma ``(B, 1, H, W)`` (what ``limit_chroma(change,
    0)`` keeps, on every channel). Resampling is linear, so the luma is taken where the
    terms are small (the face crop, the downscaled frame) and a third of the frame-sized
    work is left. ``prepared``: :func:`prepare` of these frames and regions (computed here
    when ``None``)."""
    batch, _, height, width = frames.shape
    reduce = _luma if luma else (lambda change: change)

    def expand(tensor: torch.Tensor) -> torch.Tensor:
        return (tensor.expand(batch, *tensor.shape[1:]) if tensor.shape[0] == 1 != batch
                else tensor)

    size = params.face_amplitude.shape[-2]
    if prepared is None:
        prepared = prepare(frames, regions, 1.0, face_present, size, params.grid())
    frame_change = reduce(_modulated(prepared.small, prepared.small_spectrum,
                                     expand(params.frame_amplitude), expand(params.frame_phase)))
    if prepared.rows is not None:  # a window of the frames: only its rows and columns
        change = prepared.rows @ frame_change @ prepared.columns.T
    else:
        change = F.interpolate(frame_change, size=(height, width), mode="bilinear",
                               align_corners=False)
    x0, y0, x1, y1 = box = prepared.box
    if prepared.in_box:  # the box's change only
        change = change[..., y0:y1, x0:x1].clone()
    if prepared.crops is None or x1 <= x0 or y1 <= y0:
        return change
    window = taper_window(size, device=frames.device, dtype=change.dtype)
    face = reduce((_modulated(prepared.crops, prepared.crop_spectrum,
                              expand(params.face_amplitude), expand(params.face_phase))
                   + expand(params.face_spatial)) * window)
    face = _into_box(face, regions, (height, width), box, face_present, prepared.warp)
    if prepared.in_box:  # the apply path: in the box's own tensor
        return change.add_(face)
    if change.requires_grad or face.requires_grad:
        return change + F.pad(face, (x0, width - x1, y0, height - y1))
    change[..., y0:y1, x0:x1] += face  # the apply path: added where it is, in place
    return change


def limit_chroma(change: torch.Tensor, chroma: float) -> torch.Tensor:
    """Keep the luma of a change ``(B, 3, H, W)`` and ``chroma`` of the rest.

    The change is split into its luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (added equally to
    R, G and B: a grey change, no colour) and the remainder (``change - Y``, the colour
    part); the result is ``Y + chroma * (change - Y)``. ``chroma = 0``: a pure luma change,
    whose Cb and Cr are exactly 0; ``chroma = 1``: the change unchanged."""
    if chroma >= 1:
        return change
    luma = _luma(change)
    if chroma <= 0:
        return luma.expand_as(change)
    return luma + chroma * (change - luma)


def grid_bounds(frames: torch.Tensor, eps: float,
                levels: float = LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low, high)``: the grid levels (of ``levels`` steps) inside ``[frames - eps, frames
    + eps] & [0, 1]``, as floats (computed in place: two frame-sized allocations)."""
    with torch.no_grad():
        low = torch.sub(frames, eps).mul_(levels).sub_(_GRID_TOLERANCE).ceil_().clamp_min_(0)
        high = torch.add(frames, eps).mul_(levels).add_(_GRID_TOLERANCE).floor_()
        return low, high.clamp_max_(levels)


def bounded(frames: torch.Tensor, change: torch.Tensor, weight: torch.Tensor,
            eps: float) -> torch.Tensor:
    """``clamp(frames + eps * weight * tanh(change / eps), 0, 1)``: the change bounded by
    ``eps`` where ``weight`` is 1. Without a gradient to carry (the apply path) the same
    arithmetic runs in place, with a third of the frame-sized allocations."""
    if torch.is_grad_enabled() and (change.requires_grad or weight.requires_grad):
        return (frames + eps * weight * torch.tanh(change / eps)).clamp(0, 1)
    delta = torch.div(change, eps).tanh_().mul_(weight * eps)
    return torch.add(frames, delta).clamp_(0, 1)


def quantize_within(protected: torch.Tensor, frames: torch.Tensor, eps: float) -> torch.Tensor:
    """Round ``protected`` to the 8-bit grid inside ``[frames - eps, frames + eps] & [0, 1]``;
    straight-through (the backward pass is the identity)."""
    low, high = grid_bounds(frames.detach(), eps)
    return _on_grid(protected, low, high)


def _on_grid(protected: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
             straight_through: bool = True, grid: float = LEVELS,
             inplace: bool = False) -> torch.Tensor:
    """:func:`quantize_within` given the bounds' levels on a grid of ``grid`` steps;
    ``straight_through=False`` (no gradient wanted): the grid values themselves, computed in
    place (``inplace``: in ``protected`` itself, a tensor of the caller's own)."""
    if inplace and not straight_through:
        levels = protected.detach().mul_(grid).round_()
    else:
        levels = torch.round(protected.detach() * grid)  # the grid point: no gradient of its own
    levels = torch.maximum(torch.minimum(levels, high, out=levels), low, out=levels)
    if not straight_through:
        return levels.div_(grid)
    return protected + (levels / grid - protected).detach()


def perturb(frames: torch.Tensor, params: PerturbParams, regions: RegionOfInterest | None,
            eps: float, face_present: torch.Tensor | None = None, quantize: bool = True,
            region_floor: float = 0.5, texture_floor: float = 0.4,
            texture_reference: float = TEXTURE_REFERENCE, backend: str = "torch",
            chroma: float = 1.0, prepared: Prepared | None = None,
            psnr_floor: float | None = None, box_only: bool = False,
            gain: float | torch.Tensor | None = None, highpass: float = 0.0,
            levels: float = LEVELS) -> torch.Tensor:
    """Protect frames with given parameters (pure; the input is never modified).

    Args:
        frames: float RGB in [0, 1].
        params: :class:`PerturbParams` for ``B`` frames or 1 (shared).
        regions: the face regions (``B``) the face term is aligned to, e.g. from
            ``FacePipeline.regions`` on the clean frames; ``None``: frame term only.
        eps: L-inf budget in [1/255, 1].
        face_present: ``(B,)`` bool; frames without a face get no face term.
        quantize: round to the output's grid (straight-through) keeping the bound.
        levels: that grid's steps: 255 (8-bit output, the default), 1023 (10 bits)...
        region_floor, texture_floor, texture_reference: the attention (module docstring).
        backend: ``"torch"``, or ``"cupy"`` for the fused CUDA kernel of the final bound,
            clamp and quantisation (no gradient; :mod:`vdf_stream.protection.apply_cuda`).
        chroma: share of the change's colour part kept (:func:`limit_chroma`): 0 = the
            change is grey (luma only, the same offset on R, G and B), 1 = per channel.
        prepared: :func:`prepare` of these frames, regions, ``face_present`` and ``eps``
            with these attention options, when the caller perturbs the same frames many
            times (the optimiser's steps); computed here when ``None``.
        psnr_floor: when set (dB), a frame whose bounded change would take its PSNR
            against the input under this value has its change scaled down to meet it
            (:func:`psnr_scale`; differentiable, so the optimiser sees the cap). With
            ``quantize`` the cap leaves room for the 8-bit rounding's own error, and
            the floor holds to within about 0.05 dB.
        gain: a factor in [0, 1] (a float, or ``(B, 1, 1, 1)``) on the bounded change: the
            visibility budget's scale (:class:`vdf_stream.visibility.VisibilityBudget`);
            ``None``: 1.
        highpass: when > 0, the change's content coarser than a Gaussian of this sigma
            (pixels) is taken out before the bound (:func:`high_pass`): what is left is
            fine texture, which people see less on skin; 0: the change as it is.
        box_only: with a ``prepared`` of the face regions' box (``prepared.in_box``, from
            :func:`prepare_apply`), return the protected box only, ``(B, 3, y1 - y0, x1 -
            x0)`` at ``prepared.box``: outside it the output is the frames on the grid (the
            8-bit pixels they came from), which a caller holding them need not convert.

    Returns:
        ``(B, 3, H, W)`` in the frames' dtype and device, ``|output - frames| <= eps``.

    Shape:
        - frames: :math:`(B, 3, H, W)`; params: :math:`(B \\text{ or } 1, ...)`.
    """
    _check(frames, params, regions, eps)
    if frames.shape[0] == 0:
        return frames.clone()
    x = frames.float()
    if prepared is None:
        if torch.is_grad_enabled() and any(t.requires_grad for t in params.tensors()):
            prepared = prepare(x, regions, eps, face_present, params.face_amplitude.shape[-2],
                               params.grid(), region_floor, texture_floor, texture_reference,
                               levels=levels)
        else:  # the apply path: the face regions' box only, where that is the same
            prepared = prepare_apply(x, regions, eps, face_present, params, region_floor,
                                     texture_floor, texture_reference, levels, psnr_floor,
                                     highpass, backend)
    whole = x
    if prepared.in_box:  # outside the box the frames on the grid; inside, what follows
        x0, y0, x1, y1 = prepared.box
        output = None
        if not box_only:
            output = x.clamp(0, 1)  # a tensor of its own
            if quantize:
                output = output.mul_(prepared.levels).round_().div_(prepared.levels)
        x = x[..., y0:y1, x0:x1]
    # luma only (chroma 0): a (B, 1, H, W) change, the same offset on R, G and B
    change = raw_change(whole, params, regions, face_present, luma=chroma <= 0,
                        prepared=prepared)
    if chroma > 0:
        change = limit_chroma(change, chroma)
    if highpass > 0:
        change = high_pass(change, highpass)
    weight = prepared.weight
    if gain is not None:
        weight = weight * gain
    delta = None
    if psnr_floor is not None:
        delta = eps * weight * torch.tanh(change / eps)
        scale = psnr_scale(delta, psnr_floor, rounding=quantize)
        weight, delta = weight * scale, delta * scale
    if backend == "cupy":
        from .apply_cuda import bounded_apply

        if not quantize:
            raise ValueError("the cupy backend always quantises")
        return bounded_apply(x, change.expand_as(x), weight, eps,
                             prepared.levels).to(frames.dtype)
    if backend != "torch":
        raise ValueError(f"backend must be 'torch' or 'cupy', got {backend!r}")
    if delta is None:
        protected = bounded(x, change, weight, eps)
    else:  # the PSNR cap already made it
        protected = (x + delta).clamp(0, 1)
    if quantize:
        # without a gradient to carry (the apply path), the grid values themselves
        protected = _on_grid(protected, prepared.low, prepared.high,
                             straight_through=protected.requires_grad, grid=prepared.levels,
                             inplace=True)
    if prepared.in_box and not box_only:
        output[..., y0:y1, x0:x1] = protected
        protected = output
    return protected.to(frames.dtype)


def high_pass(change: torch.Tensor, sigma: float) -> torch.Tensor:
    """``change`` less its Gaussian blur of ``sigma`` pixels: its fine part only."""
    from ..media.pixels import gaussian_blur2d

    return change - gaussian_blur2d(change, sigma)


SATURATION_LIMIT = 3.0  # |raw change| / eps past which tanh is flat (tanh(3) = 0.995)


@torch.no_grad()
def desaturate(frames: torch.Tensor, params: PerturbParams, regions: RegionOfInterest | None,
               eps: float, face_present: torch.Tensor | None = None,
               limit: float = SATURATION_LIMIT, quantile: float = 0.99,
               chroma: float = 1.0) -> tuple[PerturbParams, float]:
    """Parameters whose unbounded change stays where the bound still has a slope:
    ``(params scaled by limit / level when level > limit, level)``, ``level`` being the
    ``quantile`` of ``|raw change| / eps`` over the frames.

    Optimisation only pushes the raw change outwards once the bound ``eps * tanh(change /
    eps)`` is flat there: parameters carried from frame to frame (a tracked keyframe,
    refined hundreds of times) grow without end, the change turns into a saturated +-eps
    pattern whose gradient is gone, and it stops following the face (measured on
    WolfgangLanger_Pexels.mp4: the 99th percentile reached 37 eps by frame 80, and the mesh
    NME after CRF 23 fell to 0.01-0.02 after frame 250 while the PSNR fell to 33 dB).
    Scaling the parameters (exactly linear in the spatial term, to first order in the
    spectral ones) keeps the pattern's shape and brings it back where steps can move it.
    ``chroma``: :func:`perturb`'s (0: the luma of the change is what is measured)."""
    change = raw_change(frames.float(), params, regions, face_present, luma=chroma <= 0)
    magnitude = change.abs().flatten()
    if magnitude.numel() > 4_000_000:  # torch.quantile's input limit, with room
        magnitude = magnitude[::magnitude.numel() // 4_000_000 + 1]
    level = float(torch.quantile(magnitude.float(), quantile)) / eps
    if not math.isfinite(level):  # the spectral gains overflowed: cut back hard
        return params.scaled(0.1), level
    if level <= limit:
        return params, level
    return params.scaled(limit / level), level


def psnr_scale(delta: torch.Tensor, psnr_floor: float, rounding: bool = False) -> torch.Tensor:
    """``(B, 1, 1, 1)`` factors in (0, 1] that bring each frame's change ``delta`` (``(B, C,
    H, W)`` in [0, 1] units; one channel stands for three equal ones) to at most the mean
    square of ``psnr_floor`` dB: ``min(1, sqrt(limit / mean(delta^2)))`` with ``limit =
    10^(-psnr_floor / 10)``, less the mean square of rounding to the 8-bit grid (1/12 of a
    level squared) when ``rounding``: on frames off the grid, rounding adds about that much;
    on frames on it, rounding a change mostly lowers its mean square."""
    if not math.isfinite(psnr_floor) or psnr_floor <= 0:
        raise ValueError(f"psnr_floor must be a positive number of dB, got {psnr_floor}")
    limit = 10.0 ** (-psnr_floor / 10.0)
    if rounding:
        limit = max(limit - 1.0 / 12.0 / 255.0 ** 2, limit / 2)
    power = delta.square().mean(dim=(1, 2, 3), keepdim=True)
    return torch.sqrt(limit / power.clamp_min(limit)).clamp(max=1.0)


class Perturbation(nn.Module):
    """Thin stateful twin of :func:`perturb`: holds the hyper-parameters and the current
    (warm-start) parameters; ``forward(frames, regions)`` calls :func:`perturb`.

    Args:
        eps: L-inf budget.
        crop_size, frame_scale: parameter grid of the face and frame terms.
        region_floor, texture_floor, texture_reference: the attention.
    """

    def __init__(self, eps: float = 8 / 255, crop_size: int = CROP_SIZE,
                 frame_scale: int = FRAME_SCALE, region_floor: float = 0.5,
                 texture_floor: float = 0.4, texture_reference: float = 0.03):
        super().__init__()
        self.eps = eps
        self.crop_size = crop_size
        self.frame_scale = frame_scale
        self.region_floor = region_floor
        self.texture_floor = texture_floor
        self.texture_reference = texture_reference
        self.params: PerturbParams | None = None

    def make_params(self, batch: int, height: int, width: int, **kwargs) -> PerturbParams:
        return make_params(batch, height, width, self.crop_size, self.frame_scale, **kwargs)

    def forward(self, frames: torch.Tensor, regions: RegionOfInterest | None,
                params: PerturbParams | None = None, face_present: torch.Tensor | None = None,
                quantize: bool = True, backend: str = "torch") -> torch.Tensor:
        params = params if params is not None else self.params
        if params is None:
            params = self.make_params(1, frames.shape[-2], frames.shape[-1], device=frames.device)
            self.params = params
        return perturb(frames, params, regions, self.eps, face_present, quantize,
                       self.region_floor, self.texture_floor, self.texture_reference, backend)

    def extra_repr(self) -> str:
        return (f"eps={self.eps:.5f}, crop_size={self.crop_size}, frame_scale={self.frame_scale}, "
                f"region_floor={self.region_floor}, texture_floor={self.texture_floor}")


def with_eps(module: Perturbation, eps: float) -> Perturbation:
    """A copy of ``module`` with another budget (sharing the current parameters)."""
    copy = Perturbation(eps, module.crop_size, module.frame_scale, module.region_floor,
                        module.texture_floor, module.texture_reference)
    copy.params = module.params
    return copy


__all__ = ["PerturbParams", "Prepared", "make_params", "prepare", "prepare_apply", "perturb", "upsampling_matrix",
           "frame_term_outside", "Perturbation", "modulate",
           "quantize_within", "grid_bounds", "bounded", "attention", "raw_change", "texture_map", "taper_window",
           "frame_grid"]
