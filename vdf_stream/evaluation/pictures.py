"""The pictures of the evaluation report, embedded as data URIs: each shown frame's
original and protected versions in the same place (lossless, switched by hovering or
clicking) with a close-up of the face, the amplified difference, ColorVideoVDP's map of
where a viewer would see the change, and what the face readers read drawn over the frames.

Pictures are shrunk to at most :data:`PICTURE_SIDE` pixels on their longest side (JPEG at
:data:`JPEG_QUALITY`; the original / protected pairs as PNG).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .presentation import (EFFICACY_ORDER, FIDELITY_ORDER, MISSING, as_dict, as_number,
                           canonical, escape, format_value, jod_text, metric_for, ordered)

PICTURE_SIDE = 640  # longest side of an embedded picture, in pixels
JPEG_QUALITY = 85
# Colours of the readings drawn over the pictures (RGB).
MASK_COLOUR = (59, 130, 246)
BOX_COLOUR = (250, 204, 21)
ORIGINAL_POINTS = (34, 197, 94)
PROTECTED_POINTS = (244, 63, 94)
ZOOM = 2  # the face close-up: each frame pixel drawn as ZOOM x ZOOM screen pixels
ZOOM_SIDE = 320  # largest side of the close-up's crop, in frame pixels
AB_ROOM = 1020  # CSS pixels a frame and its close-up share side by side


def _check_frame(frame: Any, what: str) -> np.ndarray | None:
    if frame is None:
        return None
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"{what}: expected an (H, W, 3) uint8 RGB frame, got "
                         f"{frame.shape} {frame.dtype}")
    return frame


def _display_size(width: int, height: int) -> tuple[int, int]:
    factor = min(1.0, PICTURE_SIDE / max(width, height))
    return max(1, round(width * factor)), max(1, round(height * factor))


def _shrink(frame: np.ndarray, resample=Image.LANCZOS) -> Image.Image:
    image = Image.fromarray(frame)
    size = _display_size(image.width, image.height)
    return image if size == image.size else image.resize(size, resample)


def _data_uri(image: Image.Image, lossless: bool = False) -> str:
    """The picture as a data URI: JPEG, or PNG when ``lossless``."""
    buffer = io.BytesIO()
    if lossless:
        image.convert("RGB").save(buffer, "PNG")
        kind = "png"
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
        kind = "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _picture(value: Any) -> np.ndarray | None:
    """An optional picture as ``(H, W, 3)`` uint8 RGB: grey ``(H, W)`` is repeated, an alpha
    channel dropped, floats read in [0, 1] (or [0, 255] when larger); None when unusable."""
    if value is None:
        return None
    try:
        picture = np.asarray(value)
        if picture.ndim == 2:
            picture = np.repeat(picture[..., None], 3, axis=2)
        if picture.ndim != 3 or picture.shape[2] not in (3, 4) or 0 in picture.shape[:2]:
            return None
        picture = picture[..., :3]
        if picture.dtype != np.uint8:
            picture = np.nan_to_num(picture.astype(np.float64))
            if picture.max(initial=0.0) <= 1.0:
                picture = picture * 255.0
            picture = np.clip(picture + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(picture)
    except (TypeError, ValueError):
        return None


def _face_region(reading: Any, height: int, width: int, widest: int = ZOOM_SIDE
                 ) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` in frame pixels around the reading's face points (else its box),
    with a margin, at most ``widest`` wide and :data:`ZOOM_SIDE` high, centred on the face
    and inside the frame; None without a face."""
    reading = as_dict(reading)
    points = _points(reading.get("landmarks"))
    if points is not None and len(points):
        x0, y0 = points.min(axis=0)
        x1, y1 = points.max(axis=0)
    else:
        box = _box(reading.get("box"))
        if box is None:
            return None
        x0, y0, x1, y1 = box
    margin = 0.15 * max(x1 - x0, y1 - y0)
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    face_width, face_height = x1 - x0 + 2 * margin, y1 - y0 + 2 * margin
    # a face larger than the crop may be: its middle, in the face's proportions
    factor = min(1.0, widest / max(face_width, 1.0), ZOOM_SIDE / max(face_height, 1.0))
    crop_width = int(min(width, round(face_width * factor)))
    crop_height = int(min(height, round(face_height * factor)))
    if crop_width < 16 or crop_height < 16:
        return None
    left = int(min(max(round(centre_x - crop_width / 2), 0), width - crop_width))
    top = int(min(max(round(centre_y - crop_height / 2), 0), height - crop_height))
    return left, top, left + crop_width, top + crop_height


AB_HINT = "Hover to see the original; click to pin it, click again to switch."


def _ab_pair(original: Image.Image, protected: Image.Image, width: int, height: int,
             what: str, kind: str = "", region: str = "") -> str:
    """Original and protected stacked in the same place (the protected on show), with a
    label saying which one is shown. Hovering shows the original; a click pins the
    original, the next clicks switch (the page's script). ``width`` x ``height`` is the
    size in CSS pixels; ``region`` is extra HTML drawn over the pictures."""
    return (f'<div class="ab{(" " + kind) if kind else ""}" tabindex="0" role="button" '
            f'aria-pressed="false" aria-label="{escape(what)}: original or protected, click to '
            f'switch" title="{escape(AB_HINT)}">'
            f'<img class="ab-protected" src="{_data_uri(protected, lossless=True)}" '
            f'width="{width}" height="{height}" alt="protected {escape(what)}">'
            f'<img class="ab-original" src="{_data_uri(original, lossless=True)}" '
            f'width="{width}" height="{height}" alt="original {escape(what)}">{region}'
            '<span class="ab-label"><span class="when-protected">protected</span>'
            '<span class="when-original">original</span></span></div>')


def _ab_section(original: np.ndarray, protected: np.ndarray, reading: Any,
                index_text: str) -> str:
    """The frame's original / protected pair at 1x (shrunk to :data:`PICTURE_SIDE` when
    larger, the scale said) and a close-up of the face at :data:`ZOOM` x."""
    height, width = original.shape[:2]
    shown_original, shown_protected = _shrink(original), _shrink(protected)
    shown_width, shown_height = shown_protected.size
    # the close-up fits beside the frame where the page is wide enough
    widest = max(160, (AB_ROOM - shown_width) // ZOOM)
    region = _face_region(reading, height, width, widest)
    outline = ""
    if region is not None:
        x0, y0, x1, y1 = region
        outline = (f'<span class="ab-region" style="left:{100 * x0 / width:.2f}%;'
                   f"top:{100 * y0 / height:.2f}%;width:{100 * (x1 - x0) / width:.2f}%;"
                   f'height:{100 * (y1 - y0) / height:.2f}%"></span>')
    if (shown_width, shown_height) == (width, height):
        scale = (f"At 1\u00d7: {width}\u00d7{height}, one frame pixel per CSS pixel "
                 "(on a narrower window the browser shrinks it).")
    else:
        scale = (f"At {100 * shown_width / width:.0f} %: the {width}\u00d7{height} frame "
                 f"shrunk to {shown_width}\u00d7{shown_height} for this page"
                 + ("; the close-up beside it is at full resolution." if region else "."))
    pair = _ab_pair(shown_original, shown_protected, shown_width, shown_height,
                    f"frame {index_text}", region=outline)
    items = [f'<div class="ab-figure">{pair}<p class="ab-caption">Original and protected in '
             f"the same place. {escape(scale)} {escape(AB_HINT)}</p></div>"]
    if region is not None:
        x0, y0, x1, y1 = region
        crop_original = Image.fromarray(original[y0:y1, x0:x1])
        crop_protected = Image.fromarray(protected[y0:y1, x0:x1])
        items.append(
            '<div class="ab-figure">'
            + _ab_pair(crop_original, crop_protected, ZOOM * (x1 - x0), ZOOM * (y1 - y0),
                       f"face of frame {index_text} at {ZOOM}x", kind="zoom")
            + f'<p class="ab-caption">The face at {ZOOM}\u00d7: {x1 - x0}\u00d7{y1 - y0} '
            f"frame pixels (dashed on the left), each drawn as {ZOOM}\u00d7{ZOOM} "
            "screen pixels. Switches the same way.</p></div>")
    return f'<div class="ab-row">{"".join(items)}</div>'


def _difference(original: np.ndarray, protected: np.ndarray) -> np.ndarray:
    return np.abs(protected.astype(np.int16) - original.astype(np.int16)).astype(np.uint8)


def amplification_for(views: list) -> int:
    """One factor for every difference picture: the 99.5th percentile maps to ~200."""
    levels = []
    for view in views:
        _, original, protected = _view_frames(view)
        if original is not None and protected is not None and original.shape == protected.shape:
            levels.append(float(np.percentile(_difference(original, protected), 99.5)))
    level = max(levels, default=0.0)
    if level <= 0:
        return 10
    return int(min(50, max(1, round(200 / level))))


def _points(landmarks: Any) -> np.ndarray | None:
    if landmarks is None:
        return None
    try:
        points = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if points.ndim != 2 or points.shape[1] < 2 or len(points) == 0:
        return None
    points = points[:, :2]
    return points[np.isfinite(points).all(axis=1)]


def _box(box: Any) -> tuple[float, float, float, float] | None:
    if box is None:
        return None
    try:
        values = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if values.size != 4 or not np.isfinite(values).all():
        return None
    x0, y0, x1, y1 = values.tolist()
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _draw_reading(frame: np.ndarray, reading: Any, reference: Any,
                  colour: tuple[int, int, int]) -> tuple[Image.Image, list[str]]:
    """The frame at display size with the reading's mask, box and points drawn on it.

    ``reference`` (another reading, or None) has its points drawn underneath in the
    original's colour, so that a shift shows. Returns the picture and what was drawn.
    """
    reading = as_dict(reading)
    image = _shrink(frame)
    factor = image.width / frame.shape[1]
    drawn = []
    mask = reading.get("mask")
    if mask is not None:
        try:
            mask = np.asarray(mask, dtype=np.float32)
        except (TypeError, ValueError):
            mask = None
    if mask is not None and mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask is not None and mask.ndim == 2 and mask.size:
        mask = np.nan_to_num(np.clip(mask, 0.0, 1.0))
        alpha = Image.fromarray(mask).resize(image.size, Image.BILINEAR)
        alpha = np.clip(np.asarray(alpha, dtype=np.float32), 0.0, 1.0)[..., None] * 0.45
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels * (1 - alpha) + np.asarray(MASK_COLOUR, np.float32) * alpha
        image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
        drawn.append("mask")
    draw = ImageDraw.Draw(image)
    box = _box(reading.get("box"))
    if box is not None:
        line = max(2, round(image.width / 320))
        draw.rectangle([value * factor for value in box], outline=BOX_COLOUR, width=line)
        drawn.append("box")
    radius = max(1.2, image.width / 400)
    points = _points(reading.get("landmarks"))
    reference_points = _points(as_dict(reference).get("landmarks")) if reference else None
    if reference_points is not None and points is not None and len(points):
        for x, y in reference_points * factor:
            draw.ellipse([x - radius * 0.8, y - radius * 0.8, x + radius * 0.8,
                          y + radius * 0.8], fill=ORIGINAL_POINTS)
    if points is not None and len(points):
        for x, y in points * factor:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
        drawn.append(f"{len(points)} points")
    return image, drawn


def _view_frames(view: Any) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """(frame index as text, original, protected) of a view, the frames checked."""
    index = as_number(getattr(view, "index", None))
    index_text = str(int(index)) if index is not None else MISSING
    original = _check_frame(getattr(view, "original", None), f"view {index_text}: original")
    protected = _check_frame(getattr(view, "protected", None),
                             f"view {index_text}: protected")
    return index_text, original, protected


def view_section(view: Any, amplification: int) -> str:
    index_text, original, protected = _view_frames(view)
    original_reading = as_dict(getattr(view, "original_reading", None))
    protected_reading = as_dict(getattr(view, "protected_reading", None))
    metrics = canonical(getattr(view, "metrics", None))
    visibility_map = _picture(getattr(view, "visibility_map", None))
    frame_jod = getattr(view, "jod", None)
    why = getattr(view, "why", None)
    heading = f"Frame {index_text}" + (f" ({why})" if isinstance(why, str) and why else "")

    def figure(uri: str | None, caption: str, alt: str) -> str:
        if uri is None:
            return (f'<figure><div class="absent">not available</div>'
                    f"<figcaption>{caption}</figcaption></figure>")
        return (f'<figure><img src="{uri}" alt="{escape(alt)}" loading="lazy">'
                f"<figcaption>{caption}</figcaption></figure>")

    same = (original is not None and protected is not None
            and original.shape == protected.shape)
    if same:
        top = _ab_section(original, protected, original_reading, index_text)
    else:  # no pair to switch between: each frame on its own
        top = ('<div class="pictures two">' + "".join((
            figure(_data_uri(_shrink(original)) if original is not None else None,
                   "Original", f"original frame {index_text}"),
            figure(_data_uri(_shrink(protected)) if protected is not None else None,
                   "Protected", f"protected frame {index_text}"))) + "</div>")

    pictures = []
    if same:
        difference = _difference(original, protected)
        largest = int(difference.max())
        amplified = np.clip(difference.astype(np.int32) * amplification, 0, 255).astype(np.uint8)
        pictures.append(figure(
            _data_uri(_shrink(amplified, Image.BOX)),
            f"Difference |protected \u2212 original| \u00d7 {amplification} "
            f"(largest change {largest} of 255)",
            f"amplified difference of frame {index_text}"))
    else:
        reason = "frames missing" if original is None or protected is None else (
            f"sizes differ: {original.shape[1]}\u00d7{original.shape[0]} and "
            f"{protected.shape[1]}\u00d7{protected.shape[0]}")
        pictures.append(figure(None, f"Difference ({escape(reason)})", ""))
    if visibility_map is not None:
        pictures.append(figure(
            _data_uri(_shrink(visibility_map)),
            "Where a viewer would see the change (ColorVideoVDP), frame JOD "
            f"{escape(jod_text(frame_jod))}",
            f"where a viewer would see the change in frame {index_text}"))

    readings = []
    for label, frame, reading, reference, colour in (
            ("Original", original, original_reading, None, ORIGINAL_POINTS),
            ("Protected", protected, protected_reading, original_reading, PROTECTED_POINTS)):
        if frame is None:
            readings.append(figure(None, f"{label}: what the face models read", ""))
            continue
        image, drawn = _draw_reading(frame, reading, reference, colour)
        found = "no face found" if not any(
            item.endswith("points") or item == "box" for item in drawn) else ", ".join(drawn)
        readings.append(figure(_data_uri(image),
                               f"{label}: what the face models read ({escape(found)})",
                               f"face readings on the {label.lower()} frame {index_text}"))

    caption_items = []
    if as_number(frame_jod) is not None:
        caption_items.append(f"<span><b>Frame JOD</b> {escape(jod_text(frame_jod))}</span>")
    for name in ordered(metrics, FIDELITY_ORDER + EFFICACY_ORDER):
        metric = metric_for(name)
        caption_items.append(f"<span><b>{escape(metric.label)}</b> "
                             f"{escape(format_value(metrics[name], metric))}</span>")
    caption = " ".join(caption_items) or "<span>no metrics for this frame</span>"
    shape = original.shape if original is not None else (
        protected.shape if protected is not None else (0, 0))
    if shape[0] > shape[1]:  # portrait: the narrow pictures in one row
        grids = f'<div class="pictures five">{"".join(pictures + readings)}</div>'
    else:
        grids = (f'<div class="pictures two">{"".join(pictures)}</div>'
                 f'<div class="pictures two">{"".join(readings)}</div>')
    return (f'<section class="view"><h3>{escape(heading)}</h3>'
            f'<p class="view-metrics">{caption}</p>{top}{grids}</section>')
