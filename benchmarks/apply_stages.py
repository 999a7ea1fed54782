"""Where the per-frame path's time goes: each stage of protecting one frame whose parameters
are already made (what live mode does for every frame, and file mode for every reused one),
beside the floor of the work it must do.

Stages, on a real frame of ``single_face.mp4`` (upscaled with bicubic for 1280x720), the
default options (luma only, the medium preset's eps and attention), timed one at a time:

``detect``
    BlazeFace on the frame and the face region from it (live mode's per-frame detection);
``prepare.small``
    the frame downscaled to the frame term's grid and its ``rfft2``;
``prepare.crop``
    the face-aligned 192x192 crop (a warp) and its ``rfft2``;
``prepare.attention``
    the texture map (local luma deviation) and the face region's taper warped into the frame;
``prepare.bounds``
    the grid levels the output may take at each pixel (``x +- eps``);
``change.frame``
    the frame term: modulated spectrum, ``irfft2``, upsampled to the frame;
``change.face``
    the face term: modulated crop spectrum, ``irfft2``, warped into the frame;
``bound``
    ``x + eps * w * tanh(change / eps)``, clamped and rounded onto the grid;
``total``
    :func:`vdf_stream.protection.perturb.perturb` as the filter calls it (prepare included).

Floors, the least such a path can cost: one ``rfft2``/``irfft2`` pair on the 192x192 crop and
one on the frame term's grid, two warps (``grid_sample`` of a 192x192 crop out of the frame
and of a one-channel crop into it), and one elementwise bound over the frame.

Medians of ``--repeat`` runs at 1 and 2 torch threads; JSON under ``benchmarks/results/``.

    python benchmarks/apply_stages.py
    python benchmarks/apply_stages.py --quick --output /tmp/stages.json   # smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = ((640, 360), (1280, 720))


SYNC = [lambda: None]  # waits for the device's queued work (CUDA) before a clock is read


def _median_ms(function, repeat: int) -> float:
    function()  # warm-up: lazy initialisation, allocator
    SYNC[0]()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        SYNC[0]()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def _frame(size: tuple[int, int], device):
    import av

    from vdf_stream import assets
    from vdf_stream.media.frames import image_to_batch

    clip = assets.fetch("single_face.mp4", progress=False)
    with av.open(str(clip)) as container:
        frame = next(container.decode(video=0))
        width, height = size
        if (frame.width, frame.height) != size:
            frame = frame.reformat(width=width, height=height, interpolation="BICUBIC")
        pixels = frame.to_ndarray(format="rgb24")
    return image_to_batch(pixels, device)  # planar float, as the pipeline hands the filter


def stages(size: tuple[int, int], repeat: int, device=None) -> dict:
    import torch
    import torch.nn.functional as F

    from vdf_stream.models.alignment import region_box
    from vdf_stream.models.detection import FaceDetector
    from vdf_stream.models.mesh import choose_regions
    from vdf_stream.protection import perturb as P
    from vdf_stream.protection.options import ProtectionOptions

    options = ProtectionOptions()
    eps, _ = options.resolved()
    apply = options.apply_spec().kwargs()
    device = torch.device(device or "cpu")
    x = _frame(size, device)
    height, width = x.shape[-2:]
    detector = FaceDetector(device=device)
    region, found = choose_regions(detector.detect(x), (height, width), device=device)
    params = P.make_params(1, height, width, init_scale=eps / 2,
                           generator=torch.Generator().manual_seed(0)).to(device)
    grid = params.grid()
    crop = params.face_amplitude.shape[-2]
    prepared = P.prepare(x, region, eps, found, crop, grid, apply["region_floor"],
                         apply["texture_floor"], apply["texture_reference"])
    box = region_box(region, (height, width))
    change = P.raw_change(x, params, region, found, luma=True, prepared=prepared)
    weight = prepared.weight
    out = {}
    with torch.no_grad():
        out["detect"] = _median_ms(
            lambda: choose_regions(detector.detect(x), (height, width), device=device), repeat)
        out["prepare.small"] = _median_ms(lambda: torch.fft.rfft2(F.interpolate(
            x, size=grid, mode="bilinear", align_corners=False, antialias=True)), repeat)
        out["prepare.crop"] = _median_ms(
            lambda: torch.fft.rfft2(P._crop_each(x, region, crop)), repeat)

        def attention():
            taper = P._taper_in_frame(region, crop, (height, width), box, found, x)
            return P.attention(x, taper, apply["region_floor"], apply["texture_floor"],
                               apply["texture_reference"])

        out["prepare.attention"] = _median_ms(attention, repeat)

        out["prepare.bounds"] = _median_ms(lambda: P.grid_bounds(x, eps), repeat)

        def frame_term():
            small = P._luma(P._modulated(prepared.small, prepared.small_spectrum,
                                         params.frame_amplitude, params.frame_phase))
            return F.interpolate(small, size=(height, width), mode="bilinear",
                                 align_corners=False)

        out["change.frame"] = _median_ms(frame_term, repeat)

        def face_term():
            window = P.taper_window(crop, device=x.device, dtype=x.dtype)
            face = P._luma((P._modulated(prepared.crops, prepared.crop_spectrum,
                                         params.face_amplitude, params.face_phase)
                            + params.face_spatial) * window)
            return P._into_frame(face, region, (height, width), box, found)

        out["change.face"] = _median_ms(face_term, repeat)

        def bound():
            protected = P.bounded(x, change, weight, eps)
            return P._on_grid(protected, prepared.low, prepared.high, straight_through=False,
                              inplace=True)

        out["bound"] = _median_ms(bound, repeat)
        out["total"] = _median_ms(
            lambda: P.perturb(x, params, region, eps, face_present=found, **apply), repeat)
        if device.type == "cuda":
            from vdf_stream.protection.apply_cuda import cupy_available

            if cupy_available():  # the fused kernel, and how far it is from torch's result
                out["total.cupy"] = _median_ms(lambda: P.perturb(
                    x, params, region, eps, face_present=found, backend="cupy", **apply), repeat)
                by_torch = P.perturb(x, params, region, eps, face_present=found, **apply)
                by_cupy = P.perturb(x, params, region, eps, face_present=found,
                                    backend="cupy", **apply)
                out["cupy_vs_torch_max_levels"] = float((by_cupy - by_torch).abs().max() * 255)

        # floors
        crop_image = torch.rand(1, 1, crop, crop, device=device)
        small_image = torch.rand(1, 1, *grid, device=device)
        floor = {}
        floor["fft.crop"] = _median_ms(
            lambda: torch.fft.irfft2(torch.fft.rfft2(crop_image), s=crop_image.shape[-2:]),
            repeat)
        floor["fft.small"] = _median_ms(
            lambda: torch.fft.irfft2(torch.fft.rfft2(small_image), s=small_image.shape[-2:]),
            repeat)
        theta = torch.tensor([[[0.3, 0.0, 0.0], [0.0, 0.5, 0.0]]], device=device)
        to_crop = F.affine_grid(theta, (1, 3, crop, crop), align_corners=False)
        to_frame = F.affine_grid(torch.tensor([[[3.3, 0.0, 0.0], [0.0, 2.0, 0.0]]],
                                              device=device),
                                 (1, 1, box[3] - box[1], box[2] - box[0]), align_corners=False)
        floor["warps"] = _median_ms(lambda: (
            F.grid_sample(x, to_crop, align_corners=False),
            F.grid_sample(crop_image, to_frame, align_corners=False)), repeat)
        floor["elementwise_bound"] = _median_ms(
            lambda: (x + eps * weight * torch.tanh(change / eps)).clamp_(0, 1).mul_(255)
            .round_(), repeat)
    out["floor"] = floor
    out["floor_total"] = round(sum(floor.values()), 3)
    return out


def main(argv=None) -> int:
    import torch

    from vdf_stream.environment import (git_commit, library_versions, machine_description,
                                        machine_tag)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, metavar="N",
                        help="timed runs per stage (the median is kept; default 20)")
    parser.add_argument("--quick", action="store_true",
                        help="640x360, 1 thread, 3 runs: a smoke test")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default; timed at 1 and 2 threads) or cuda (timed once, "
                             "with the fused CuPy kernel too when CuPy is installed)")
    parser.add_argument("--output", type=Path, default=None, metavar="PATH",
                        help="the JSON report (default: benchmarks/results/"
                             "apply_stages_MACHINE.json)")
    args = parser.parse_args(argv)
    sizes = SIZES[:1] if args.quick else SIZES
    threads = (1,) if args.quick else (1, 2)
    if args.device.startswith("cuda"):
        threads = (torch.get_num_threads(),)
        SYNC[0] = lambda: torch.cuda.synchronize(args.device)
    repeat = 3 if args.quick else args.repeat
    before = torch.get_num_threads()
    cases = []
    try:
        for count in threads:
            torch.set_num_threads(count)
            for size in sizes:
                figures = stages(size, repeat, args.device)
                cases.append({"size": f"{size[0]}x{size[1]}", "threads": count,
                              "device": args.device, "ms": figures})
                print(f"{size[0]}x{size[1]} {count} thread(s): total {figures['total']} ms, "
                      f"floor {figures['floor_total']} ms, detect {figures['detect']} ms",
                      file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(before)
    report = {"benchmark": "apply_stages", "quick": args.quick, "repeat": repeat,
              "command": "python benchmarks/apply_stages.py" + (" --quick" if args.quick else ""),
              "commit": git_commit(), "date": time.strftime("%Y-%m-%d"),
              "machine": machine_description(), "versions": library_versions(),
              "cases": cases}
    output = args.output or (Path(__file__).resolve().parent / "results"
                             / f"apply_stages_{machine_tag()}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
