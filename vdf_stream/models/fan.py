"""Optional adapter for the ``face-alignment`` package (FAN, 68 landmarks), the landmark
detector the talking-face pipelines run (ER-NeRF: ``FaceAlignment(LandmarksType._2D,
flip_input=False)`` then ``get_landmarks`` on every frame).

It measures what those pipelines would see (a reference, not differentiable): the package
is imported only when a :class:`FanLandmarker` is made, and its absence raises
:class:`FanUnavailable` with what to install. The package downloads its own weights on
first use (S3FD detector and FAN), which needs network access to its authors' site.
"""

from __future__ import annotations

import numpy as np
import torch

POINT_COUNT = 68
# 68-point (iBUG 300-W) indices of the outer eye corners: the NME normaliser of the metrics.
RIGHT_EYE_OUTER = 36  # the person's right eye, image left
LEFT_EYE_OUTER = 45


class FanUnavailable(ImportError):
    """The optional ``face-alignment`` package is not installed."""


def _import_face_alignment():
    try:
        import face_alignment
    except ImportError as error:
        raise FanUnavailable(
            "the FAN landmark adapter needs the optional package face-alignment: "
            f"pip install face-alignment ({error})"
        ) from None
    return face_alignment


def _landmarks_type(module):
    kinds = module.LandmarksType
    for name in ("TWO_D", "_2D"):  # renamed in face-alignment 1.4
        if hasattr(kinds, name):
            return getattr(kinds, name)
    raise FanUnavailable(f"face-alignment {getattr(module, '__version__', '?')} has no 2-D landmarks type")


class FanLandmarker:
    """68 FAN landmarks per face, as ``face_alignment.FaceAlignment`` gives them.

    Args:
        device: "cpu" or "cuda".
        face_detector: the package's detector ("sfd", as the pipelines use, "blazeface", ...).
        flip_input: also run on the mirrored crop and average (the pipelines do not).
    """

    def __init__(self, device: str = "cpu", face_detector: str = "sfd", flip_input: bool = False):
        module = _import_face_alignment()
        self.model = module.FaceAlignment(_landmarks_type(module), device=str(device),
                                          face_detector=face_detector, flip_input=flip_input)

    def __call__(self, frames: torch.Tensor,
                 boxes: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Landmarks of ``(B, 3, H, W)`` RGB frames in [0, 1].

        Args:
            boxes: optional per-frame ``(K, 4)`` face boxes ``(x_min, y_min, x_max, y_max)``
                in pixels (e.g. from :class:`detection.FaceDetector`) used instead of the
                package's detector.

        Returns:
            per frame, ``(K, 68, 2)`` float32 pixel coordinates (``K = 0`` without a face).
        """
        if frames.dim() != 4 or frames.shape[1] != 3 or not frames.is_floating_point():
            raise ValueError(f"frames must be floating-point RGB (B, 3, H, W) in [0, 1], got "
                             f"{frames.dtype} {tuple(frames.shape)}")
        if boxes is not None and len(boxes) != frames.shape[0]:
            raise ValueError(f"{len(boxes)} box lists for {frames.shape[0]} frames")
        images = (frames.detach().clamp(0, 1) * 255).round().to(torch.uint8)
        images = images.permute(0, 2, 3, 1).cpu().numpy()
        results = []
        for index, image in enumerate(images):
            faces = None
            if boxes is not None:
                faces = [np.append(box.detach().cpu().numpy().astype(np.float32), 1.0)
                         for box in boxes[index]]
                if not faces:
                    results.append(torch.zeros(0, POINT_COUNT, 2))
                    continue
            points = self.model.get_landmarks_from_image(np.ascontiguousarray(image),
                                                         detected_faces=faces)
            if not points:
                results.append(torch.zeros(0, POINT_COUNT, 2))
            else:
                stacked = np.stack([np.asarray(p, dtype=np.float32)[:, :2] for p in points])
                results.append(torch.from_numpy(stacked))
        return results
