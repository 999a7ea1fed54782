"""The few frames a report shows: chosen among the evaluated ones (lowest, median and
highest landmark NME), decoded again and read again, with what the face readers read on
each and, when visibility is measured, ColorVideoVDP's map of where a viewer would see the
change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..media.frames import to_tensor
from . import metrics
from .readers import FaceReader


@dataclass
class FrameView:
    """One frame of each video, what the face readers read on it and its metrics.

    Attributes:
        index: the frame's index in the videos.
        original, protected: ``(H, W, 3)`` uint8 RGB.
        original_reading, protected_reading: ``{"landmarks": (468, 2) float32 pixels or
            None, "box": (4,) x0, y0, x1, y1 or None, "mask": (H, W) float32 in [0, 1] or
            None}``.
        metrics: metric name -> this frame's value.
        why: why this frame was chosen: "lowest NME", "median NME"...
        visibility_map: ``(H, W, 3)`` uint8: where a viewer would see the change.
        jod: the frame's JOD as a still image at its native size.
    """

    index: int
    original: np.ndarray
    protected: np.ndarray
    original_reading: dict
    protected_reading: dict
    metrics: dict
    why: str = ""
    visibility_map: np.ndarray | None = None
    jod: float | None = None


def choose_view_indices(evaluated: list[int], nme: torch.Tensor) -> list[tuple[str, int]]:
    """``[(why, index)]``: the frames of lowest, median and highest landmark NME (the first,
    middle and last evaluated frames when no NME is defined), without repeats."""
    values = nme.numpy()
    finite = [position for position, value in enumerate(values) if not math.isnan(value)]
    if finite:
        order = sorted(finite, key=lambda position: values[position])
        picks = [("lowest NME", order[0]), ("median NME", order[(len(order) - 1) // 2]),
                 ("highest NME", order[-1])]
    else:
        count = len(evaluated)
        picks = [("first", 0), ("middle", (count - 1) // 2), ("last", count - 1)]
    seen, chosen = set(), []
    for why, position in picks:
        if position not in seen:
            seen.add(position)
            chosen.append((why, position))
    return chosen


def collect_views(original: str, protected: str, evaluated: list[int], main,
                  reader: FaceReader, visibility_device=None) -> list[FrameView]:
    """Decode the representative frames again and read them for a report; with a
    ``visibility_device``, each also gets its image JOD and ColorVideoVDP's heat map.

    ``main`` holds the per-frame metrics of the ``evaluated`` frames: ``main.get(name)``
    gives one value per evaluated frame."""
    from ..media.sources import open_source

    picks = choose_view_indices(evaluated, main.get("landmark_nme"))
    wanted = {evaluated[position]: position for _, position in picks}
    pixels: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    last = max(wanted)
    with open_source(original) as source_o, open_source(protected) as source_p:
        for item_o, item_p in zip(source_o.frames("rgb24"), source_p.frames("rgb24")):
            if item_o.index in wanted:
                pixels[item_o.index] = (item_o.pixels.copy(), item_p.pixels.copy())
            if item_o.index >= last:
                break
    names = list(metrics.FIDELITY_METRICS) + list(metrics.EFFICACY_METRICS)
    views = []
    for why, position in picks:
        index = evaluated[position]
        if index not in pixels:
            continue
        image_o, image_p = pixels[index]
        batch_o, batch_p = to_tensor(image_o, "rgb24"), to_tensor(image_p, "rgb24")
        clean = reader.read(batch_o)
        read_p = reader.read(batch_p, reference=clean)
        values = {name: float(main.get(name)[position]) for name in names}
        view = FrameView(index, image_o, image_p, clean.view(0), read_p.view(0), values, why)
        if visibility_device is not None:
            from ..visibility import frame_map

            view.jod, view.visibility_map = frame_map(image_o, image_p, visibility_device)
        views.append(view)
    return views
