"""eps vs fidelity vs efficacy of the VDF perturbation, per-frame optimisation (share=off),
measured after a real libx264 round trip, with the project's own metric definitions.

For a few frames of a real clip: optimise each frame's parameters (the frames of one eps
are optimised together as a batch; every frame has its own parameters and its own loss),
apply them, encode the protected frames with libx264 at ``--crf`` and decode them
(``vdf_stream.evaluation.degradations.h264_roundtrip``), then read original and protected frames with
``vdf-stream eval``'s face reader (``FaceReader``, selfie+mesh parser, own detection on
the protected frame) and compare them with ``readers.compare`` / ``evaluate.fidelity``.
The sign-noise baseline of the same eps goes through the same path.

    python benchmarks/tradeoff.py --frames 4 --stride 16 --eps 4/255 8/255 12/255 --steps 20

Prints a table and writes JSON (``--json``; default under benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _fraction(text: str) -> float:
    if "/" in text:
        numerator, denominator = text.split("/", 1)
        return float(numerator) / float(denominator)
    return float(text)


def load_frames(clip: str, count: int, stride: int) -> tuple[torch.Tensor, object]:
    from vdf_stream.api import iterate
    from vdf_stream.media.sources import open_source

    with open_source(clip) as source:
        info = source.info
    chosen = []
    for frames in iterate(clip, format="rgbf32"):
        for position, index in enumerate(frames.indices):
            if index % stride == 0:
                chosen.append(frames.data[position:position + 1])
        if len(chosen) >= count:
            break
    return torch.cat(chosen[:count]), info


def save_pictures(folder: Path, name: str, original_u8: torch.Tensor, published: torch.Tensor,
                  regions) -> None:
    """PNG pictures to look at: per frame, original | published (after the encoder) side by
    side, and a 2x face crop: original | published | difference x 8 around mid grey."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(original_u8.shape[0]):
        clean, out = original_u8[index], published[index]
        Image.fromarray(torch.cat([clean, out], dim=2).permute(1, 2, 0).numpy()).save(
            folder / f"{name}_frame{index}.png")
        if regions is None:
            continue
        height, width = clean.shape[-2:]
        cx, cy = (float(v) for v in regions.center[index])
        half = float(regions.size[index]) * 0.45
        top, bottom = max(0, int(cy - half)), min(height, int(cy + half))
        left, right = max(0, int(cx - half)), min(width, int(cx + half))
        a = clean[:, top:bottom, left:right].int()
        b = out[:, top:bottom, left:right].int()
        difference = ((b - a) * 8 + 128).clamp(0, 255)
        strip = torch.cat([a, b, difference], dim=2).to(torch.uint8).permute(1, 2, 0).numpy()
        picture = Image.fromarray(np.ascontiguousarray(strip))
        picture = picture.resize((picture.width * 2, picture.height * 2), Image.NEAREST)
        picture.save(folder / f"{name}_face{index}.png")


def measure(original_u8: torch.Tensor, protected: torch.Tensor, reader, info, crf: float,
            pictures: tuple[Path, str, object] | None = None) -> dict:
    from vdf_stream.evaluation import degradations, evaluate, readers
    protected_u8 = torch.round(protected.clamp(0, 1) * 255).to(torch.uint8)
    published = degradations.h264_roundtrip(protected_u8, crf, info)
    if pictures is not None:
        save_pictures(pictures[0], pictures[1], original_u8, published, pictures[2])
    reference = reader.read(original_u8)
    reading = reader.read(published, reference=reference)
    efficacy = readers.compare(reading, reference)
    count = original_u8.shape[0]
    fidelity = evaluate.fidelity(original_u8, published, None, None, torch.zeros(count, dtype=torch.bool))
    before = evaluate.fidelity(original_u8, protected_u8, None, None, torch.zeros(count, dtype=torch.bool))
    out = {}
    for name, values in {**efficacy, **fidelity}.items():
        values = values[torch.isfinite(values)]
        out[name] = float(values.median()) if values.numel() else None
    out["psnr_before_encoding"] = float(before["psnr"].median())
    out["max_abs_difference_before_encoding"] = float(before["max_abs_difference"].max())
    out["per_frame"] = {name: [round(float(v), 4) for v in values]
                        for name, values in efficacy.items() if name != "presence"}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default="single_face.mp4")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--eps", nargs="+", default=["4/255", "8/255", "12/255"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=1.0)
    parser.add_argument("--crf", type=float, default=23)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-noise", action="store_true")
    parser.add_argument("--fidelity-weight", type=float, default=None)
    parser.add_argument("--parsing", type=float, default=None,
                        help="weight of the parsing term (default: ObjectiveWeights')")
    parser.add_argument("--detection", type=float, default=None,
                        help="weight of the detection term (default: ObjectiveWeights')")
    parser.add_argument("--no-balance", action="store_true",
                        help="plain weighted sum of the terms instead of balanced gradients")
    parser.add_argument("--chroma", type=float, default=1.0,
                        help="share of the change's colour part kept (0: luma only)")
    parser.add_argument("--texture-floor", type=float, default=0.4)
    parser.add_argument("--region-floor", type=float, default=0.5)
    parser.add_argument("--texture-reference", type=float, default=0.03,
                        help="local luma std that counts as full texture")
    parser.add_argument("--transformations", default="default",
                        help="default, none, or jpeg (the JPEG-like stand-in only, no H.264-like)")
    parser.add_argument("--h264-probability", type=float, default=None,
                        help="probability of the H.264-like step in the transformations")
    parser.add_argument("--scale-min", type=float, default=None,
                        help="smallest random rescale in the transformations")
    parser.add_argument("--blur-probability", type=float, default=None)
    parser.add_argument("--pictures", default=None,
                        help="folder for PNG pictures (original | published, 2x face crops)")
    parser.add_argument("--tag", default="run", help="prefix of the pictures' names")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from vdf_stream import assets, environment
    from vdf_stream.evaluation import readers
    from vdf_stream.filters.noise import bounded_noise
    from vdf_stream.models.mesh import FacePipeline
    from vdf_stream.protection.objective import Objective, ObjectiveWeights, Transformations, optimise
    from vdf_stream.protection.perturb import make_params, perturb

    torch.manual_seed(args.seed)
    clip = str(assets.fetch(args.clip, progress=False)) if "/" not in args.clip else args.clip
    frames, info = load_frames(clip, args.frames, args.stride)
    original_u8 = torch.round(frames * 255).to(torch.uint8)
    reader = readers.FaceReader(torch.device("cpu"), "selfie+mesh")
    pipeline = FacePipeline(segmentation=True)
    weights = ObjectiveWeights()
    if args.fidelity_weight is not None:
        weights.fidelity = args.fidelity_weight
    if args.parsing is not None:
        weights.parsing = args.parsing
    if args.detection is not None:
        weights.detection = args.detection
    weights.balance = not args.no_balance
    transformations = Transformations()
    if args.transformations == "none":
        transformations = transformations.none()
    elif args.transformations == "jpeg":
        transformations.h264_probability = 0.0
    if args.scale_min is not None:
        transformations.scale_min = args.scale_min
    if args.blur_probability is not None:
        transformations.blur_probability = args.blur_probability
    if args.h264_probability is not None:
        transformations.h264_probability = args.h264_probability
    objective = Objective(pipeline, weights, transformations)
    perturb_options = {"chroma": args.chroma, "texture_floor": args.texture_floor,
                       "region_floor": args.region_floor,
                       "texture_reference": args.texture_reference}
    reference = objective.reference(frames)
    rows = []
    for eps_text in args.eps:
        eps = _fraction(eps_text)
        generator = torch.Generator().manual_seed(args.seed)
        params = make_params(frames.shape[0], *frames.shape[-2:], device=frames.device,
                             init_scale=eps / 2, generator=torch.Generator().manual_seed(args.seed))
        started = time.perf_counter()
        result = optimise(frames, reference, params, objective, eps, args.steps,
                          args.learning_rate, generator, perturb_options=perturb_options)
        seconds = time.perf_counter() - started
        with torch.no_grad():
            protected = perturb(frames, result.params, reference.regions, eps,
                                face_present=reference.found, **perturb_options)
        pictures = None
        if args.pictures:
            name = f"{args.tag}_eps{eps_text.replace('/', '-')}"
            pictures = (Path(args.pictures), name, reference.regions)
        row = {"method": "vdf", "eps": eps_text, "steps": result.steps,
               "optimise_seconds_per_frame": seconds / frames.shape[0],
               **measure(original_u8, protected, reader, info, args.crf, pictures)}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "per_frame"}), flush=True)
        if not args.no_noise:
            noisy = bounded_noise(frames, list(range(frames.shape[0])), eps, "sign", args.seed)
            pictures = None
            if args.pictures:
                name = f"noise_eps{eps_text.replace('/', '-')}"
                pictures = (Path(args.pictures), name, reference.regions)
            row = {"method": "noise_sign", "eps": eps_text,
                   **measure(original_u8, noisy, reader, info, args.crf, pictures)}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "per_frame"}), flush=True)
    result = {"clip": args.clip, "frames": args.frames, "stride": args.stride,
              "crf": args.crf, "steps": args.steps, "learning_rate": args.learning_rate,
              "weights": vars(weights), "seed": args.seed, "rows": rows,
              "perturb_options": perturb_options, "transformations": vars(transformations),
              "versions": environment.library_versions(), "machine": environment.machine_description()}
    path = Path(args.json) if args.json else (
        Path(__file__).parent / "results" / f"tradeoff_{environment.machine_tag()}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
