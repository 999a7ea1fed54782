"""The evaluation report: one self-contained HTML page, checked as text and in a real
headless browser (Debian's Chromium)."""

from __future__ import annotations

import base64
import io
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vdf_stream.errors import OutputError
from vdf_stream.evaluation import criteria, metrics
from vdf_stream.evaluation.pictures import PICTURE_SIDE
from vdf_stream.evaluation.presentation import METRICS, format_threshold, report_name
from vdf_stream.evaluation.report import write_report
from vdf_stream.evaluation.table import format_table
from vdf_stream.evaluation.verdicts import efficacy_verdict

NAN = float("nan")
# original / protected pair, the face close-up pair, difference, two readings
PICTURES_PER_VIEW = 7


@dataclass
class FakeView:
    index: int
    original: np.ndarray
    protected: np.ndarray
    original_reading: dict
    protected_reading: dict
    metrics: dict = field(default_factory=dict)


def portrait(height: int, width: int, seed: int) -> np.ndarray:
    """A synthetic 'portrait': gradient background, skin-coloured ellipse, dark eyes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.empty((height, width, 3), np.float32)
    frame[..., 0] = 40 + 80 * x / width
    frame[..., 1] = 60 + 60 * y / height
    frame[..., 2] = 120
    centre_x, centre_y = width * 0.5, height * 0.45
    face = ((x - centre_x) / (width * 0.17)) ** 2 + ((y - centre_y) / (height * 0.3)) ** 2 < 1
    frame[face] = (214, 170, 140)
    for side in (-1, 1):
        eye = ((x - centre_x - side * width * 0.06) ** 2
               + (y - centre_y + height * 0.06) ** 2) < (height * 0.025) ** 2
        frame[eye] = (40, 30, 30)
    frame += rng.normal(0, 3, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def reading(height: int, width: int, shift: float = 0.0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0, 2 * np.pi, 468)
    radii = np.sqrt(rng.uniform(0, 1, 468))
    landmarks = np.stack([width * (0.5 + shift) + radii * np.cos(angles) * width * 0.15,
                          height * 0.45 + radii * np.sin(angles) * height * 0.27], axis=1)
    y, x = np.mgrid[0:height, 0:width]
    mask = (((x - width * 0.5) / (width * 0.18)) ** 2
            + ((y - height * 0.45) / (height * 0.32)) ** 2 < 1).astype(np.float32)
    box = np.array([width * 0.32, height * 0.13, width * 0.68, height * 0.77])
    return {"landmarks": landmarks, "box": box, "mask": mask}


def fake_views() -> list[FakeView]:
    views = []
    rng = np.random.default_rng(7)
    for number, (index, height, width) in enumerate(((0, 360, 640), (24, 720, 1280),
                                                     (48, 640, 360))):
        original = portrait(height, width, number)
        noise = rng.integers(-4, 5, original.shape)
        protected = np.clip(original.astype(int) + noise, 0, 255).astype(np.uint8)
        protected_reading = reading(height, width, shift=0.04, seed=number + 10)
        if number == 2:  # the face is lost on the protected frame
            protected_reading = {"landmarks": None, "box": None, "mask": None}
        views.append(FakeView(index, original, protected, reading(height, width, seed=number),
                              protected_reading,
                              {"psnr": 42.3 - number, "ssim": 0.991, "landmark_nme": 0.14,
                               "pose_error_degrees": NAN if number == 1 else 6.2,
                               "parse_flip": 0.41, "detection_loss": float(number == 2),
                               "blink_rate": 0.5}))
    return views


def summary(median, mean, shares=None) -> dict:
    return {"median": median, "mean": mean, "share_above": shares or {}}


def fake_result(frames: int = 60) -> dict:
    rng = np.random.default_rng(3)
    indices = list(range(0, frames * 2, 2))
    psnr = list(41 + rng.normal(0, 1.0, frames))
    psnr[5] = None
    nme = list(np.abs(0.12 + rng.normal(0, 0.03, frames)))
    nme[10] = NAN
    return {
        "config": {"eps": 8, "crf": 23, "robustness": True, "scales": [0.5, 1, 2],
                   "nested": {"device": "cpu", "missing": None, "bad": NAN}},
        "versions": {"vdf-stream": "0.1.0", "torch": "2.4.0", "av": "14.0.0"},
        "machine": {"cpu": "fake CPU", "gpu": None, "os": "Linux"},
        "inputs": {"original": {"path": "/videos/talk.mp4", "width": 640, "height": 360,
                                "frames": 120, "fps": 29.97},
                   "protected": {"path": "/videos/talk_protected.mp4", "width": 640,
                                 "height": 360, "frames": 120, "fps": None}},
        "fidelity": {"psnr": summary(41.2, 41.0, {"35": 1.0, "40": 0.83}),
                     "ssim": summary(0.987, 0.985, {"0.95": 1.0}),
                     "max_abs_difference": summary(8.0, 7.8),
                     "temporal_flicker": summary(NAN, None)},
        "efficacy": {"landmark_nme": summary(0.121, 0.125, {"0.05": 0.98, "0.1": 0.71}),
                     "pose_error_degrees": summary(6.4, NAN, {"5": 0.62}),
                     "parse_flip": summary(0.35, 0.33, {"0.3": 0.6}),
                     "detection_loss": summary(0.0, 0.05),
                     "presence": summary(None, None),
                     "blink_rate": summary(0.4, 0.41)},
        "per_frame": {"psnr": psnr,
                      "ssim": list(0.985 + rng.normal(0, 0.002, frames)),
                      "temporal_flicker": list(rng.uniform(0, 2, frames - 1)),
                      "landmark_nme": nme,
                      "pose_error_degrees": list(np.abs(6 + rng.normal(0, 2, frames))),
                      "parse_flip": list(rng.uniform(0.2, 0.5, frames)),
                      "detection_loss": [float(i % 20 == 0) for i in range(frames)],
                      "presence": [None] * frames,  # no value at all: no plot
                      "blink_rate": list(rng.uniform(0, 1, frames))},
        "frames": indices,
        "parser": "BiSeNet 79999_iter.pth (face-parsing.PyTorch)",
        "robustness": [
            {"degradation": "h264", "params": {"crf": 23},
             "efficacy": {"landmark_nme": summary(0.11, 0.1), "pose_error_degrees":
                          summary(5.5, 5.6), "parse_flip": summary(0.31, 0.3),
                          "presence": summary(-0.2, -0.25)},  # a drop: negative bars
             "floor": {"landmark_nme": summary(0.01, 0.01),
                       "pose_error_degrees": summary(0.6, 0.7),
                       "parse_flip": summary(0.02, 0.02), "presence": summary(-0.01, 0)}},
            {"degradation": "scale", "params": {"factor": 0.5},
             "efficacy": {"landmark_nme": summary(0.05, 0.05),
                          "pose_error_degrees": summary(NAN, NAN)},
             "floor": {"landmark_nme": summary(0.03, 0.03),
                       "pose_error_degrees": summary(1.1, 1.2)}},
            {"degradation": "jpeg", "params": {"quality": 75},
             "efficacy": {"landmark_nme": summary(0.09, 0.09),
                          "pose_error_degrees": summary(4.1, 4.0),
                          "blink_rate": summary(0.3, 0.3)},
             "floor": {"landmark_nme": summary(0.02, 0.02), "pose_error_degrees": None}},
        ],
        "timing": {"seconds": 12.5, "seconds_per_frame": 0.208},
        "notes": ["Robustness measured on 60 frames only."],
    }


# Per-frame plots with at least one value (presence has none) + robustness bars for
# NME, pose error, parse flip, presence and the unknown blink_rate.
EXPECTED_PLOTS = 8 + 5


def data_uris(page: str) -> list[str]:
    return re.findall(r'<img[^>]*\ssrc="(data:image/(?:png|jpeg);base64,[^"]+)"', page)


def pair_uris(page: str) -> list[str]:
    """The pictures of the original / protected pairs (lossless, switched in place)."""
    return re.findall(r'<img class="ab-(?:original|protected)" src="(data:image/png;base64,'
                      r'[^"]+)"', page)


def decode_uri(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    return write_report(fake_result(), fake_views(), tmp_path_factory.mktemp("report"))


def test_writes_one_self_contained_page(report):
    assert report.name == "index.html" and report.is_file()
    assert [path.name for path in report.parent.iterdir()] == ["index.html"]
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # Nothing fetched from anywhere: no remote (or protocol-relative) src/href/url(), one
    # inline script (switching the pairs) and no script file, no external style sheet.
    assert not re.search(r'(?:src|href)\s*=\s*["\']?\s*(?:https?:)?//', page, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", page, re.I)
    assert re.findall(r"<script\b([^>]*)>", page, re.I) == [""]
    assert "<link" not in page.lower()
    assert page.count("<img") == len(data_uris(page)) == PICTURES_PER_VIEW * 3
    assert page.count("<svg") == page.count('<svg class="plot') == EXPECTED_PLOTS
    # the pairs are lossless PNG: these noisy synthetic frames are the worst case
    assert len(page) < 6_000_000


def test_pictures_are_downscaled_jpeg(report):
    page = report.read_text(encoding="utf-8")
    pairs = set(pair_uris(page))
    others = [uri for uri in data_uris(page) if uri not in pairs]
    assert len(pairs) == 4 * 3 and len(others) == 3 * 3
    for uri in others:
        image = decode_uri(uri)
        assert image.format == "JPEG"
        assert max(image.size) <= PICTURE_SIDE
    assert {decode_uri(uri).size for uri in others} == {(640, 360), (360, 640)}
    # the pairs are PNG: frames at most PICTURE_SIDE at 1x (1280x720 came down to 640x360,
    # the scale said), face close-ups at most 320 frame pixels shown at 2x
    assert {decode_uri(uri).format for uri in pairs} == {"PNG"}
    assert {(640, 360), (360, 640)} <= {decode_uri(uri).size for uri in pairs}
    assert all(max(decode_uri(uri).size) <= PICTURE_SIDE for uri in pairs)
    assert "At 1\u00d7: 640\u00d7360" in page and "At 1\u00d7: 360\u00d7640" in page
    assert "At 50 %: the 1280\u00d7720 frame shrunk to 640\u00d7360" in page


def test_missing_values_and_unknown_metrics(report):
    page = report.read_text(encoding="utf-8")
    assert "\u2014" in page  # NaN / None shown as a dash
    assert "nan" not in re.sub(r"<img[^>]*>", "", page).lower().replace("nanos", "")
    assert "blink_rate" in page  # unknown metric, shown by its raw name
    for words in ("PSNR", "SSIM", "Landmark shift", "Head-pose error", "Parse flip",
                  "Detection loss", "Is my video protected?", "Does it still look the same?",
                  "BiSeNet 79999_iter.pth", "Robustness measured on 60 frames only.",
                  "h264 (crf=23)", "<details", ">29.97<"):
        assert words in page, words


def test_verdicts(report):
    page = report.read_text(encoding="utf-8")
    # PSNR 41.2 dB and SSIM 0.987: invisible.
    assert 'class="verdict good"><div class="question">Does it still look the same?' in page
    # NME, pose and parse flip over their thresholds, detection loss (mean 5 %) under its
    # own: partly, in amber, never a green "Yes" beside a failed criterion.
    assert ('class="verdict fair"><div class="question">Is my video protected?</div>'
            '<div class="answer">Partly \u2014 3 of 4 face readings broken</div>') in page
    # h264 holds, scale and jpeg do not: partly.
    assert 'class="verdict fair"><div class="question">Does the protection survive' in page


def test_style_sheet_and_script_come_from_the_package(report):
    """report.css and report.js, package data beside the module, are inlined whole; no NUL
    (a Python string once turned the CSS escape of the middle dot into one)."""
    from importlib import resources

    page = report.read_text(encoding="utf-8")
    folder = resources.files("vdf_stream.evaluation")
    for name in ("report.css", "report.js"):
        assert folder.joinpath(name).read_text(encoding="utf-8") in page, name
    assert "\x00" not in page and '" \\00b7  pinned"' in page


def test_empty_result_renders(tmp_path):
    path = write_report({}, [], tmp_path / "made" / "here")
    page = path.read_text(encoding="utf-8")
    assert "Unknown" in page and "not measured" in page
    assert "<img" not in page and "<svg" not in page


def test_hostile_values_never_crash(tmp_path):
    result = {"fidelity": {"psnr": {"median": float("inf"), "mean": "x", "share_above": None},
                           "ssim": None, "odd": 3},
              "efficacy": [], "per_frame": {"psnr": [float("inf")] * 3, "ssim": "bad",
                                            "landmark_nme": [0.1, 0.1, 0.1]},
              "frames": [0, "one", 2], "robustness": [None, {"degradation": None}],
              "inputs": {"original": None}, "timing": {"seconds": NAN}, "notes": "not a list",
              "config": {"text": "<b>escaped</b>"}, "parser": None}
    view = FakeView(3, portrait(50, 80, 1), portrait(50, 80, 1), {"landmarks": [[1, 2]],
                    "box": [1, 2, 3], "mask": np.full((10, 10), NAN)}, {}, {"psnr": None})
    page = write_report(result, [view], tmp_path).read_text(encoding="utf-8")
    assert "&lt;b&gt;escaped&lt;/b&gt;" in page and "<b>escaped</b>" not in page
    assert "\u221e" in page
    assert page.count("<img") == PICTURES_PER_VIEW - 2  # no face to show close up


def test_bad_frame_is_named(tmp_path):
    view = FakeView(5, np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.uint8), {}, {})
    with pytest.raises(ValueError, match=r"view 5: original.*\(H, W, 3\) uint8.*\(4, 4\)"):
        write_report({}, [view], tmp_path)


def test_unwritable_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write the report"):
        write_report({}, [], blocker / "report")


def evaluator_shaped(result: dict) -> dict:
    """``result`` as vdf_stream.evaluation.evaluate writes it: shares as flat ``share_above_T`` /
    ``share_below_T`` keys, ``pose_error`` for the pose, degradation labels, metric
    descriptions, a parser note."""
    def flat(summary, direction="above"):
        if not isinstance(summary, dict):
            return summary
        flat = {key: value for key, value in summary.items() if key != "share_above"}
        for threshold, share in summary.get("share_above", {}).items():
            flat[f"share_{direction}_{threshold}"] = share
        return flat

    def section(metrics, below=()):
        renamed = {("pose_error" if name == "pose_error_degrees" else name):
                   flat(summary, "below" if name in below else "above")
                   for name, summary in metrics.items()}
        return renamed

    shaped = dict(result)
    shaped["fidelity"] = section(result["fidelity"], below=("psnr", "ssim"))
    shaped["efficacy"] = section(result["efficacy"])
    shaped["per_frame"] = section(result["per_frame"])
    shaped["robustness"] = [{**entry, "label": f"{entry['degradation']} at some setting",
                             "efficacy": section(entry["efficacy"]),
                             "floor": section(entry["floor"])}
                            for entry in result["robustness"]]
    shaped["metrics"] = {"blink_rate": {"unit": "blinks/s", "description": "how often "
                                        "the eyes close"}}
    shaped["parser_note"] = "the stand-in parser"
    shaped["timing"] = {**result["timing"], "stages": {"decode": 1.5, "read": 9.0}}
    return shaped


def test_evaluator_shaped_result(tmp_path):
    views = fake_views()[:1]
    views[0].why = "median NME"
    page = write_report(evaluator_shaped(fake_result()), views, tmp_path)
    page = page.read_text(encoding="utf-8")
    # pose_error is the head-pose error: its key figure, plot, bars and criterion.
    assert "6.4\u00b0" in page and "\u2713 Head-pose error: median 6.4\u00b0" in page
    assert page.count("<svg") == EXPECTED_PLOTS
    assert "83.0 % of frames below 40 dB" in page  # flat share_below_ keys
    assert "71.0 % of frames above 0.1" in page
    assert "h264 at some setting" in page and "how often the eyes close" in page
    assert "the stand-in parser" in page and "stages.decode" in page
    assert "Frame 0 (median NME)" in page


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(page: Path, out: Path, width: int, height: int) -> np.ndarray:
    chromium = find_chromium()
    if chromium is None:
        message = "Chromium is not installed (Debian package: chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    shot = out / "shot.png"
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               f"--user-data-dir={out / 'profile'}", f"--screenshot={shot}",
               f"--window-size={width},{height}", page.resolve().as_uri()]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "HOME": str(out)})
    assert shot.is_file(), (f"no screenshot (exit {completed.returncode}):\n"
                            f"{completed.stderr[-2000:]}")
    return np.asarray(Image.open(shot).convert("RGB"))


def test_renders_in_headless_chromium(report, tmp_path):
    pixels = screenshot(report, tmp_path, 1280, 2400)
    assert pixels.shape[:2] == (2400, 1280)
    # Not blank: text, cards and plots make the page far from uniform...
    assert pixels.astype(np.float32).std() > 20
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500
    # ...and the verdict colours were rendered (the style sheet applied): the green left
    # border of a "good" verdict card.
    green = (np.abs(pixels.astype(int) - (0x1a, 0x7f, 0x37)).sum(axis=2) < 30).sum()
    assert green > 500
    if os.environ.get("VDF_KEEP_SCREENSHOT"):
        Image.fromarray(pixels).save(os.environ["VDF_KEEP_SCREENSHOT"])


# -- one set of thresholds (vdf_stream.evaluation.criteria) for the report and the table --


def efficacy_at(factors: dict[str, float]) -> dict:
    """Efficacy summaries as the evaluator writes them: each criterion's value is its
    threshold times its factor (0 when not given)."""
    summaries = {}
    for criterion in criteria.CRITERIA:
        value = criterion.threshold * factors.get(criterion.name, 0.0)
        summaries[criterion.name] = {"median": value, "mean": value, "min": value,
                                     "max": value, "count": 10}
    return summaries


def evaluated(efficacy: dict, robustness: list | None = None) -> dict:
    """A result as vdf_stream.evaluation.evaluate writes it, enough for the page and the table."""
    return {"inputs": {"original": {"path": "talk.mp4", "width": 640, "height": 360,
                                    "frames": 10, "fps": 25.0},
                       "protected": {"path": "talk_protected.mp4"}},
            "frames": list(range(10)), "timing": {"seconds": 1.0, "seconds_per_frame": 0.1},
            "config": {"device": "cpu"}, "parser": "selfie+mesh", "parser_note": "stand-in",
            "metrics": {name: {"unit": info.unit, "description": info.description}
                        for name, info in metrics.METRICS.items()},
            "fidelity": {}, "efficacy": efficacy, "robustness": robustness or [], "notes": []}


def efficacy_verdict_html(page: str) -> str:
    start = page.index('<div class="question">Is my video protected?')
    return page[page.rindex("<div", 0, start):page.index("</ul>", start)]


PAIRS = [(first, second) for index, first in enumerate(criteria.CRITERIA)
         for second in criteria.CRITERIA[index + 1:]]


@pytest.mark.parametrize("failed", PAIRS, ids=lambda pair: "+".join(c.name for c in pair))
def test_two_failed_criteria_are_never_yes(failed, tmp_path):
    """Two criteria of four failed: the answer is "Partly", amber, in the page and the table."""
    factors = {criterion.name: 1.5 for criterion in criteria.CRITERIA if criterion not in failed}
    result = evaluated(efficacy_at(factors))
    verdict = efficacy_verdict_html(write_report(result, [], tmp_path).read_text("utf-8"))
    assert verdict.startswith('<div class="verdict fair">'), verdict
    assert "Partly \u2014 2 of 4 face readings broken" in verdict and "Yes" not in verdict
    assert verdict.count("\u2713") == 2 and verdict.count("\u2717") == 2
    table = format_table(result)
    assert "protected? Partly: 2 of 4 face readings broken" in table
    for criterion in failed:
        assert f"intact  {criterion.reading}: {criterion.name}" in table


@pytest.mark.parametrize("broken", range(16))
def test_answer_never_contradicts_its_lines(broken):
    """Every combination of broken criteria: "Yes" only when every line is ticked, "No" only
    when none is, "Partly" with the count otherwise."""
    names = [criterion.name for position, criterion in enumerate(criteria.CRITERIA)
             if broken >> position & 1]
    efficacy = {report_name(name): summary
                for name, summary in efficacy_at(dict.fromkeys(names, 1.5)).items()}
    verdict = efficacy_verdict(efficacy)
    ticked = sum(line.startswith("\u2713") for line in verdict.lines)
    assert ticked == len(names) and len(verdict.lines) == 4
    expected = {4: ("good", "Yes"), 0: ("poor", "No")}.get(ticked, ("fair", "Partly"))
    assert (verdict.level, verdict.answer.split(" ")[0]) == expected
    assert verdict.answer.endswith(f"{ticked} of 4 face readings broken")


def test_report_and_table_judge_by_the_same_thresholds(tmp_path):
    """Each criterion at exactly its threshold in criteria.py counts as broken, a hair below
    it does not, in the page and in the table alike; both print criteria.py's threshold."""
    for criterion in criteria.CRITERIA:
        metric = METRICS[report_name(criterion.name)]
        assert (metric.threshold, metric.statistic) == (criterion.threshold,
                                                        criterion.statistic)
        for factor, count in ((1.0, 1), (0.999, 0)):
            result = evaluated(efficacy_at({criterion.name: factor}))
            page = write_report(result, [], tmp_path / criterion.name).read_text("utf-8")
            verdict = efficacy_verdict_html(page)
            assert f"{count} of 4 face readings broken" in verdict, (criterion, factor)
            assert f"(broken from {format_threshold(criterion.threshold, metric)})" in verdict
            table = format_table(result)
            assert f"protected? {'Partly' if count else 'No'}: {count} of 4" in table
            assert f"{'>=' if count else '<'} {criterion.threshold:g}" in table
    # under a degradation, 1.5 times the threshold is broken only at 2 times the floor or more
    robustness = [{"degradation": "h264", "label": label, "params": {},
                   "efficacy": efficacy_at(dict.fromkeys(criteria.BY_NAME, 1.5)),
                   "floor": efficacy_at(dict.fromkeys(criteria.BY_NAME, floor)),
                   "versus_clean": {}}
                  for label, floor in (("beside a low floor", 1.5 / criteria.FLOOR_FACTOR),
                                       ("beside a high floor", 1.0))]
    result = evaluated(efficacy_at(dict.fromkeys(criteria.BY_NAME, 1.5)), robustness)
    page = write_report(result, [], tmp_path / "robustness").read_text("utf-8")
    assert "<li>beside a low floor: holds</li>" in page
    assert "<li>beside a high floor: fails</li>" in page
    rows = {line.split("   ")[0].strip(): line.split()[-1]
            for line in format_table(result).splitlines() if "beside a" in line}
    assert rows == {"beside a low floor": "holds", "beside a high floor": "fails"}
