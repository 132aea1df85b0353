"""The files of one match's run, written together: `spans.json`, `results_spotting.json` (SoccerNet labels),
`timeline.png`, `report.html`, and the reel `highlights.mp4` + `.srt`; and the one-screen summary."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from soccer_highlights.common.atomic import OutputSet, check_apart, check_writable_folder, write_json
from soccer_highlights.common.timefmt import game_time
from soccer_highlights.highlights.decoder import Span
from soccer_highlights.highlights.reel import make_reel, plan_clips
from soccer_highlights.report.page import model_record, source_paths, write_report
from soccer_highlights.spotting.spots import class_labels, write_results_spotting

if TYPE_CHECKING:
    from soccer_highlights.core.pipeline import Config, Half, Result

# Every file a run may write into --out: written together, and those a run does not write are removed.
OUTPUT_FILES = (
    "spans.json",
    "results_spotting.json",
    "timeline.png",
    "report.html",
    "highlights.mp4",
    "highlights.srt",
)


def check_outputs(config: Config) -> None:
    """That the input's output folder can be written and holds none of its inputs."""
    check_writable_folder(config.out, OUTPUT_FILES)
    check_apart(config.out, OUTPUT_FILES, config.inputs(), config.root or config.out)


def spans_json(result: Result) -> dict:
    cfg, spec = result.config, result.spec
    labels = class_labels(result.cmap, spec.class_names)
    names = list(spec.class_names)
    return {
        "source": source_paths(cfg),
        "model": {**model_record(cfg, spec), "class_names": names},
        "decoder": cfg.decoder.to_dict(),
        "spans": [span_record(s, h.number, labels, names) for h in result.halves for s in h.spans],
    }


def span_record(s: Any, number: int, labels: dict, names: Sequence[str]) -> dict:
    """One span of `spans.json` (`s` a decoder Span of half `number`; `labels`: class index -> SoccerNet label)."""

    names = list(names)
    return {
        "half": number,
        "start": round(s.start, 3),
        "end": round(s.end, 3),
        "class": s.label,
        "label": labels.get(names.index(s.label), s.label),
        "score": round(s.score, 6),
        "peak": round(s.peak, 3),
        "match_time": game_time(number, s.peak),
        "classes": list(s.labels),
        "events": [
            {
                "class": e.label,
                "label": labels.get(names.index(e.label), e.label),
                "peak": round(e.peak, 3),
                "score": round(e.score, 6),
                "match_time": game_time(number, e.peak),
            }
            for e in s.all_events()
        ],
    }


def write_outputs(result: Result) -> None:
    """Every output of the run, made visible together (the reel first: the step most likely to fail). Files
    of an earlier run that this one does not write (a reel, when this run makes none) are removed."""
    from soccer_highlights.evaluation.plots import plot_timeline  # deferred: loads matplotlib (start-up)

    cfg, out = result.config, result.config.out
    with OutputSet(out, OUTPUT_FILES, inputs=cfg.inputs(), root=cfg.root or out) as files:
        t0 = time.perf_counter()
        _write_reel(result, files)
        result.timings["reel"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        write_json(files.path("spans.json"), spans_json(result))
        game = str(cfg.game_dir or cfg.video or cfg.features_video)
        write_results_spotting(
            files.path("results_spotting.json"),
            game,
            [s for h in result.halves for s in h.spots],
            class_labels(result.cmap, result.spec.class_names),
        )
        tokens_per_second = result.spec.tokens_per_second
        probs, spans, truth = _joined_halves(result.halves, tokens_per_second)
        plot_timeline(
            files.path("timeline.png"),
            probs,
            result.spec.class_names,
            tokens_per_second,
            spans,
            truth,
            title=f"{Path(game).name}: class scores, spans (shaded), ground truth (v)"
            + (" - halves end to end" if len(result.halves) > 1 else ""),
        )
        result.outputs.update(
            spans=out / "spans.json",
            spotting=out / "results_spotting.json",
            timeline=out / "timeline.png",
            report=out / "report.html",
        )
        write_report(files.path("report.html"), result, folder=out)
    result.timings["write"] = time.perf_counter() - t0


def _write_reel(result: Result, files: OutputSet) -> None:
    """The reel and its subtitles, when there is a video and something to show."""

    cfg = result.config
    if not (cfg.video and cfg.reel and (any(h.spans for h in result.halves) or cfg.intro_sec or cfg.outro_sec)):
        return
    h = result.halves[0]
    clips = plan_clips(
        h.spans,
        h.duration,
        intro_sec=cfg.intro_sec,
        outro_sec=cfg.outro_sec,
        title=lambda s: " + ".join(f"{e.label} {game_time(h.number, e.peak)} ({e.score:.2f})" for e in s.all_events()),
        join_overlaps=not cfg.reel_repeat_overlaps,
    )
    reel = make_reel(
        cfg.video,
        clips,
        files.path("highlights.mp4"),
        fast=cfg.fast,
        progress=cfg.progress,
        srt_out=files.path("highlights.srt"),
    )
    result.outputs["reel"] = cfg.out / "highlights.mp4"
    result.outputs["subtitles"] = cfg.out / "highlights.srt"
    result.reel_seconds = reel.duration


def _joined_halves(halves: Sequence[Half], tokens_per_second: float) -> tuple[np.ndarray, list, list]:
    """(probs, spans, ground truth) of the halves laid end to end, for one timeline."""

    offset, spans, truth = 0.0, [], []
    for h in halves:
        spans += [Span(s.start + offset, s.end + offset, s.label, s.score, s.peak + offset) for s in h.spans]
        truth += [(t + offset, c) for t, c in h.events]
        offset += len(h.probs) / tokens_per_second  # type: ignore[arg-type]  # a decoded half has its probs
    return np.concatenate([h.probs for h in halves]), spans, truth


def covered(halves: Sequence[Half]) -> tuple[int, int]:
    """(true events inside some span of their half, true events)."""
    hits = sum(any(s.start <= t <= s.end for s in h.spans) for h in halves for t, _ in h.events)
    return hits, sum(len(h.events) for h in halves)


def summary(result: Result) -> str:
    """One screen: input, model, spans, coverage, outputs, time per stage."""

    cfg, spec = result.config, result.spec
    lines = [
        f"model   {cfg.model} ({spec.architecture}, {spec.pooling}, {spec.window_seconds:g} s windows, "
        f"classes {', '.join(spec.class_names[1:])})"
    ]
    for h in result.halves:
        tokens = len(h.probs)  # type: ignore[arg-type]  # a decoded half has its probs
        lines.append(
            f"half {h.number}  {h.duration / 60:.1f} min, {tokens} tokens, {len(h.spots)} spots, {len(h.spans)} spans"
        )
    spans = [(h.number, s) for h in result.halves for s in h.spans]
    for number, s in spans[:12]:
        lines.append(f"  {game_time(number, s.peak)}  {s.label:<10} {s.start:7.1f}-{s.end:7.1f} s  score {s.score:.2f}")
    if len(spans) > 12:
        lines.append(f"  ... {len(spans) - 12} more in spans.json")
    lines += [f"{k:<9} {v}" for k, v in result.outputs.items()]
    lines.append("time    " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    if result.random_weights:
        lines.append("WARNING: features came from RANDOM extraction weights: these highlights mean nothing")
    text = f"{len(spans)} highlights ({sum(s.duration for _, s in spans):.0f} s)"
    hits, events = covered(result.halves)
    if events:
        text += f", {hits} of {events} true events covered"
    lines.append(text)
    return "\n".join(lines)
