"""The match report page: what inference.py writes, checked in a real headless Chromium driven by Selenium (see
tests/chrome.py).

Chromium and chromium-driver are required, not optional: a machine without them fails these tests (CI installs
them in .ci/run).
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights import synthetic
from soccer_highlights.commands import inference
from soccer_highlights.report.page import encode_scores, half_video, render, write_index, write_report
from soccer_highlights.synthetic.video import make_match_video
from tests.chrome import Browser

CURRENT = "document.getElementById('match').currentTime"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model) -> dict[str, Path]:
    """Output folders of small runs: a video with spans, the same with none, a two-half game without videos and
    the same game with one video per half."""
    root, model = tmp_path_factory.mktemp("report"), tiny_model
    game = synthetic.write_game(synthetic.make_game(0, half_minutes=1), root / "game")
    seconds = len(np.load(game / "1_VGGish.npy", mmap_mode="r")) / 2
    video = make_match_video(root / "videos" / "match 'one' #1.mp4", seconds, [(3.0, "goal")], size="64x36")
    feats = ["--features_video", game / "1_ResNET_TF2_PCA512.npy", "--features_audio", game / "1_VGGish.npy"]
    halves = root / "game with videos"
    shutil.copytree(game, halves)
    for number in (1, 2):
        length = len(np.load(game / f"{number}_VGGish.npy", mmap_mode="r")) / 2
        make_match_video(halves / f"{number}_224p.mp4", length, size="64x36")
    bare = ["--intro_sec", "0", "--outro_sec", "0"]  # the reel holds the spans only, one clip each
    args = {
        "video": [
            "--video",
            video,
            *feats,
            "--threshold",
            "0.05",
            "--max_total_sec",
            "120",
            "--ground_truth",
            game,
            *bare,
            "--reel_repeat_overlaps",
        ],
        "no spans": ["--video", video, *feats, "--threshold", "1", *bare],
        "features only": ["--game_dir", game, "--threshold", "0.05"],
        "halves": ["--game_dir", halves, "--threshold", "0.05"],
    }
    outs = {}
    for name, extra in args.items():
        outs[name] = root / "out" / name.replace(" ", "_")
        assert inference.main(["--model", str(model), "--out", str(outs[name]), "--quiet", *map(str, extra)]) == 0
    return outs


@pytest.fixture(scope="module")
def browser():
    with Browser(width=1280, height=900) as b:
        yield b


def _open(browser: Browser, page: Path) -> None:
    browser.clear_log()
    browser.open(page)


def _spans(out: Path) -> list[dict]:
    return json.loads((out / "spans.json").read_text())["spans"]


@pytest.mark.slow
def test_video_run_report_lists_every_span_and_seeks_the_player(runs, browser):
    out = runs["video"]
    spans = _spans(out)
    assert len(spans) >= 2, "the run should have several spans to click"
    _open(browser, out / "report.html")
    assert browser.eval("document.querySelectorAll('#spans tbody tr').length") == len(spans)
    assert browser.eval("document.querySelectorAll('#spanlane .span').length") == len(spans)
    browser.wait_for("document.getElementById('match').readyState >= 1", timeout=10)  # the relative video path loads
    for k in (len(spans) - 1, 0, len(spans) // 2):
        browser.click(f"#spans tbody tr:nth-child({k + 1})")
        browser.wait_for(f"Math.abs({CURRENT} - {spans[k]['start']}) < 0.05", timeout=5)
    browser.click(f"#spanlane .span:nth-child({len(spans)})")
    browser.wait_for(f"Math.abs({CURRENT} - {spans[-1]['start']}) < 0.05", timeout=5)
    assert browser.errors() == []


def test_clicking_the_timeline_seeks_to_that_time(runs, browser):
    _open(browser, runs["video"] / "report.html")
    browser.wait_for("document.getElementById('match').readyState >= 1", timeout=10)
    canvas = browser.eval("""(() => { const c = document.querySelector('.row canvas'); c.scrollIntoView({block: 'center'});
        const r = c.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()""")
    total = browser.eval("total")
    left, top, width, height = canvas
    browser.click_at(left + 0.6 * width, top + 2)  # the top edge: no spot marker there to snap to
    want = 0.6 * total
    browser.wait_for(f"Math.abs({CURRENT} - {want}) < {6 * total / width}", timeout=5)
    assert browser.eval("document.getElementById('cursor').style.left") != ""
    assert browser.errors() == []


def test_zoomed_timeline_maps_clicks_and_follows_the_cursor(runs, browser):
    _open(browser, runs["video"] / "report.html")
    browser.wait_for("document.getElementById('match').readyState >= 1", timeout=10)
    total = browser.eval("total")
    browser.click("#zoom-in")
    browser.click("#zoom-in")  # a quarter of the match, from its start (the cursor)
    assert browser.eval("[v0, v1]") == [0, total / 4]
    left, top, width = browser.eval("""(() => { const c = document.querySelector('.row canvas');
        const r = c.getBoundingClientRect(); return [r.left, r.top, r.width]; })()""")
    browser.click_at(left + 0.5 * width, top + 2)
    browser.wait_for(f"Math.abs({CURRENT} - {total / 8}) < {6 * total / 4 / width}", timeout=5)
    last = _spans(runs["video"])[-1]
    browser.click(f"#spans tbody tr:nth-child({len(_spans(runs['video']))})")  # off screen: the window moves to it
    browser.wait_for(f"Math.abs({CURRENT} - {last['start']}) < 0.05", timeout=5)
    v0, v1 = browser.eval("[v0, v1]")
    assert v0 <= last["start"] <= v1 and v1 - v0 == pytest.approx(total / 4)
    browser.click("#zoom-all")
    assert browser.eval("[v0, v1]") == [0, total]
    assert browser.errors() == []


def test_cursor_follows_playback(runs, browser):
    _open(browser, runs["video"] / "report.html")
    browser.wait_for("document.getElementById('match').readyState >= 1", timeout=10)
    browser.eval(
        "(() => { const v = document.getElementById('match'); v.muted = true; v.currentTime = 10; return v.play(); })()"
    )
    browser.wait_for(f"{CURRENT} > 11", timeout=10)
    browser.eval("document.getElementById('match').pause()")
    now, cursor, row = (
        browser.eval("""[document.getElementById('match').currentTime, document.getElementById('cursor').offsetLeft,
        [document.querySelector('.row canvas').offsetLeft, document.querySelector('.row canvas').clientWidth]]""")
    )
    assert abs(cursor - (row[0] + row[1] * now / browser.eval("total") - 1)) <= 2
    assert browser.errors() == []


def test_reel_view_plays_the_reel_and_class_toggles_hide_rows(runs, browser):
    out = runs["video"]
    _open(browser, out / "report.html")
    browser.click("#tab-reel")
    browser.wait_for("document.getElementById('reel').readyState >= 1", timeout=10)
    total = sum(s["end"] - s["start"] for s in _spans(out))
    assert abs(browser.eval("document.getElementById('reel').duration") - total) < 0.5
    assert browser.eval("document.getElementById('match').hidden") is True
    spans = _spans(out)  # the reel's second clip, 1 s in, is 1 s after the second span's start in the match
    at = spans[0]["end"] - spans[0]["start"] + 1
    browser.eval(
        f"new Promise(ok => {{ const v = document.getElementById('reel'); v.addEventListener('seeked', ok, "
        f"{{once: true}}); v.currentTime = {at}; }})"
    )
    assert abs(browser.eval("cursorAt") - (spans[1]["start"] + 1)) < 0.05
    assert browser.eval("document.querySelector('#spans tbody tr:nth-child(2)').classList.contains('playing')")
    name = browser.eval("D.shown[0]")
    browser.click("#legend input")
    assert browser.eval(f"document.querySelector('.row[data-name=\"{name}\"]').hidden") is True
    assert browser.eval("document.querySelectorAll('.row:not([hidden])').length") == browser.eval("D.shown.length") - 1
    assert browser.errors() == []


def test_run_without_spans_opens_and_says_so(runs, browser):
    out = runs["no spans"]
    assert _spans(out) == [] and not (out / "highlights.mp4").exists()
    _open(browser, out / "report.html")
    assert browser.eval("document.getElementById('nospans').hidden") is False
    assert "No spans" in browser.eval("document.getElementById('nospans').textContent")
    assert browser.eval("document.getElementById('tab-reel').disabled") is True
    assert browser.eval("document.querySelectorAll('.row').length") >= 1
    assert browser.errors() == []


def test_features_only_game_opens_says_so_and_maps_both_halves(runs, browser):
    out = runs["features only"]
    _open(browser, out / "report.html")
    assert browser.eval("document.getElementById('novideo').hidden") is False
    assert "No video" in browser.eval("document.getElementById('novideo').textContent")
    assert browser.eval("document.querySelector('.boundary').textContent") == "half 2"
    spans = _spans(out)
    second = next(i for i, s in enumerate(spans) if s["half"] == 2)
    browser.click(f"#spans tbody tr:nth-child({second + 1})")
    start = round(spans[second]["start"])
    assert browser.eval("document.getElementById('now').textContent").startswith(
        f"2 - {start // 60:02d}:{start % 60:02d}"
    )
    cells = browser.eval("[...document.querySelectorAll('#spans tbody tr')].map(r => r.children[1].textContent)")
    assert cells == [s["match_time"] for s in spans]
    assert browser.errors() == []


def test_a_whole_match_seeks_into_the_video_of_the_right_half(runs, browser):
    out = runs["halves"]
    spans = _spans(out)
    assert {s["half"] for s in spans} == {1, 2}
    _open(browser, out / "report.html")
    assert browser.eval("document.getElementById('novideo').hidden") is True
    for k in (next(i for i, s in enumerate(spans) if s["half"] == 2), 0):
        browser.click(f"#spans tbody tr:nth-child({k + 1})")
        name = f"{spans[k]['half']}_224p.mp4"
        browser.wait_for(
            f"document.getElementById('match').src.endsWith({json.dumps(name)}) && "
            f"document.getElementById('match').readyState >= 1 && "
            f"Math.abs({CURRENT} - {spans[k]['start']}) < 0.05",
            timeout=10,
        )
    assert browser.errors() == []


def test_spans_with_several_labels_show_each(runs, browser, tmp_path):
    page = (runs["video"] / "report.html").read_text()
    data = json.loads(page.split('id="data">', 1)[1].split("</script>", 1)[0])
    first, other = data["spans"][0]["labels"][0], next(n for n in data["shown"] if n != data["spans"][0]["labels"][0])
    data["spans"][0]["labels"] = [first, other]
    for half in data["halves"]:
        half["video"] = None
    (tmp_path / "report.html").write_text(render(data))
    _open(browser, tmp_path / "report.html")
    chips = browser.eval("[...document.querySelectorAll('#spans tbody tr:first-child .chip')].map(c => c.textContent)")
    assert chips == [first, other]
    for name in (first, other):  # the span stays listed while either of its classes is shown
        browser.eval(f"(() => {{ visible.clear(); visible.add({json.dumps(name)}); applyToggles(); return 1; }})()")
        assert browser.eval("document.querySelector('#spans tbody tr').hidden") is False
    assert browser.errors() == []


def test_a_moved_report_says_its_video_is_missing(runs, browser, tmp_path):
    moved = tmp_path / "elsewhere" / "report.html"
    moved.parent.mkdir()
    moved.write_bytes((runs["video"] / "report.html").read_bytes())
    _open(browser, moved)
    browser.wait_for("!document.getElementById('novideo').hidden", timeout=10)
    assert "Cannot play" in browser.eval("document.getElementById('novideo').textContent")
    browser.click("#spans tbody tr")  # still moves the cursor, without retrying the missing file
    assert browser.eval("document.getElementById('now').textContent").startswith("1 - ")
    assert [e for e in browser.errors() if "ERR_FILE_NOT_FOUND" not in e] == []
    assert len(browser.errors()) == 1


def test_index_page_links_each_report(runs, browser, tmp_path):
    reports = [runs[name] / "report.html" for name in ("video", "no spans")]
    index = write_index(runs["video"].parent / "index.html", reports)
    browser.open(index, ready="document.readyState === 'complete'")
    links = browser.eval("[...document.querySelectorAll('a')].map(a => [a.textContent, a.href])")
    assert [name for name, _ in links] == ["video", "no_spans"]
    assert [href for _, href in links] == [r.resolve().as_uri() for r in reports]
    cells = browser.eval("[...document.querySelectorAll('tr')].slice(1).map(r => r.children[1].textContent)")
    assert cells == [str(len(_spans(runs["video"]))), "0"]


def test_scores_are_bytes_and_long_halves_keep_their_peaks():
    probs = np.zeros((40_000, 2), np.float32)
    probs[12_345, 1] = 0.9
    step, columns = encode_scores(probs, max_samples=10_000)
    assert step == 4
    decoded = np.frombuffer(base64.b64decode(columns[1]), np.uint8)
    assert len(decoded) == 10_000 and decoded.max() == round(0.9 * 255) and decoded.argmax() == 12_345 // 4
    assert encode_scores(probs[:100])[0] == 1


def test_embedded_data_cannot_close_its_script_element():
    page = render({"title": "a</script><b>", "note": "</script><script>alert(1)</script>"})
    assert page.count("</script>") == 2  # the template's own two script elements only
    assert "&lt;/script&gt;" in page.split("<title>")[1].split("</title>")[0]


def test_half_videos_of_a_game_folder(tmp_path):
    for name in ("1_224p.mkv", "2_720p.mp4", "10_224p.mkv", "1_ResNET_TF2_PCA512.npy"):
        (tmp_path / name).write_bytes(b"")
    assert half_video(tmp_path, 1).name == "1_224p.mkv"
    assert half_video(tmp_path, 2).name == "2_720p.mp4"
    assert half_video(tmp_path, 3) is None


def test_a_span_with_several_labels_keeps_them_all():
    from types import SimpleNamespace

    from soccer_highlights.report.page import _labels

    assert _labels(SimpleNamespace(label="goal", labels=("goal", "card"))) == ["goal", "card"]
    assert _labels(SimpleNamespace(label="goal")) == ["goal"]


def test_no_text_can_change_how_the_page_parses():
    hostile = "x<!--<script>a & b</script>-->__DATA__"
    page = render({"title": "__DATA__.mp4", "names": [hostile]})
    assert page.count("</script>") == 2 and "<!--" not in page.split('id="data">')[1].split("</script>")[0]
    assert "<title>__DATA__.mp4 - highlights report</title>" in page  # each placeholder filled once
    embedded = page.split('id="data">')[1].split("</script>")[0]
    assert json.loads(embedded)["names"] == [hostile]  # the same text back, once parsed


@pytest.mark.slow
def test_hostile_class_and_file_names_in_the_real_browser(tmp_path, browser):
    """A Result whose class names and video name hold HTML, comment and placeholder text: the page opens, its
    title, spans and player are those of the run."""
    from soccer_highlights.common.modelspec import ModelSpec
    from soccer_highlights.core.match import Half, Match, Result, Scoring
    from soccer_highlights.highlights.decoder import DecoderConfig, decode

    names = ["background", "<!--<script>", "</script><b>x</b>", "a&b\"'"]
    spec = ModelSpec("concat", class_names=names, window_seconds=4, tokens_per_second=2)
    probs = np.zeros((240, 4), np.float32)
    for c, token in ((1, 40), (2, 120), (3, 200)):
        probs[token - 3 : token + 4, c] = 0.9
    video = make_match_video(tmp_path / "__DATA__ <b>.mp4", 120.0, size="64x36")
    half = Half(1, np.zeros((240, 1)), np.zeros((240, 1)), duration=120.0, probs=probs)
    scoring = Scoring(decoder=DecoderConfig())
    half.spans = decode(probs, names, 120.0, scoring.decoder, tokens_per_second=2)
    result = Result(Match.video(video), tmp_path / "m.keras", spec, [half], scoring)
    page = write_report(tmp_path / "report.html", result)
    _open(browser, page)
    assert browser.eval("document.title") == "__DATA__ <b>.mp4 - highlights report"
    assert browser.eval("document.querySelectorAll('#spans tbody tr').length") == len(half.spans) == 3
    assert browser.eval("D.classNames") == names
    assert browser.eval("decodeURIComponent(document.getElementById('match').src).endsWith('__DATA__ <b>.mp4')")
    assert browser.errors() == []
