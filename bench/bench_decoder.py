"""Benchmark: the decoder on a 90-minute match (10,800 tokens x 5 classes), and average-mAP against the
official SoccerNet evaluator on the same files.

    flock /tmp/bench.lock .venv/bin/python bench/bench_decoder.py [--runs 21] [--games 4]

Decoder inputs: "realistic" = low noise plus ~60 event bumps (about what a trained model gives);
"worst case" = uniform random scores with no background (a peak candidate every few tokens). The baseline
is a plain per-token Python loop with the same peak rule (how the seed picked peaks), feeding the same
span steps, to show what the vectorised peak search buys.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from soccer_highlights.highlights import decoder
from soccer_highlights.highlights.decoder import decode

NAMES = ["background", "kick", "subs", "card", "goal"]
TOKENS = 10_800
TOKENS_PER_SECOND = 2.0


def realistic(rng: np.random.Generator) -> np.ndarray:
    p = rng.random((TOKENS, 5)) * 0.15
    x = np.arange(TOKENS)
    for _ in range(60):
        c, t = int(rng.integers(1, 5)), int(rng.integers(0, TOKENS))
        p[:, c] += rng.uniform(0.5, 0.9) * np.exp(-(((x - t) / 6.0) ** 2))
    p[:, 0] = 0.05
    return np.clip(p, 0, 1)


def worst_case(rng: np.random.Generator) -> np.ndarray:
    p = rng.random((TOKENS, 5))
    p[:, 0] = 0.0
    return p


def loop_peaks(p: np.ndarray, rule: decoder.ClassRule, tokens_per_second: float) -> np.ndarray:
    """Per-token loop: p[t] >= threshold and the maximum of its +-distance window (first of equal maxima)."""
    d = max(1, round(rule.min_peak_distance * tokens_per_second))
    out = []
    for t in range(len(p)):
        if p[t] < rule.threshold:
            continue
        lo, hi = max(0, t - d), min(len(p), t + d + 1)
        if p[t] >= p[lo:hi].max() and not (p[lo:t] == p[t]).any():
            out.append(t)
    return np.asarray(out, np.int64)


def timed(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def bench_decoder(runs: int) -> list[str]:
    rng = np.random.default_rng(0)
    rows = []
    for name, probs in (("realistic", realistic(rng)), ("worst case", worst_case(rng))):
        ms, spans = timed(lambda p=probs: decode(p, NAMES, TOKENS / TOKENS_PER_SECOND), runs)
        vectorised = decoder._peaks
        decoder._peaks = loop_peaks
        try:
            base_ms, base_spans = timed(lambda p=probs: decode(p, NAMES, TOKENS / TOKENS_PER_SECOND), max(3, runs // 5))
        finally:
            decoder._peaks = vectorised
        assert base_spans == spans, "the loop baseline must give the same spans"
        rows.append(f"| {name} | {len(spans)} | {ms:.1f} | {base_ms:.1f} | {base_ms / ms:.0f}x |")
    return rows


def bench_metrics(games: int) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from SoccerNet.Evaluation.ActionSpotting import evaluate as official
    from SoccerNet.Evaluation.utils import EVENT_DICTIONARY_V2
    from test_metrics import make_tree

    from soccer_highlights import dataset
    from soccer_highlights.evaluation.metrics import evaluate_games

    v2 = dataset.load_class_map("v2")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        labels, preds, names = make_tree(Path(tmp), list(EVENT_DICTIONARY_V2), n_games=games)
        for metric in ("loose", "tight"):
            ours_ms, ours = timed(
                lambda m=metric: evaluate_games(labels, preds, names, v2.classes, v2.label_to_index, metric=m), 3
            )
            theirs_ms, theirs = timed(
                lambda m=metric: official(
                    str(labels), str(preds), dataset=None, version=2, metric=m, EVENT_DICTIONARY=EVENT_DICTIONARY_V2
                ),
                1,
            )
            assert abs(ours.a_mAP - theirs["a_mAP"]) < 1e-12
            rows.append(
                f"| {metric} | {games} | {ours.a_mAP * 100:.3f} | {ours_ms:.0f} | {theirs_ms:.0f} | "
                f"{theirs_ms / ours_ms:.0f}x |"
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--games", type=int, default=4)
    args = ap.parse_args()
    print(f"decoder, 90-minute match ({TOKENS} tokens x {len(NAMES)} classes), median of {args.runs} runs")
    print("| scores | spans | decode (ms) | decode with per-token loop peaks (ms) | speed-up |")
    print("|---|---|---|---|---|")
    print("\n".join(bench_decoder(args.runs)))
    print(f"\naverage-mAP, SoccerNet-v2 classes, {args.games} generated games (median of 3 / 1 run)")
    print("| metric | games | a_mAP (%) | ours (ms) | official SoccerNet 0.2.0 (ms) | speed-up |")
    print("|---|---|---|---|---|---|")
    print("\n".join(bench_metrics(args.games)))


if __name__ == "__main__":
    main()
