"""The match report: one static HTML page (player, score timeline, spans, settings) beside a run's outputs.

`write_report` renders `report.html` from an inference result: the page template (`report_page.html`, plain
HTML/CSS/JS, no library, nothing fetched) with the run's data embedded as JSON. Scores are quantised to
one byte per token (1/255 of probability, finer than a pixel of the curve) and max-pooled only beyond
`MAX_SAMPLES` per class, so a 90-minute match stays a few hundred kB; the page draws one min/max
envelope per pixel column. Videos are linked by paths relative to the report, never copied.
`write_index` writes a page linking the reports of several matches.

    python -m soccer_highlights.report.page inference_output/index.html inference_output/*/report.html
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from soccer_highlights.common.atomic import atomic_path, read_json
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.highlights.reel import plan_clips

if TYPE_CHECKING:
    from soccer_highlights.common.modelspec import ModelSpec
    from soccer_highlights.core.pipeline import Config, Result
    from soccer_highlights.highlights.decoder import Span

BACKGROUND = "background"
MAX_SAMPLES = 16384  # per class and half; beyond this, scores are max-pooled (peaks kept)
PAGE = Path(__file__).with_name("page.html")
VIDEO_SUFFIXES = (".mkv", ".mp4", ".webm", ".avi", ".mov")


def encode_scores(probs: np.ndarray, max_samples: int = MAX_SAMPLES) -> tuple[int, list[str]]:
    """(tokens per sample, one base64 string of uint8 scores per class column) of one half's [T, C] scores."""
    probs = np.nan_to_num(np.asarray(probs, dtype=np.float32), nan=0.0)
    step = max(1, -(-len(probs) // max_samples))
    if step > 1:
        pad = (-len(probs)) % step
        padded = np.concatenate([probs, np.repeat(probs[-1:], pad, axis=0)]) if pad else probs
        probs = padded.reshape(-1, step, probs.shape[1]).max(axis=1)
    quantised = np.rint(np.clip(probs, 0, 1) * 255).astype(np.uint8)
    return step, [base64.b64encode(quantised[:, c].tobytes()).decode("ascii") for c in range(quantised.shape[1])]


def url_from(folder: Path, target: str | os.PathLike) -> str:
    """A relative URL of `target` as seen from `folder` (so the report keeps working when both move together)."""
    rel = os.path.relpath(Path(target).resolve(), Path(folder).resolve())
    return quote(Path(rel).as_posix())


def half_video(game_dir: Path, number: int) -> Path | None:
    """The video file of one half in a SoccerNet game folder (`1_224p.mkv`, `1_720p.mkv`, `1.mp4` ...), if any."""
    found = sorted(
        p
        for p in game_dir.glob(f"{number}*")
        if p.suffix.lower() in VIDEO_SUFFIXES and (p.stem == str(number) or p.stem.startswith(f"{number}_"))
    )
    return found[0] if found else None


def _labels(span: Span) -> list[str]:
    """A span's classes: several when the decoder keeps several labels on one span, else its one label."""
    return list(getattr(span, "labels", None) or [span.label])


def _halves(result: Result, out: Path, tokens_per_second: float) -> list[dict]:
    cfg, rows, offset = result.config, [], 0.0
    for h in result.halves:
        video = cfg.video if cfg.video else half_video(cfg.game_dir, h.number) if cfg.game_dir else None
        assert h.probs is not None  # a decoded half has its probs
        length = len(h.probs) / tokens_per_second
        step, scores = encode_scores(h.probs)
        rows.append(
            {
                "number": h.number,
                "offset": offset,
                "length": length,
                "duration": h.duration or length,
                "video": url_from(out, video) if video else None,
                "step": step,
                "scores": scores,
            }
        )
        offset += length
    return rows


def _reel(result: Result, out: Path) -> dict | None:
    """The reel's file and its clips in source time, so the page can follow the reel on the match timeline."""

    reel = result.outputs.get("reel")
    if not reel:
        return None
    cfg, h = result.config, result.halves[0]
    clips = plan_clips(
        h.spans,
        h.duration,
        intro_sec=cfg.intro_sec,
        outro_sec=cfg.outro_sec,
        join_overlaps=not cfg.reel_repeat_overlaps,
    )
    return {"video": url_from(out, reel), "clips": [[round(c.start, 3), round(c.end, 3)] for c in clips]}


SOURCES = ("video", "features_video", "features_audio", "game_dir")


def source_paths(cfg: Config, names: Sequence[str] = SOURCES) -> dict[str, str]:
    """The run's inputs among `names` (Config fields) that were given, as strings (spans.json, report.html)."""
    return {k: str(getattr(cfg, k)) for k in names if getattr(cfg, k) is not None}


def model_record(cfg: Config, spec: ModelSpec) -> dict[str, Any]:
    """The model file and the facts of its spec a reader of the outputs needs (spans.json, report.html)."""
    return {
        "path": str(cfg.model),
        "architecture": spec.architecture,
        "pooling": spec.pooling,
        "window_seconds": spec.window_seconds,
        "tokens_per_second": spec.tokens_per_second,
    }


def report_data(result: Result, out: Path) -> dict:
    """Everything the page shows, from an inference result (config, model info, halves with scores/spans/spots)."""
    cfg, spec = result.config, result.spec
    tokens_per_second = spec.tokens_per_second
    names = list(spec.class_names)
    shown = [n for n in names if n != BACKGROUND] or names
    source = cfg.game_dir or cfg.video or cfg.features_video
    return {
        "title": Path(str(source)).name,
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "classNames": names,
        "shown": shown,
        "tokensPerSecond": tokens_per_second,
        "thresholds": {n: cfg.decoder.rule(n).threshold for n in shown},
        "halves": _halves(result, out, tokens_per_second),
        "spans": [
            {
                "half": h.number,
                "start": round(s.start, 3),
                "end": round(s.end, 3),
                "labels": _labels(s),
                "score": round(float(s.score), 4),
                "peak": round(float(s.peak), 3),
            }
            for h in result.halves
            for s in h.spans
        ],
        "spots": [
            [sp.half, round(sp.seconds, 2), sp.label, round(float(sp.confidence), 3)]
            for h in result.halves
            for sp in h.spots
        ],
        "truth": [[h.number, round(t, 2), c] for h in result.halves for t, c in h.events],
        "reel": _reel(result, out),
        "randomWeights": bool(result.random_weights),
        "settings": {
            "source": source_paths(cfg, (*SOURCES, "ground_truth")),
            "model": model_record(cfg, spec),
            "scoring": {"stride": cfg.stride, "nms_window_sec": cfg.nms_window_sec, "nms_threshold": cfg.nms_threshold},
            "decoder": cfg.decoder.to_dict(),
        },
    }


def render(data: dict, template: Path = PAGE) -> str:
    """The page with `data` embedded (as JSON inside a script element, `</` escaped so it cannot close it)."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    page = template.read_text(encoding="utf-8")
    return page.replace("__TITLE__", html.escape(str(data.get("title", "")))).replace("__DATA__", payload)


def write_report(path: str | os.PathLike, result: Result, folder: str | os.PathLike | None = None) -> Path:
    """Write the report page of an inference result to `path` (atomically). `folder`: where the page will be
    opened from, when it is written elsewhere first (links are relative to it; default: `path`'s folder)."""
    path = Path(path)
    text = render(report_data(result, Path(folder) if folder is not None else path.parent))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _row(report: Path, folder: Path) -> str:
    spans_file = report.with_name("spans.json")
    spans = read_json(spans_file).get("spans", []) if spans_file.is_file() else None
    name = html.escape(report.parent.name)
    link = f'<a href="{url_from(folder, report)}">{name}</a>'
    if spans is None:
        return f"<tr><td>{link}</td><td colspan=2>no spans.json</td></tr>"
    seconds = sum(s["end"] - s["start"] for s in spans)
    return f"<tr><td>{link}</td><td>{len(spans)}</td><td>{seconds:.0f} s</td></tr>"


def write_index(path: str | os.PathLike, reports: Sequence[str | os.PathLike], title: str = "Match reports") -> Path:
    """Write an index page linking each match's report (with its span count and highlight length)."""
    path = Path(path)
    rows = "\n".join(_row(Path(r), path.parent) for r in reports) or "<tr><td colspan=3>no reports</td></tr>"
    text = (
        f"<!doctype html>\n<html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
        '<link rel=icon href="data:,"><style>body{font:15px system-ui,sans-serif;margin:2em}'
        "table{border-collapse:collapse}td,th{padding:4px 14px;border-bottom:1px solid #ddd;text-align:left}"
        f"</style>\n<h1>{html.escape(title)}</h1>\n<table><tr><th>match</th><th>spans</th>"
        f"<th>highlights</th></tr>\n{rows}\n</table>\n"
    )
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="an index page linking the reports of several matches")
    p.add_argument("index", help="the index page to write, e.g. inference_output/index.html")
    p.add_argument("reports", nargs="+", help="report.html files (each beside its run's spans.json)")
    args = p.parse_args(argv)
    for report in args.reports:
        if not Path(report).is_file():
            raise UserError(f"{report}: no such report")
    print(write_index(args.index, args.reports))
    return 0


if __name__ == "__main__":
    run_cli(main)
