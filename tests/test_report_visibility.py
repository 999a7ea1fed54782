"""The report leads with visibility (ColorVideoVDP's JOD beside the codec floor): the verdict
"Does it still look the same?", the JOD key figures, table and per-frame plots, and in each
frame the original / protected pair switched in place at 1x, the face at 2x and where a
viewer would see the change. Checked as text and in headless Chromium."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_report import FakeView, fake_result, fake_views, find_chromium, portrait, reading, \
    screenshot
from vdf_stream.evaluation.report import write_report
from vdf_stream.evaluation.verdicts import fidelity_verdict

NAN = float("nan")
FIDELITY = {"psnr": {"median": 41.2, "mean": 41.0}, "ssim": {"median": 0.987, "mean": 0.985}}


@dataclass
class MappedView(FakeView):
    """A frame view with ColorVideoVDP's map of where the change shows and its frame JOD."""

    visibility_map: np.ndarray | None = None
    jod: float | None = None


def visibility(native: float | None = 9.62, native_floor: float | None = 9.87,
               full: float | None = 9.45, full_floor: float | None = 9.6,
               frames: int = 60) -> dict:
    """``result["visibility"]`` as the evaluator writes it."""
    rng = np.random.default_rng(11)
    part = None
    if full is not None:
        part = {"jod": full, "floor_jod": full_floor, "frames": list(range(30, 42)),
                "per_frame": list(np.round(full + rng.normal(0, 0.05, 12), 4)),
                "floor_per_frame": list(np.round((full_floor or 10) + rng.normal(0, 0.03, 12),
                                                 4)),
                "size": [1920, 1080]}
    return {
        "metric": "ColorVideoVDP (cvvdp 0.5.7)",
        "display": "standard_fhd",
        "display_description": "24-inch FullHD monitor, 200 cd/m2, office light, seen from "
                               "0.6 m",
        "rule": {"native_jod": 9.5, "full_screen_jod": 9.3, "floor_margin": 0.3},
        "native": {"jod": native, "floor_jod": native_floor,
                   "frames": list(range(0, frames * 2, 2)),
                   "per_frame": list(np.round((native or 9.6) + rng.normal(0, 0.08, frames), 4)),
                   "floor_per_frame": list(np.round((native_floor or 9.9)
                                                    + rng.normal(0, 0.03, frames), 4)),
                   "size": [640, 360]},
        "full_screen": part,
        "floor": {"label": "the original re-encoded: libx264 CRF 23", "codec": "libx264",
                  "crf": 23.0, "source": "read from PROTECTED's encoder settings"},
        "verdict": {"looks_the_same": True, "level": "good", "text": "looks the same"},
        "seconds_per_frame": {"native": 0.6, "full_screen": 10.2},
    }


def heat_map(original: np.ndarray, protected: np.ndarray) -> np.ndarray:
    """A stand-in for ColorVideoVDP's map: the original in grey, red where the frames
    differ most."""
    grey = original.mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.5
    difference = np.abs(protected.astype(np.float32) - original).mean(axis=2)
    grey[..., 0] += np.clip(difference * 40, 0, 255) * 0.5
    return np.clip(grey, 0, 255).astype(np.uint8)


def mapped_views() -> list[MappedView]:
    views = []
    for number, view in enumerate(fake_views()):
        views.append(MappedView(view.index, view.original, view.protected,
                                view.original_reading, view.protected_reading, view.metrics,
                                heat_map(view.original, view.protected), 9.71 - number / 10))
    return views


def page_with(tmp_path: Path, vis=None, views=None, **changes) -> str:
    result = fake_result()
    if vis is not None:
        result["visibility"] = vis
    result.update(changes)
    return write_report(result, list(views or []), tmp_path).read_text(encoding="utf-8")


def section(page: str, name: str) -> str:
    part = page[page.index(f'<section id="{name}">'):]
    if name == "frames":  # holds a section per frame
        return part[:part.index('<details id="settings">')]
    return part[:part.index("</section>")]


# --------------------------------------------------------------------------------------
# The verdict


@pytest.mark.parametrize("changes, level", [
    ({}, "good"),                                      # 9.62 / 9.87, full screen 9.45 / 9.6
    ({"full": None}, "good"),                          # full screen not measured
    ({"native": 9.3}, "fair"),
    ({"native": 8.7}, "poor"),
    ({"native": 9.55, "native_floor": 9.95}, "fair"),  # 0.4 below the floor
    ({"full": 9.2}, "fair"),                           # full screen under 9.3
    ({"full": 9.35, "full_floor": 9.8}, "fair"),       # full screen 0.45 below its floor
    ({"native_floor": None, "full_floor": None}, "good"),  # floors unknown: JOD alone
    ({"native": 9.62, "native_floor": 9.4}, "good"),   # above its floor
])
def test_verdict_follows_the_rule(changes, level):
    verdict = fidelity_verdict(FIDELITY, visibility(**changes))
    assert verdict.level == level, verdict
    answer = {"good": "Yes", "fair": "Almost \u2014 some viewers may see it",
              "poor": "No \u2014 the change is visible"}[level]
    assert verdict.answer.startswith(answer)


def test_verdict_lines_show_the_floor():
    verdict = fidelity_verdict(FIDELITY, visibility())
    assert ("\u2713 video JOD 9.62 at native size (codec floor 9.87; \u2265 9.5 and within 0.3 "
            "of the floor looks the same)") in verdict.lines
    assert ("\u2713 video JOD 9.45 at full screen (1920\u00d71080) (codec floor 9.60; \u2265 9.3 "
            "and within 0.3 of the floor looks the same)") in verdict.lines
    assert any(line.startswith("secondary: median PSNR 41.2 dB") for line in verdict.lines)
    assert not any("reads differently" in line for line in verdict.lines)
    # full screen not measured: said so
    verdict = fidelity_verdict(FIDELITY, visibility(full=None))
    assert "full screen: not measured" in verdict.lines


def test_rule_numbers_come_from_the_result():
    strict = visibility()
    strict["rule"] = {"native_jod": 9.7, "full_screen_jod": 9.3, "floor_margin": 0.3}
    verdict = fidelity_verdict(FIDELITY, strict)
    assert verdict.level == "fair"
    assert any("\u2265 9.7 and within 0.3" in line for line in verdict.lines)
    # the measurement's own verdict (good) disagrees: said, but the numbers decide
    assert any("reads differently (good)" in line for line in verdict.lines)
    loose = visibility(native=9.4, native_floor=9.6)
    loose["rule"] = {"native_jod": 9.3, "full_screen_jod": None, "floor_margin": "x"}
    assert fidelity_verdict(FIDELITY, loose).level == "good"  # the usual 9.3 and 0.3 fill in


def test_without_visibility_psnr_and_ssim_decide():
    for vis in (None, {}, {"native": None}, {"native": {"jod": None}}, {"native": {"jod": NAN}}):
        verdict = fidelity_verdict(FIDELITY, vis)
        assert verdict.level == "good"
        assert verdict.lines[0] == ("visibility not measured; PSNR and SSIM do not see "
                                    "low-frequency changes on skin or flicker")
    verdict = fidelity_verdict({"psnr": {"median": 36.0}}, None)
    assert verdict.level == "fair"
    verdict = fidelity_verdict({}, None)
    assert verdict.level == "unknown" and "visibility not measured" in verdict.lines[0]


def test_page_verdict(tmp_path):
    page = page_with(tmp_path / "fair", visibility(native=9.3))
    assert 'class="verdict fair"><div class="question">Does it still look the same?' in page
    assert "Almost \u2014 some viewers may see it" in page
    page = page_with(tmp_path / "none")
    assert 'class="verdict good"><div class="question">Does it still look the same?' in page
    assert "visibility not measured; PSNR and SSIM do not see low-frequency" in page


# --------------------------------------------------------------------------------------
# Key figures, the visibility section and the per-frame plots


def test_key_figures_lead_with_the_video_jod(tmp_path):
    page = page_with(tmp_path, visibility())
    figures = section(page, "figures")
    labels = re.findall(r'<div class="label">(.*?)</div>', figures)
    assert labels[:2] == ["Video JOD at native size", "Video JOD at full screen"]
    assert [label.split(" <span")[0] for label in labels[-2:]] == ["PSNR", "SSIM"]
    assert all('class="tag">secondary' in label for label in labels[-2:])
    assert labels.index("Landmark shift (NME)") < labels.index(labels[-2])
    assert "9.62<span class=\"floor-value\">codec floor 9.87</span>" in figures
    assert "9.45<span class=\"floor-value\">codec floor 9.60</span>" in figures
    assert "\u2713 looks the same" in figures
    # a JOD too far below its floor says so
    figures = section(page_with(tmp_path / "far", visibility(native_floor=10.0)), "figures")
    assert "\u2717 0.38 below the codec floor: may be visible" in figures
    # without visibility: the old order, no JOD card, nothing marked secondary
    figures = section(page_with(tmp_path / "none"), "figures")
    assert "Video JOD" not in figures and "secondary" not in figures
    assert figures.index(">PSNR<") < figures.index(">Landmark shift (NME)<")


def test_visibility_section(tmp_path):
    page = page_with(tmp_path, visibility())
    assert page.index('id="figures"') < page.index('id="visibility"') < page.index('id="all"')
    text = section(page, "visibility")
    for words in ("Does it still look the same?", "protected JOD", "codec floor JOD",
                  "difference: codec floor \u2212 protected", "per-frame min",
                  "the original re-encoded: libx264 CRF 23",
                  "read from PROTECTED&#x27;s encoder settings",
                  "24-inch FullHD monitor, 200 cd/m2, office light, seen from 0.6 m "
                  "(standard_fhd)", "ColorVideoVDP (cvvdp 0.5.7)",
                  "native size: 60, full screen: 12", "0.60 s", "10.20 s", "1920\u00d71080",
                  ">0.25<", ">0.15<", "Secondary figures: PSNR, SSIM",
                  "do not see low-frequency changes on skin or flicker"):
        assert words in text, words
    assert text.count('<span class="level good">yes</span>') == 2
    # PSNR / SSIM table moved here from "All measurements"
    assert "41.2 dB" in text and ">PSNR<" in text
    assert ">PSNR<" not in section(page, "all")
    # without visibility: the section says so and still has the secondary figures
    text = section(page_with(tmp_path / "none"), "visibility")
    assert "was not measured in this run" in text and ">PSNR<" in text


def test_jod_plots(tmp_path):
    page = page_with(tmp_path, visibility())
    plots = section(page, "per-frame")
    charts = re.findall(r'<div class="chart"><h3>(.*?)</h3>', plots)
    assert charts[:2] == ["Video JOD at native size (640\u00d7360)",
                          "Video JOD at full screen (1920\u00d71080)"]
    first = plots[plots.index("Video JOD at native size"):plots.index("Video JOD at full")]
    assert first.count('<polyline class="series floor"') == 1
    assert first.count('<polyline class="series"') == 1
    assert 'class="threshold-label"' in first and ">9.5</text>" in first
    second = plots[plots.index("Video JOD at full screen"):]
    assert ">9.3</text>" in second.split("</svg>")[0]
    # the x axis is the measured frames: the last native frame is 118
    assert ">100</text>" in first.split("</svg>")[0]
    # without visibility: no JOD plot
    assert "Video JOD" not in section(page_with(tmp_path / "none"), "per-frame")


@pytest.mark.parametrize("vis", [
    {"anything": 1},
    {"native": None, "full_screen": None, "rule": None, "floor": None, "verdict": None,
     "seconds_per_frame": None},
    {"native": {"jod": None, "floor_jod": None, "per_frame": None, "frames": None}},
    {"native": {"jod": 9.6, "floor_jod": NAN, "per_frame": [None, NAN, 9.5, "x"],
                "floor_per_frame": [9.9], "frames": "x", "size": "640x360"},
     "full_screen": {"jod": "bad", "size": [None, 3]}, "rule": {"native_jod": None},
     "floor": {"label": None}, "seconds_per_frame": {"native": NAN}, "verdict": "odd",
     "display": None, "stride": 4, "segment_frames": None},
    {"native": {"jod": 9.6, "per_frame": [NAN] * 5, "floor_per_frame": [None] * 5,
                "frames": [0, 1, 2, 3, 4]}, "full_screen": "not a dict", "rule": [1, 2]},
    {"native": {"jod": float("inf"), "per_frame": [9.7] * 3, "frames": [0, 5, 10]},
     "stride": 2, "segment_frames": 24},
])
def test_missing_and_hostile_visibility_never_crash(tmp_path, vis):
    views = mapped_views()[:1]
    views[0].jod = None
    page = page_with(tmp_path, vis, views)
    text = re.sub(r"<img[^>]*>", "", page)
    assert "nan" not in text.lower().replace("nanos", "")
    assert "None" not in section(page, "visibility") and "None" not in section(page, "figures")
    assert "\u2014" in section(page, "visibility")
    assert "frame JOD \u2014" in page
    assert "Does it still look the same?" in page


def test_jod_within_hostile_values(tmp_path):
    vis = visibility()
    vis["native"]["jod"] = 9.6
    vis["native"]["floor_jod"] = None
    page = page_with(tmp_path, vis)
    assert "codec floor \u2014" in section(page, "figures")


# --------------------------------------------------------------------------------------
# The frames: A/B pair at 1x, face close-up at 2x, where the change shows


def pairs(page: str) -> list[str]:
    return re.findall(r'<div class="ab(?: zoom)?" tabindex.*?<span class="ab-label">.*?'
                      r"</span></span></div>", page)


def test_each_view_has_the_pair_switched_in_place(tmp_path):
    views = mapped_views()
    page = page_with(tmp_path, visibility(), views)
    frames = section(page, "frames")
    found = pairs(frames)
    assert len(found) == 2 * len(views)  # the frame and the face close-up, per view
    for pair in found:
        uris = re.findall(r'<img class="ab-(protected|original)" src="data:image/png;base64,',
                          pair)
        assert uris == ["protected", "original"]  # both in one container, the protected first
        assert ('<span class="when-protected">protected</span>'
                '<span class="when-original">original</span>') in pair
        assert 'role="button"' in pair and 'tabindex="0"' in pair
    main, zoom = found[0], found[1]
    assert 'width="640" height="360"' in main and 'class="ab-region"' in main
    width, height = map(int, re.search(r'width="(\d+)" height="(\d+)"', zoom).groups())
    close_up = re.search(r"The face at 2\u00d7: (\d+)\u00d7(\d+) frame pixels", frames)
    assert (width, height) == (2 * int(close_up[1]), 2 * int(close_up[2]))
    assert 'class="ab zoom"' in zoom
    assert "At 1\u00d7: 640\u00d7360, one frame pixel per CSS pixel" in frames
    assert "Hover to see the original; click to pin it, click again to switch." in frames
    # the script that switches them, once, inline
    assert page.count("<script>") == 1 and 'classList.toggle("show-original"' in page
    # the existing pictures stay: amplified difference and the two readings
    assert frames.count("Difference |protected \u2212 original|") == len(views)
    assert frames.count("what the face models read (") == 2 * len(views)


def test_visibility_map_beside_the_difference(tmp_path):
    views = mapped_views()
    page = page_with(tmp_path, visibility(), views)
    frames = section(page, "frames")
    assert "Where a viewer would see the change (ColorVideoVDP), frame JOD 9.71" in frames
    assert "frame JOD 9.61" in frames and "frame JOD 9.51" in frames
    assert "<b>Frame JOD</b> 9.71" in frames
    first = frames.split('<section class="view">')[1]
    assert first.index("Difference |protected") < first.index("Where a viewer would see")
    # a float map in [0, 1] and a grey one are read too; an unusable one is left out
    views = mapped_views()[:1]
    for number, (value, shown) in enumerate(((views[0].visibility_map / 255.0, True),
                                             (views[0].visibility_map[..., 0], True),
                                             (np.zeros((4, 4, 5)), False),
                                             ("nonsense", False))):
        views[0].visibility_map = value
        page = page_with(tmp_path / f"map{number}", None, views)
        assert ("Where a viewer would see the change" in page) == shown
    # views without the new attributes (older evaluators) still render
    page = page_with(tmp_path / "plain", visibility(), fake_views())
    assert "Where a viewer would see" not in page and len(pairs(page)) == 6


def test_no_views_no_script(tmp_path):
    assert "<script" not in page_with(tmp_path, visibility(), [])


# --------------------------------------------------------------------------------------
# In a real browser


def dump_dom(page: Path, out: Path, width: int = 1280, height: int = 2000) -> str:
    chromium = find_chromium()
    if chromium is None:
        message = "Chromium is not installed (Debian package: chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--hide-scrollbars",
               "--force-device-scale-factor=1", f"--user-data-dir={out / 'profile-dom'}",
               f"--window-size={width},{height}", "--dump-dom", page.resolve().as_uri()]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "HOME": str(out)})
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout


PROBE = """<script>
(function () {
  var pair = document.querySelector(".ab");
  var states = [];
  function state(what) {
    var protectedImage = pair.querySelector(".ab-protected");
    var original = pair.querySelector(".ab-original");
    var box = protectedImage.getBoundingClientRect();
    var top = original.getBoundingClientRect();
    states.push({what: what, label: pair.querySelector(".ab-label").innerText.trim(),
                 original: getComputedStyle(original).visibility,
                 pressed: pair.getAttribute("aria-pressed"),
                 pinned: pair.classList.contains("pinned"),
                 width: box.width, height: box.height,
                 natural: [protectedImage.naturalWidth, protectedImage.naturalHeight],
                 overlap: [top.left === box.left, top.top === box.top,
                           top.width === box.width, top.height === box.height],
                 ratio: window.devicePixelRatio});
  }
  state("loaded");
  pair.click(); state("click");
  pair.click(); state("click again");
  pair.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true}));
  state("enter");
  var zoom = document.querySelector(".ab.zoom img");
  states.push({what: "zoom", width: zoom.getBoundingClientRect().width,
               natural: zoom.naturalWidth,
               rendering: getComputedStyle(zoom).imageRendering});
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(states);
  document.body.appendChild(out);
})();
</script>"""


def test_pair_switches_on_click_in_chromium(tmp_path):
    """The page's script run in Chromium: the pair starts on the protected, a click pins the
    original, the next click (and Enter) switch; the frame is drawn at 1x."""
    views = mapped_views()[:1]
    result = {"visibility": visibility()}
    path = write_report(result, views, tmp_path / "page")
    probe = tmp_path / "probe.html"
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                     encoding="utf-8")
    dom = dump_dom(probe, tmp_path)
    states = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)[1]))
    loaded, click, again, enter, zoom = states
    assert (loaded["label"], loaded["original"], loaded["pressed"], loaded["pinned"]) == (
        "protected", "hidden", "false", False)
    assert (click["label"], click["original"], click["pressed"], click["pinned"]) == (
        "original", "visible", "true", True)
    assert (again["label"], again["original"], again["pressed"]) == (
        "protected", "hidden", "false")
    assert (enter["label"], enter["original"]) == ("original", "visible")
    # 1x: one frame pixel per CSS pixel (and per screen pixel at this scale factor), the
    # original exactly over the protected
    assert loaded["ratio"] == 1
    assert (loaded["width"], loaded["height"]) == (640, 360) == tuple(loaded["natural"])
    assert all(loaded["overlap"])
    assert zoom["width"] == 2 * zoom["natural"] and zoom["rendering"] == "pixelated"


def test_renders_in_headless_chromium(tmp_path):
    """The top of the page leads with visibility; a page of one frame shows it at 1x."""
    result = fake_result()
    result["visibility"] = visibility(native=9.41, native_floor=9.87)
    result["visibility"]["verdict"] = {"looks_the_same": False, "level": "fair",
                                       "text": "some viewers may see the change"}
    page = write_report(result, mapped_views(), tmp_path / "page")
    pixels = screenshot(page, tmp_path, 1280, 2400)
    assert pixels.astype(np.float32).std() > 20
    # the verdict "Almost" (fair: 9.41 < 9.5) shows its amber border; the protection's green
    amber = (np.abs(pixels.astype(int) - (0x9a, 0x67, 0x00)).sum(axis=2) < 30).sum()
    assert amber > 500

    # one frame, nothing else: the pair is near the top; the screenshot holds the frame's
    # own pixels at 1x (PNG, no scaling)
    original = portrait(360, 640, 5)
    original[40:80, 40:200] = (255, 0, 255)  # a magenta bar, 160x40, to find it by
    protected = original.copy()
    view = MappedView(7, original, protected, reading(360, 640), reading(360, 640, 0.02),
                      {"psnr": 48.0}, heat_map(original, protected), 9.99)
    alone = write_report({}, [view], tmp_path / "alone")
    shot_dir = tmp_path / "alone-shot"
    shot_dir.mkdir()
    shot = screenshot(alone, shot_dir, 1280, 3000)
    magenta = np.all(shot == (255, 0, 255), axis=2)
    ys, xs = np.nonzero(magenta)
    assert len(ys), "the magenta bar is not in the screenshot"
    # the first (top-left) pair: its magenta bar is 160x40 screen pixels, exactly
    left = (xs < xs.min() + 400) & (ys < ys.min() + 200)
    assert xs[left].max() - xs[left].min() + 1 == 160
    assert ys[left].max() - ys[left].min() + 1 == 40
    keep = os.environ.get("VDF_KEEP_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(Path(keep) / "visibility_top.png")
        Image.fromarray(shot).save(Path(keep) / "visibility_frame.png")
        shutil.copy(page, Path(keep) / "visibility_report.html")
