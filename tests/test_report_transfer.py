"""The report's transfer section (``vdf-stream eval --transfer --report DIR``): the readings
of MTCNN and face-api beside their floors, as text and rendered in headless Chromium."""

from __future__ import annotations

import numpy as np

from test_report import fake_result, screenshot
from vdf_stream.evaluation.report import write_report


def transfer_entry(frames: int) -> dict:
    """``result["transfer"]`` as vdf_stream.evaluation.evaluate writes it (flat share keys)."""
    rng = np.random.default_rng(5)
    mtcnn = list(np.abs(0.06 + rng.normal(0, 0.01, frames)))
    faceapi = list(np.abs(0.03 + rng.normal(0, 0.01, frames)))
    faceapi[3] = None
    lost = [float(i % 4 == 0) for i in range(frames)]
    return {
        "description": {"mtcnn_nme": "MTCNN's 5 points"},
        "efficacy": {"mtcnn_nme": {"median": 0.061, "mean": 0.062, "max": 0.09,
                                   "share_above_0.1": 0.0},
                     "mtcnn_faces_lost": {"median": 0.0, "mean": 0.25, "max": 1.0},
                     "faceapi68_nme": {"median": 0.031, "mean": 0.03, "max": 0.05}},
        "floor": {"mtcnn_nme": {"median": 0.0156, "mean": 0.016},
                  "mtcnn_faces_lost": {"median": 0.0, "mean": 0.0},
                  "faceapi68_nme": {"median": 0.0055, "mean": 0.006}},
        "floor_label": "H.264 CRF 23",
        "per_frame": {"mtcnn_nme": mtcnn, "mtcnn_faces_lost": lost, "faceapi68_nme": faceapi},
    }


def test_transfer_section(tmp_path):
    result = fake_result()
    result["transfer"] = transfer_entry(len(result["frames"]))
    page = write_report(result, [], tmp_path).read_text(encoding="utf-8")
    section = page[page.index('<section id="transfer">'):]
    section = section[:section.index("</section>")]
    for words in ("Transfer: face models of other families", "MTCNN landmark shift (NME)",
                  "face-api landmark shift (NME)", "MTCNN faces lost",
                  "original after H.264 CRF 23 alone", "0.061", "0.016", "25.0 %"):
        assert words in section, words
    # MTCNN moved (0.061 >= 0.05 and >= 2x its floor), face-api only above its floor, and
    # a quarter of the faces lost is below half
    assert section.count('class="level good">moved') == 1
    assert section.count('class="level fair">above the floor') == 2
    # bars (landmark shifts, faces lost) and one plot per reading
    assert section.count('<svg class="plot bars"') == 2
    assert section.count('<svg class="plot"') == 3
    assert "nan" not in section.lower()


def test_nothing_moved(tmp_path):
    """Readings at their floor, and no face lost against none lost alone: nothing moved."""
    entry = transfer_entry(4)
    entry["efficacy"] = {name: dict(summary) for name, summary in entry["floor"].items()}
    page = write_report({"transfer": entry}, [], tmp_path).read_text(encoding="utf-8")
    assert page.count('class="level poor">not beyond the floor') == 3


def test_no_transfer_no_section(tmp_path):
    page = write_report(fake_result(), [], tmp_path).read_text(encoding="utf-8")
    assert 'id="transfer"' not in page


def test_transfer_section_renders_in_headless_chromium(tmp_path):
    result = {"transfer": transfer_entry(30), "frames": list(range(0, 60, 2))}
    pixels = screenshot(write_report(result, [], tmp_path / "page"), tmp_path, 1280, 2400)
    assert pixels.astype(np.float32).std() > 20
    # the protected bars (accent blue) and the floor bars (grey) were drawn
    for colour in ((0x09, 0x69, 0xda), (0x9a, 0xa4, 0xae)):
        assert (np.abs(pixels.astype(int) - colour).sum(axis=2) < 30).sum() > 300, colour
