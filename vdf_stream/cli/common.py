"""The argparse pieces several commands share: the parser class, -q/--debug, the protection
and encoding options of ``protect`` and ``batch``, and the size and rate types that
``protect`` and ``live`` read."""

from __future__ import annotations

import argparse
from fractions import Fraction

from ..errors import UsageError
from ..protection.options import RECIPES

EXAMPLES = """\
examples:
  vdf-stream protect talk.mp4                      writes talk_protected.mp4 (audio kept)
  vdf-stream protect talk.mp4 -o out.mp4 --crf 20 --preset slow
  vdf-stream protect talk.mp4 -o small.mp4 --vf "scale=w=1280:h=-2,vdf"
                                                   downscale, then protect what is published
                                                   (--vf replaces the default: keep vdf in)
  ffmpeg -i in.mp4 -f yuv4mpegpipe - | vdf-stream protect - -o - | ffmpeg -i - out.mp4
  vdf-stream filters                               what filters exist and their options
  vdf-stream eval talk.mp4 talk_protected.mp4      fidelity and efficacy of a protection
  vdf-stream batch videos/ -o protected/           a whole folder, in parallel (Ray)
  vdf-stream live --virtual-cam                    webcam -> protected virtual camera
"""


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as one line and exit code 2."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = text.lower().split("x")
        return int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 1280x720") from None


def parse_rate(text: str) -> Fraction:
    try:
        value = Fraction(text.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame rate like 30 or 30000/1001")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"frame rate {text} must be positive")
    return value


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """-q and --debug, which every command takes."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar and no summary on stderr")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")


def add_strength_options(parser) -> None:
    """--strength, --seed, --against and --device: how strong the protection is and where it runs
    (``protect``, ``batch`` and ``live``). Left unset they are ``None``: the graph's own
    options, else the defaults, apply."""
    parser.add_argument("--strength", choices=("low", "medium", "high"), default=None,
                        help="how strong the protection is, by how visible: low (invisible, "
                             "next to no effect), medium (the default: looks the same after "
                             "H.264 CRF 23, video JOD 9.6), high (some viewers see it, JOD "
                             "9.1); see docs/visibility.md")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the protection's random starts (default 0): the same "
                             "seed gives the same output")
    parser.add_argument("--against", default=None, metavar="PIPELINE", choices=tuple(RECIPES),
                        help="also attack what this talking-face pipeline reads faces with: "
                             "ernerf, radnerf, synctalk, talkinggaussian or geneface (each: "
                             "FAN and BiSeNet besides the face mesh), those whose weights you "
                             "have; one line names any that are missing and how to get them "
                             "(`vdf-stream models list`)")
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="where frames are processed: auto (a CUDA GPU when present), "
                             "cpu, cuda, cuda:1 (default: auto)")


def add_protection_options(parser: argparse.ArgumentParser, raw_input: bool = False) -> None:
    """The protection and encoding options, shared by ``protect`` and ``batch`` so that both
    take the same ones. ``raw_input``: ``--pix-fmt`` may also describe raw frames on stdin
    (``protect``), and ``--output-pix-fmt`` exists."""
    parser.add_argument("--vf", default="vdf", metavar="GRAPH",
                        help='the filters, in order, ffmpeg-like: "name=opt=value:opt=value,'
                             'name2" (default: vdf, the protection). It replaces the default, '
                             'so keep vdf in it: "scale=w=1280:h=-2,vdf" downscales, then '
                             "protects. `vdf-stream filters` lists them all")
    add_strength_options(parser)
    encode = parser.add_argument_group("encoding (file output)")
    encode.add_argument("--codec", default="libx264",
                        help="video encoder: libx264 (default), libx265, h264_nvenc, "
                             "hevc_nvenc (NVIDIA; libx264 is used when unavailable), ffv1...")
    encode.add_argument("--crf", type=float, default=18.0,
                        help="quality, lower is better (x264/x265 CRF, NVENC CQ; default 18)")
    encode.add_argument("--preset", default="medium",
                        help="speed/size trade-off: ultrafast ... medium ... veryslow "
                             "(default medium)")
    if raw_input:
        encode.add_argument("--pix-fmt", dest="pix_fmt", metavar="FMT",
                            help="pixel format of the output (default: the input's, e.g. "
                                 "yuv420p10le for 10-bit video, where the encoder can store it; "
                                 "else the nearest it can, said in one line); with --size it "
                                 "describes raw frames on stdin instead (rgb24, bgr24, yuv420p)")
        encode.add_argument("--output-pix-fmt", dest="output_pix_fmt", metavar="FMT",
                            help="pixel format of the output when --pix-fmt describes raw "
                                 "input")
    else:
        encode.add_argument("--pix-fmt", dest="pix_fmt", metavar="FMT",
                            help="pixel format of the output (default: the input's, where the "
                                 "encoder can store it; else the nearest it can)")
    encode.add_argument("--no-audio", action="store_true",
                        help="drop audio and subtitle streams instead of copying them")


def add_batch_size_option(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``engine`` group with --batch-size (``protect`` and ``batch``); returned so a
    command can add its own tuning options to it."""
    tuning = parser.add_argument_group("engine")
    tuning.add_argument("--batch-size", type=int, default=1, metavar="N",
                        help="frames filtered together when available (default 1)")
    return tuning
