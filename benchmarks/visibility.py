"""Efficacy against visibility: what each setting of the protection buys at what visibility,
end to end, as a user runs it.

For each clip and each filter graph: ``vdf-stream protect`` it with libx264 at ``--crf``
(the published file), then ``vdf-stream eval`` the published file against the clip:
ColorVideoVDP's video JOD at native size (and at full screen with
``--full-screen-frames``), the mesh's landmark NME and head-pose error, and with
``--transfer`` the readers of other families (MTCNN, face-api). The codec floor is the
graph ``null`` (the clip re-encoded with the same settings), measured once per clip.

    python benchmarks/visibility.py --configs "eps2=vdf=eps=2/255" "eps4=vdf=eps=4/255"
    python benchmarks/visibility.py --svg docs/visibility.svg --json benchmarks/results/...

A configuration is ``LABEL=GRAPH``. WolfgangLanger is cut to its first ``--wl-frames``
frames (lossless) to keep a run short. Writes JSON (``--json``) and an SVG plot of efficacy
against JOD (``--svg``) built from the JSON with ``--plot-only``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLIPS = ("single_face.mp4", "WolfgangLanger_Pexels.mp4")
DEFAULT_CONFIGS = ("floor=null", "default=vdf")


def cut(clip: Path, frames: int | None, folder: Path) -> Path:
    """The first ``frames`` frames of ``clip``, losslessly (FFV1 in Matroska, the source's
    pixel format and frame rate), or the clip itself."""
    if not frames:
        return clip
    import av

    target = folder / f"{clip.stem}_{frames}.mkv"
    if target.exists():
        return target
    with av.open(str(clip)) as source, av.open(str(target), "w") as output:
        stream_in = source.streams.video[0]
        stream = output.add_stream("ffv1", rate=stream_in.average_rate)
        stream.width, stream.height = stream_in.width, stream_in.height
        stream.pix_fmt = stream_in.codec_context.pix_fmt
        stream.time_base = stream_in.time_base
        for count, frame in enumerate(source.decode(stream_in)):
            if count >= frames:
                break
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return target


def run_one(source: Path, graph: str, crf: float, folder: Path, label: str, args) -> dict:
    from vdf_stream.api import protect
    from vdf_stream.evaluation.evaluate import EvalOptions, evaluate
    from vdf_stream.media.sinks import EncodeOptions

    published = folder / f"{source.stem}_{label}.mp4"
    started = time.perf_counter()
    stats = protect(str(source), str(published), vf=graph, device="cpu",
                    encode=EncodeOptions(crf=crf, copy_audio=False))
    protect_seconds = time.perf_counter() - started
    floor = graph.strip() == "null"
    options = EvalOptions(stride=args.stride, transfer=args.transfer and not floor,
                          full_screen_frames=args.full_screen_frames)
    options.floor_crf = crf
    options.visibility_floor = False  # the graph null is the floor, measured once per clip
    result, _ = evaluate(str(source), str(published), options)
    visible = result["visibility"]
    row = {
        "label": label, "graph": graph, "crf": crf,
        "frames": stats.frames_out, "protect_seconds": round(protect_seconds, 2),
        "protect_fps": round(stats.frames_out / protect_seconds, 2),
        "jod_native": visible["native"]["jod"],
        "jod_native_frame_min": min(visible["native"]["per_frame"]),
        "jod_full_screen": (visible["full_screen"] or {}).get("jod"),
        "psnr": result["fidelity"]["psnr"]["median"],
        "ssim": result["fidelity"]["ssim"]["median"],
        "temporal_flicker": result["fidelity"]["temporal_flicker"]["median"],
        "landmark_nme": result["efficacy"]["landmark_nme"]["median"],
        "pose_error": result["efficacy"]["pose_error"]["median"],
        "parse_flip": result["efficacy"]["parse_flip"]["median"],
        "eval_seconds_visibility": result["timing"]["stages"]["visibility"],
    }
    if "transfer" in result:
        row["transfer"] = {name: summary["median"]
                           for name, summary in result["transfer"]["efficacy"].items()}
    if args.keep:
        row["published"] = str(published)
    else:
        published.unlink(missing_ok=True)
    return row


def plot(result: dict, path: Path) -> None:
    """An SVG of mesh NME (left) and pose error (right) against native video JOD, a line per
    clip, the JOD rule and the codec floor marked."""
    colours = ["#2563eb", "#dc2626", "#16a34a", "#9333ea"]
    width, height, margin = 900, 380, 56
    panel = (width - 3 * margin) / 2
    rows = {clip: [r for r in entry["rows"] if r["graph"] != "null"]
            for clip, entry in result["clips"].items()}
    floors = {clip: next((r["jod_native"] for r in entry["rows"] if r["graph"] == "null"), None)
              for clip, entry in result["clips"].items()}
    jods = [r["jod_native"] for items in rows.values() for r in items] + [
        value for value in floors.values() if value is not None] + [9.5]
    low, high = min(jods) - 0.1, 10.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="DejaVu Sans, sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>']
    for position, (metric, title, target) in enumerate(
            (("landmark_nme", "mesh NME after CRF 23 (eye distances)", 0.10),
             ("pose_error", "head-pose error after CRF 23 (degrees)", 10.0))):
        left = margin + position * (panel + margin)
        top, bottom = 30, height - 50
        values = [r[metric] for items in rows.values() for r in items if r[metric] is not None]
        top_value = max(values + [target]) * 1.1

        def x(jod: float) -> float:
            return left + (jod - low) / (high - low) * panel

        def y(value: float) -> float:
            return bottom - value / top_value * (bottom - top)

        parts.append(f'<text x="{left}" y="18" font-weight="bold">{title}</text>')
        parts.append(f'<line x1="{left}" y1="{bottom}" x2="{left + panel}" y2="{bottom}" '
                     'stroke="#333"/>')
        parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#333"/>')
        steps = [round(low + k * (high - low) / 5, 2) for k in range(6)]
        for tick in steps:
            parts.append(f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle">'
                         f'{tick:.2f}</text>')
        for k in range(5):
            value = top_value * k / 4
            parts.append(f'<text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
                         f'{value:.3g}</text>')
        parts.append(f'<text x="{left + panel / 2}" y="{height - 14}" text-anchor="middle">'
                     'video JOD at native size (10 = no visible difference)</text>')
        parts.append(f'<line x1="{x(9.5):.1f}" y1="{top}" x2="{x(9.5):.1f}" y2="{bottom}" '
                     'stroke="#16a34a" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{x(9.5) + 3:.1f}" y="{top + 10}" fill="#16a34a">9.5</text>')
        parts.append(f'<line x1="{left}" y1="{y(target):.1f}" x2="{left + panel}" '
                     f'y2="{y(target):.1f}" stroke="#dc2626" stroke-dasharray="4 3"/>')
        for number, (clip, items) in enumerate(rows.items()):
            colour = colours[number % len(colours)]
            points = sorted((r["jod_native"], r[metric], r["label"]) for r in items
                            if r[metric] is not None)
            if len(points) > 1:
                path_text = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b, _ in points)
                parts.append(f'<polyline points="{path_text}" fill="none" stroke="{colour}" '
                             'stroke-opacity="0.4"/>')
            for a, b, label in points:
                parts.append(f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="4" fill="{colour}">'
                             f'<title>{label}: JOD {a:.2f}, {b:.3g}</title></circle>')
            if floors.get(clip) is not None:
                parts.append(f'<line x1="{x(floors[clip]):.1f}" y1="{top}" '
                             f'x2="{x(floors[clip]):.1f}" y2="{bottom}" stroke="{colour}" '
                             'stroke-dasharray="1 3"/>')
            if position == 0:
                parts.append(f'<text x="{left + 8}" y="{bottom - 10 - 14 * number}" '
                             f'fill="{colour}">{Path(clip).stem} (dotted: its codec floor)'
                             '</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="+", default=list(CLIPS))
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS),
                        help="LABEL=GRAPH, e.g. eps4=vdf=eps=4/255 (floor=null is added)")
    parser.add_argument("--crf", type=float, default=23.0)
    parser.add_argument("--wl-frames", type=int, default=96,
                        help="frames of WolfgangLanger measured (0: all)")
    parser.add_argument("--frames", type=int, default=0,
                        help="measure only the first N frames of every clip (0: all, but "
                             "WolfgangLanger's --wl-frames)")
    parser.add_argument("--stride", type=int, default=2, help="eval's face-reading stride")
    parser.add_argument("--full-screen-frames", type=int, default=0)
    parser.add_argument("--transfer", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the published files")
    parser.add_argument("--folder", default=None, help="where published files go")
    parser.add_argument("--json", default=None)
    parser.add_argument("--svg", default=None)
    parser.add_argument("--plot-only", nargs="+", default=None, metavar="JSON",
                        help="merge these results and only draw the SVG")
    args = parser.parse_args(argv)
    if args.plot_only:
        merged = {"clips": {}}
        for name in args.plot_only:
            data = json.loads(Path(name).read_text())
            for clip, entry in data["clips"].items():
                merged["clips"].setdefault(clip, {"rows": []})["rows"].extend(entry["rows"])
        plot(merged, Path(args.svg))
        print(f"wrote {args.svg}")
        return 0

    import torch

    from vdf_stream import assets
    from vdf_stream.environment import machine_tag

    torch.set_num_threads(args.threads)
    folder = Path(args.folder or tempfile.mkdtemp(prefix="vdf-visibility-"))
    folder.mkdir(parents=True, exist_ok=True)
    configs = [item.split("=", 1) for item in args.configs]
    if not any(graph == "null" for _, graph in configs):
        configs.insert(0, ["floor", "null"])
    result = {"benchmark": "visibility", "machine": machine_tag(), "crf": args.crf,
              "stride": args.stride, "full_screen_frames": args.full_screen_frames,
              "threads": args.threads, "clips": {}}
    json_path = Path(args.json or f"benchmarks/results/visibility_{machine_tag()}.json")
    for clip in args.clips:
        frames = args.frames or (args.wl_frames if "Wolfgang" in clip else None)
        source = cut(assets.fetch(clip), frames, folder)
        rows = []
        for label, graph in configs:
            row = run_one(source, graph, args.crf, folder, label, args)
            rows.append(row)
            print(f"{Path(clip).stem:>24} {label:<28} JOD {row['jod_native']:.3f} "
                  f"(full {row['jod_full_screen'] or float('nan'):.3f}) NME "
                  f"{row['landmark_nme']:.4f} pose {row['pose_error']:.2f} PSNR "
                  f"{row['psnr']:.2f} fps {row['protect_fps']:.2f}"
                  + (f" transfer {row['transfer']}" if "transfer" in row else ""), flush=True)
            result["clips"][clip] = {"source": source.name, "rows": rows}
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(result, indent=2))
    print(f"wrote {json_path}")
    if args.svg:
        plot(result, Path(args.svg))
        print(f"wrote {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
