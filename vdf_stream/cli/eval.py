"""``vdf-stream eval``: its arguments, handed to :mod:`vdf_stream.evaluation`, with progress
bars, the summary table and the JSON and HTML it writes."""

from __future__ import annotations

import argparse
import sys

from ..errors import EXIT_CODES_HELP, EXIT_OK
from .common import add_common_options

EVAL_EXAMPLES = """\
examples:
  vdf-stream eval talk.mp4 talk_protected.mp4            summary table; JSON next to the protected file
  vdf-stream eval talk.mp4 talk_protected.mp4 --frames 60 --stride 5 --robustness
  vdf-stream eval talk.mp4 talk_protected.mp4 --report eval-report/   HTML page and JSON in a folder

what is compared:
  efficacy             face pipeline on PROTECTED against the face pipeline on ORIGINAL
  robustness efficacy  on D(PROTECTED) against D(ORIGINAL), for each degradation D
  robustness floor     on D(ORIGINAL) against ORIGINAL: what D does without protection
"""


def add_parser(commands) -> None:
    evaluate = commands.add_parser(
        "eval",
        help="measure how visible a protection is and how well it works",
        description="Pair the frames of ORIGINAL and PROTECTED by index and measure:\n"
                    "- visibility first: ColorVideoVDP's JOD (10 = no visible difference; one\n"
                    "  JOD lower = 75% of viewers pick the original), on the whole video at its\n"
                    "  own size and on a run of frames at full screen, beside the codec floor\n"
                    "  (ORIGINAL re-encoded with PROTECTED's encoder settings);\n"
                    "- fidelity (secondary): PSNR, SSIM, max |delta|, temporal flicker;\n"
                    "- efficacy against the face pipeline: landmark NME, head-pose error,\n"
                    "  parse flip, detection loss, face presence.\n"
                    "Frame counts and sizes must agree; timestamps are compared.",
        epilog=EVAL_EXAMPLES + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("original", metavar="ORIGINAL", help="the unprotected video file")
    evaluate.add_argument("protected", metavar="PROTECTED",
                          help="the protected video file (as published: already encoded)")
    evaluate.add_argument("--frames", type=int, metavar="N",
                          help="evaluate at most N frames (default: all)")
    evaluate.add_argument("--stride", type=int, default=1, metavar="S",
                          help="evaluate every S-th frame: 0, S, 2S... (default 1)")
    evaluate.add_argument("--robustness", action="store_true",
                          help="also measure efficacy after H.264 CRF 18/23/28/35, scaling by "
                               "0.5 and 0.75 and back, JPEG 90/75/50, Gaussian blur 0.5/1.0, "
                               "median 3x3 and a bilateral denoiser, each beside its floor")
    evaluate.add_argument("--report", metavar="DIR",
                          help="write an HTML report (index.html) and eval.json into DIR")
    evaluate.add_argument("--json", dest="json_path", metavar="PATH",
                          help="where to write the JSON result, - for stdout instead of "
                               "the table (default: PROTECTED with the extension .eval.json; "
                               "with --report it is also written to DIR/eval.json)")
    evaluate.add_argument("--device", default="auto", metavar="DEVICE",
                          help="where the face pipeline runs: auto (a CUDA GPU when present), "
                               "cpu, cuda (default: auto)")
    evaluate.add_argument("--parser", default="auto", choices=("auto", "bisenet", "selfie+mesh"),
                          help="face parser of parse flip: BiSeNet when its checkpoint was "
                               "added, else selfie segmentation inside the mesh's face oval "
                               "(default: auto)")
    evaluate.add_argument("--allow-length-mismatch", action="store_true",
                          help="evaluate the common frames of videos of different lengths "
                               "instead of stopping with an error")
    evaluate.add_argument("--transfer", action="store_true",
                          help="also read both videos with other face readers, each with "
                               "its own detection, beside the floor of H.264 CRF 23 alone: "
                               "MTCNN (5-point NME, faces lost), face-api (68-point NME, "
                               "its detector), and FAN in S3FD's crop as ER-NeRF reads it "
                               "(68-point NME, faces lost) when you have their weights "
                               "(`vdf-stream models list`)")
    evaluate.add_argument("--no-visibility", dest="visibility", action="store_false",
                          help="skip ColorVideoVDP (the slowest part of eval: about 0.6 s "
                               "per frame at 640x360 on 2 CPU cores, protected and floor)")
    evaluate.add_argument("--visibility-stride", type=int, default=1, metavar="S",
                          help="for long videos: measure visibility on one run of a quarter "
                               "second of consecutive frames (so flicker is still seen) every "
                               "S such runs (default 1: every frame)")
    evaluate.add_argument("--full-screen-frames", type=int, default=12, metavar="N",
                          help="consecutive frames from the middle of the video measured "
                               "upscaled to full screen, 1080 lines (about 10 s per frame on "
                               "2 CPU cores; 0: skip; default 12)")
    evaluate.add_argument("--floor-crf", type=float, metavar="CRF",
                          help="CRF of the codec floor, the original re-encoded with libx264 "
                               "(default: read from PROTECTED's encoder settings, else 23)")
    add_common_options(evaluate)


def run_eval(args) -> int:
    from pathlib import Path

    from ..evaluation.evaluate import EvalOptions, default_json_path, evaluate, write_json
    from ..evaluation.table import format_table

    options = EvalOptions(frames=args.frames, stride=args.stride, robustness=args.robustness,
                          device=args.device, parser=args.parser,
                          allow_length_mismatch=args.allow_length_mismatch,
                          transfer=args.transfer, visibility=args.visibility,
                          visibility_stride=args.visibility_stride,
                          full_screen_frames=args.full_screen_frames, floor_crf=args.floor_crf)
    options.validate()
    write_report = None
    if args.report:
        from ..evaluation.report import write_report
    show = not args.quiet
    bar = None
    bars = []
    progress = set_total = visibility_progress = None
    if show and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=None, unit="frame", file=sys.stderr, desc="eval", dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}]")
        progress = bar.update

        bars.append(bar)

        def set_total(total: int) -> None:
            bar.total = total
            bar.refresh()

        def visibility_progress(amount: float) -> None:
            if len(bars) == 1:  # the face readings are done: a bar of its own
                bars[0].close()
                bars.append(tqdm(total=None, unit="frame", file=sys.stderr,
                                 desc="visibility (protected, then codec floor)",
                                 dynamic_ncols=True))
            bars[-1].update(amount)
    try:
        result, views = evaluate(args.original, args.protected, options, progress=progress,
                                 with_views=write_report is not None, set_total=set_total,
                                 visibility_progress=visibility_progress)
    finally:
        for item in bars:
            item.close()
    json_paths = [args.json_path] if args.json_path else []
    if args.report:
        json_paths.append(str(Path(args.report) / "eval.json"))
    if not json_paths:
        json_paths.append(default_json_path(args.protected))
    for json_path in json_paths:
        if json_path == "-":
            import json

            print(json.dumps(result, indent=2))
        else:
            write_json(result, json_path)
    written = [path for path in json_paths if path != "-"]
    if args.report:
        from ..errors import OutputError

        try:
            page = write_report(result, views, Path(args.report))
        except OSError as error:
            raise OutputError(f"cannot write the report into {args.report}: "
                              f"{error.strerror or error}") from None
    if "-" not in json_paths:
        print(format_table(result))
    if show and (written or args.report):
        print("wrote " + " and ".join(written + ([str(page)] if args.report else [])),
              file=sys.stderr)
    return EXIT_OK
