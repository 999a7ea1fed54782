"""Where the per-frame path's time goes: each stage of protecting one frame whose parameters
are already made (what live mode does for every frame, and file mode for every reused one),
beside the floor of the work it must do.

Stages, on a real frame of ``single_face.mp4`` (upscaled with bicubic for 1280x720), the
default options (luma only, the medium preset's eps and attention, which is 0 outside the
face: only the face regions' box is worked on), timed one at a time:

``detect``
    BlazeFace on the frame and the face region from it (live mode's per-frame detection);
``prepare``
    :func:`vdf_stream.protection.perturb.prepare_apply`: all the apply path takes from the
    frame alone (live mode runs it on its prepare thread, beside the frame before), made of
``prepare.small``
    the frame downscaled to the frame term's grid and its ``rfft2``;
``prepare.crop``
    the face-aligned 192x192 crop (a warp) and its ``rfft2``;
``prepare.warp``
    where the box's pixels sample the crop (one grid for the taper and the face term);
``prepare.attention``
    the taper warped into the box and the texture map (local luma deviation) of the box;
``prepare.bounds``
    the grid levels the box's output may take at each pixel (``x +- eps``);
``change``
    the frame term (modulated spectrum, ``irfft2``, upsampled) and the face term
    (modulated crop spectrum, ``irfft2``, warped into the box);
``bound``
    ``x + eps * w * tanh(change / eps)`` on the box, clamped and rounded onto the grid;
``apply``
    ``perturb(prepared=..., box_only=True)``: change and bound, what live mode's protecting
    thread runs for each frame;
``total``
    :func:`vdf_stream.protection.perturb.perturb` as the filter calls it (prepare, apply and
    the whole frame's output);
``whole_frame``
    the same output through the whole-frame path (attention, bound and rounding over every
    pixel), what ``total`` was before the box path.

Floors, the least such a path can cost: one ``rfft2``/``irfft2`` pair on the 192x192 crop and
one on the frame term's grid, two warps (``grid_sample`` of a 192x192 crop out of the frame
and of a one-channel crop into it), and one elementwise bound over the frame.

Medians (and minimums: this machine's neighbours move the medians) of ``--repeat`` runs at 1
and 2 torch threads; JSON under ``benchmarks/results/``.

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


MINIMUMS: dict = {}  # stage -> the fastest run's ms, beside the medians


def _median_ms(function, repeat: int, name: str | None = None) -> float:
    function()  # warm-up: lazy initialisation, allocator
    SYNC[0]()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        SYNC[0]()
        times.append(time.perf_counter() - started)
    if name is not None:
        MINIMUMS[name] = round(min(times) * 1000, 3)
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

    from vdf_stream.models.alignment import uncrop_grid
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
    prepared = P.prepare_apply(x, region, eps, found, params, **apply)
    assert prepared.in_box, "the default preset's attention is 0 outside the face"
    x0, y0, x1, y1 = box = prepared.box
    inside = x[..., y0:y1, x0:x1]
    warp = prepared.warp
    change = P.raw_change(x, params, region, found, luma=True, prepared=prepared)
    weight = prepared.weight
    MINIMUMS.clear()
    out = {}
    timed = {}

    def time_stage(name, function):
        out[name] = _median_ms(function, repeat, name)

    with torch.no_grad():
        time_stage("detect", lambda: choose_regions(detector.detect(x), (height, width),
                                                     device=device))
        time_stage("prepare", lambda: P.prepare_apply(x, region, eps, found, params, **apply))
        time_stage("prepare.small", lambda: torch.fft.rfft2(F.interpolate(
            x, size=grid, mode="bilinear", align_corners=False, antialias=True)))
        time_stage("prepare.crop", lambda: torch.fft.rfft2(P._crop_each(x, region, crop)))
        time_stage("prepare.warp", lambda: uncrop_grid(region, crop, (height, width), box,
                                                       like=x))

        def attention():
            window = P.taper_window(crop, device=x.device, dtype=x.dtype)
            taper = P._into_box(window.expand(1, 1, crop, crop), region, (height, width), box,
                                found, warp)
            reach = P.TEXTURE_WINDOW // 2
            wx0, wy0 = max(x0 - reach, 0), max(y0 - reach, 0)
            texture = P.texture_map(x[..., wy0:min(y1 + reach, height),
                                      wx0:min(x1 + reach, width)], apply["texture_reference"])
            texture = texture[..., y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
            floor = apply["texture_floor"]
            return texture.mul_(1 - floor).add_(floor).mul_(taper).clamp_(0, 1)

        time_stage("prepare.attention", attention)
        time_stage("prepare.bounds", lambda: P.grid_bounds(inside, eps))
        time_stage("change", lambda: P.raw_change(x, params, region, found, luma=True,
                                                  prepared=prepared))

        def bound():
            protected = P.bounded(inside, change, weight, eps)
            return P._on_grid(protected, prepared.low, prepared.high, straight_through=False,
                              inplace=True)

        time_stage("bound", bound)
        time_stage("apply", lambda: P.perturb(x, params, region, eps, face_present=found,
                                              prepared=prepared, box_only=True, **apply))
        time_stage("total", lambda: P.perturb(x, params, region, eps, face_present=found,
                                              **apply))

        def whole_frame():
            whole = P.prepare(x, region, eps, found, crop, grid, apply["region_floor"],
                              apply["texture_floor"], apply["texture_reference"])
            return P.perturb(x, params, region, eps, face_present=found, prepared=whole,
                             **apply)

        time_stage("whole_frame", whole_frame)
        timed["same_output"] = bool(torch.equal(whole_frame(), P.perturb(
            x, params, region, eps, face_present=found, **apply)))
        if device.type == "cuda":
            from vdf_stream.protection.apply_cuda import cupy_available

            if cupy_available():  # the fused kernel, and how far it is from torch's result
                time_stage("total.cupy", lambda: P.perturb(
                    x, params, region, eps, face_present=found, backend="cupy", **apply))
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
        frame_weight = torch.rand(1, 1, height, width, device=device)  # over the frame
        frame_change = torch.randn(1, 1, height, width, device=device) * eps
        floor["elementwise_bound"] = _median_ms(
            lambda: (x + eps * frame_weight * torch.tanh(frame_change / eps)).clamp_(0, 1)
            .mul_(255).round_(), repeat)
    out["floor"] = floor
    out["floor_total"] = round(sum(floor.values()), 3)
    out["minimum"] = dict(MINIMUMS)
    out["box"] = list(box)
    out.update(timed)
    return out


def step_stages(size: tuple[int, int], repeat: int, device=None) -> dict:
    """One optimiser step as file mode and live mode take it (the default options: the
    face mesh attacked on the window of the frame it reads), in parts: ``perturb`` (the
    change on the window, with its graph), ``terms`` (the face mesh reading the protected
    window, the loss terms), ``backward`` with Adam's update, and ``step`` all of them."""
    import torch

    from vdf_stream.models.detection import FaceDetector
    from vdf_stream.models.mesh import choose_regions
    from vdf_stream.protection import perturb as P
    from vdf_stream.protection.objective import (Adam, frame_term_outside,
                                                 optimisation_window)
    from vdf_stream.protection.options import ProtectionOptions
    from vdf_stream.protection.protector import Protector

    device = torch.device(device or "cpu")
    options = ProtectionOptions()
    protector = Protector(options, device)
    eps, apply = protector.eps, dict(protector.apply_options)
    x = _frame(size, device)
    height, width = x.shape[-2:]
    region, found = choose_regions(FaceDetector(device=device).detect(x), (height, width),
                                   device=device)
    objective = protector.objective
    reference = objective.reference(x, region, found)
    params = P.make_params(1, height, width, init_scale=eps / 2,
                           generator=torch.Generator().manual_seed(0)).to(device)
    window = optimisation_window(objective, reference, (height, width))
    prepared = P.prepare(x, reference.regions, eps, found, params.face_amplitude.shape[-2],
                         params.grid(), window=window,
                         **{name: apply[name] for name in ("region_floor", "texture_floor",
                                                           "texture_reference")})
    frames, frame_pixels = x, None
    if window is not None:
        x0, y0, x1, y1 = window
        frames = x[..., y0:y1, x0:x1]
        reference = reference.shifted(x0, y0, None)
        frame_pixels = height * width
    options_step = {**apply, "prepared": prepared}
    params = params.detach().requires_grad_()
    adam = Adam([{"params": params.tensors(), "lr": 0.01}])
    generator = torch.Generator().manual_seed(0)

    def forward():
        protected = P.perturb(frames, params, reference.regions, eps, face_present=found,
                              **options_step)
        outside = (frame_term_outside(params, prepared, eps, apply.get("chroma", 1.0))
                   if window is not None else None)
        return protected, outside

    protected, outside = forward()

    def terms():
        return objective.terms(protected, frames, reference, eps, generator, frame_pixels,
                               outside)

    def step():
        adam.zero_grad()
        protected_now, outside_now = forward()
        found_terms, _ = objective.terms(protected_now, frames, reference, eps, generator,
                                         frame_pixels, outside_now)
        objective.weighted(found_terms, protected_now).backward()
        adam.step()

    with torch.enable_grad():
        out = {"perturb": _median_ms(forward, repeat), "terms": _median_ms(terms, repeat),
               "step": _median_ms(step, repeat)}
    out["backward_and_update"] = round(out["step"] - out["perturb"] - out["terms"], 3)
    out["window"] = list(window) if window is not None else None
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
    from vdf_stream.resources import keep_freed_memory

    keep_freed_memory()  # as protect and live run
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
                figures["optimiser_step"] = step_stages(size, max(3, repeat // 2), args.device)
                cases.append({"size": f"{size[0]}x{size[1]}", "threads": count,
                              "device": args.device, "ms": figures})
                print(f"{size[0]}x{size[1]} {count} thread(s): total {figures['total']} ms "
                      f"(fastest {figures['minimum']['total']}), apply {figures['apply']} ms, "
                      f"prepare {figures['prepare']} ms, floor {figures['floor_total']} ms, "
                      f"detect {figures['detect']} ms, optimiser step "
                      f"{figures['optimiser_step']}", file=sys.stderr, flush=True)
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
