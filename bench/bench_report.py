"""Benchmark: size and opening time of report.html for a 90-minute match (2 halves x 45 min at 2 tokens/s).

    .venv/bin/python bench/bench_report.py [--opens 7]

Scores are generated (low noise plus event bumps, as in bench_decoder.py) for the highlight model's
4 classes + background and for the 17 SoccerNet-v2 classes + background; spans and spots come from the real
decoder and NMS, and the page from the real writer (inference's Config/Half/Result). "open" is the page's own
clock when its last drawing call returns (`performance.now()` from navigation start: parse, decode, draw every
class row), in a fresh headless Chromium tab per open (1280 x 900); "wall" adds the round trips of the driver.
The video files are not part of the page (linked, never embedded).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from soccer_highlights.common.modelspec import ModelSpec
from soccer_highlights.core.match import Half, Match, Result, Scoring
from soccer_highlights.highlights.decoder import DecoderConfig, decode
from soccer_highlights.report.page import write_report
from soccer_highlights.spotting.spots import nms_spots

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test helpers, not in the package
from chrome import Browser  # noqa: E402

TOKENS_PER_SECOND, HALF_TOKENS = 2.0, 45 * 60 * 2
MODELS = {
    "highlight (4 classes)": ["kick", "subs", "card", "goal"],
    "SoccerNet-v2 (17 classes)": [f"class {i}" for i in range(17)],
}


def fake_scores(classes: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, int]]]:
    """[T, 1 + classes] probabilities: background high except around ~30 events per half, and the events."""
    probs = rng.uniform(0, 0.08, (HALF_TOKENS, classes + 1)).astype(np.float32)
    probs[:, 0] = 0.9
    events = [
        (float(t), int(c))
        for t, c in zip(rng.integers(60, HALF_TOKENS - 60, 30), rng.integers(1, classes + 1, 30), strict=True)
    ]
    t = np.arange(HALF_TOKENS)
    for token, c in events:
        bump = np.exp(-0.5 * ((t - token) / 6) ** 2)
        probs[:, c] = np.maximum(probs[:, c], 0.9 * bump)
        probs[:, 0] = np.minimum(probs[:, 0], 1 - 0.9 * bump)
    return probs, [(token / TOKENS_PER_SECOND, c) for token, c in events]


def fake_result(names: list[str], out: Path) -> Result:
    """A whole match scored from features (its game folder holds no video files: none to link)."""
    (out / "game").mkdir(parents=True)
    rng = np.random.default_rng(0)
    class_names = ["background", *names]
    scoring = Scoring(decoder=DecoderConfig())
    spec = ModelSpec("concat", class_names=class_names, window_seconds=20, tokens_per_second=TOKENS_PER_SECOND)
    halves = []
    for number in (1, 2):
        probs, events = fake_scores(len(names), rng)
        half = Half(
            number,
            np.empty((0, 1)),
            np.empty((0, 1)),
            [(s, class_names[c]) for s, c in events],
            HALF_TOKENS / TOKENS_PER_SECOND,
            probs,
        )
        half.spans = decode(probs, class_names, half.duration, scoring.decoder, tokens_per_second=TOKENS_PER_SECOND)
        half.spots = nms_spots(probs, class_names, number, tokens_per_second=TOKENS_PER_SECOND)
        halves.append(half)
    return Result(Match.game(out / "game"), Path("model.keras"), spec, halves, scoring)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--opens", type=int, default=7)
    args = p.parse_args()
    print("| model | spans | spots | report.html | open, median (min-max) | wall, median |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, Browser(width=1280, height=900) as browser:
        for label, names in MODELS.items():
            out = Path(tmp) / label.split()[0]
            result = fake_result(names, out)
            page = write_report(out / "report.html", result)
            opens, walls = [], []
            for _ in range(args.opens):
                browser.driver.get("about:blank")
                t0 = time.perf_counter()
                opens.append(float(browser.open(page)))
                walls.append((time.perf_counter() - t0) * 1000)
            assert not browser.errors(), browser.errors()
            spans = sum(len(h.spans) for h in result.halves)
            spots = sum(len(h.spots) for h in result.halves)
            print(
                f"| {label} | {spans} | {spots} | {page.stat().st_size / 1024:.0f} kB | {statistics.median(opens):.0f} ms "
                f"({min(opens):.0f}-{max(opens):.0f}) | {statistics.median(walls):.0f} ms |"
            )


if __name__ == "__main__":
    main()
