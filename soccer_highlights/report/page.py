"""The match report: one static HTML page (player, score timeline, spans, settings) beside a run's outputs.

`write_report` renders `report.html` from a core Result: the page template (`page.html`, plain
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
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np

from soccer_highlights.common.atomic import atomic_path, read_json
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.report.labels import match_identity

if TYPE_CHECKING:
    from soccer_highlights.common.modelspec import ModelSpec
    from soccer_highlights.core.match import Result
    from soccer_highlights.highlights.decoder import Span

BACKGROUND = "background"
MAX_SAMPLES = 16384  # per class and half; beyond this, scores are max-pooled (peaks kept)
PAGE = Path(__file__).with_name("page.html")
VIDEO_SUFFIXES = (".mkv", ".mp4", ".webm", ".avi", ".mov")


@dataclass(frozen=True)
class ReelView:
    """The reel as the page shows it: its file, and its clips in source time (start, end), in reel order."""

    path: Path
    clips: list[tuple[float, float]]


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
    match, rows, offset = result.match, [], 0.0
    for h in result.halves:
        video = match.video_file or (half_video(match.game_dir, h.number) if match.game_dir else None)
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


def _reel(reel: ReelView | None, out: Path) -> dict | None:
    """The reel's file and its clips in source time, so the page can follow the reel on the match timeline."""
    if reel is None:
        return None
    return {"video": url_from(out, reel.path), "clips": [[round(a, 3), round(b, 3)] for a, b in reel.clips]}


def model_record(model: Path, spec: ModelSpec) -> dict[str, Any]:
    """The model file and the facts of its spec a reader of the outputs needs (spans.json, report.html)."""
    return {
        "path": str(model),
        "architecture": spec.architecture,
        "pooling": spec.pooling,
        "window_seconds": spec.window_seconds,
        "tokens_per_second": spec.tokens_per_second,
    }


def report_data(
    result: Result, out: Path, reel: ReelView | None = None, identity: dict[str, Any] | None = None
) -> dict:
    """Everything the page shows, from a core Result (match, model, halves with scores/spans/spots) and the reel;
    `identity` (`report.labels.match_identity`, computed when not given) keys the review's stored state and travels
    into its download."""
    spec, decoder = result.spec, result.scoring.decoder
    tokens_per_second = spec.tokens_per_second
    names = list(spec.class_names)
    shown = [n for n in names if n != BACKGROUND] or names
    return {
        "title": result.match.source.name,
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "classNames": names,
        "shown": shown,
        "tokensPerSecond": tokens_per_second,
        "thresholds": {n: decoder.rule(n).threshold for n in shown},
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
        "reel": _reel(reel, out),
        "randomWeights": bool(result.random_weights),
        "identity": identity if identity is not None else match_identity(result),
        "settings": {
            "source": _sources(result),
            "model": model_record(result.model, spec),
            "scoring": result.scoring.record(),
            "decoder": decoder.to_dict(),
        },
    }


def _sources(result: Result) -> dict[str, str]:
    paths = result.match.paths()
    if result.match.labels is not None:
        paths["ground_truth"] = str(result.match.labels)
    return paths


# JSON inside a <script> element: every <, > and & as a \u escape (still the same JSON), so that no class name,
# file name or other text can open or close an element or a comment inside the script.
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
_PLACEHOLDER = re.compile(r"__(TITLE|DATA)__")


def render(data: dict, template: Path = PAGE) -> str:
    """The page with `data` embedded as JSON inside a script element (every `<`, `>`, `&` escaped), the title as
    HTML text; each placeholder of the template is filled once, so a title that reads `__DATA__` stays a title."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).translate(_SCRIPT_SAFE)
    title = html.escape(str(data.get("title", "")))
    page = template.read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(lambda m: title if m.group(1) == "TITLE" else payload, page)


def write_report(
    path: str | os.PathLike,
    result: Result,
    *,
    reel: ReelView | None = None,
    folder: str | os.PathLike | None = None,
    identity: dict[str, Any] | None = None,
) -> Path:
    """Write the report page of a core Result to `path` (atomically), with its reel when one was cut. `folder`:
    where the page will be opened from, when it is written elsewhere first (links are relative to it; default:
    `path`'s folder). `identity`: the match's (`report.labels.match_identity`), when the caller has it already."""
    path = Path(path)
    text = render(report_data(result, Path(folder) if folder is not None else path.parent, reel, identity))
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
