"""The files of one match's run, written together: `spans.json`, `results_spotting.json` (SoccerNet labels),
`timeline.png`, `report.html`, and the reel `highlights.mp4` + `.srt`; and the one-screen summary."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soccer_highlights.common.atomic import (
    OutputSet,
    check_apart,
    check_replaceable,
    check_writable_folder,
    write_json,
)
from soccer_highlights.common.constants import BACKGROUND
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.timefmt import game_time
from soccer_highlights.core.match import Half, Match, Result
from soccer_highlights.highlights.decoder import Span
from soccer_highlights.highlights.reel import make_reel, plan_clips
from soccer_highlights.report.labels import match_identity
from soccer_highlights.report.page import ReelView, model_record, write_report
from soccer_highlights.spotting.spots import class_labels, write_results_spotting

# Every file a run may write into --out: written together; those a run does not write are removed when an earlier
# run wrote them (unchanged since); a file of the user's with one of these names is never replaced (`OutputSet`).
OUTPUT_FILES = (
    "spans.json",
    "results_spotting.json",
    "timeline.png",
    "report.html",
    "highlights.mp4",
    "highlights.srt",
)


@dataclass(frozen=True)
class Output:
    """Where and how one match's files are written: the folder `out`, the reel (cut with ffmpeg when the match has
    a video; `fast`: stream copy, cuts on keyframes), the seed's intro and outro seconds at its ends. `root`: the
    --out of a run over many matches (every output stays inside it); `protected`: files the run reads besides the
    match's own (the model, the PCA, other matches' inputs): none may be an output; `keep_old`: files with an
    output's name that this project did not write are renamed to NAME.old-N.EXT (else the run is refused)."""

    out: Path
    reel: bool = True
    fast: bool = False
    intro_sec: float = 15.0  # the seed's reel: the first and last 15 s of the match at its ends
    outro_sec: float = 15.0
    reel_repeat_overlaps: bool = False
    progress: bool = False
    root: Path | None = None
    protected: tuple[Path, ...] = ()
    keep_old: bool = False


@dataclass
class Written:
    """What `write_outputs` wrote: the files by role (spans, spotting, timeline, report, reel, subtitles), the
    reel's length, and seconds per step."""

    files: dict[str, Path] = field(default_factory=dict)
    reel_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def check_outputs(match: Match, output: Output) -> None:
    """That the match's output folder can be written, holds none of the run's inputs, and no file of the user's
    with an output's name (unless `keep_old`)."""
    check_writable_folder(output.out, OUTPUT_FILES)
    check_apart(output.out, OUTPUT_FILES, [*match.inputs(), *output.protected], output.root or output.out)
    check_replaceable(output.out, OUTPUT_FILES, output.keep_old)


def spans_json(result: Result, identity: dict | None = None) -> dict:
    """spans.json: the match's inputs (and their identity, which reviewed labels must match), model, decoder, spans."""
    spec = result.spec
    labels = class_labels(result.cmap, spec.class_names)
    names = list(spec.class_names)
    return {
        "source": result.match.paths(),
        "identity": identity if identity is not None else match_identity(result),
        "model": {**model_record(result.model, spec), "class_names": names},
        "decoder": result.scoring.decoder.to_dict(),
        "spans": [span_record(s, number, labels, names) for number, s in result.spans()],
    }


def span_record(s: Span, number: int, labels: dict, names: Sequence[str]) -> dict:
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


def write_outputs(result: Result, output: Output | str | os.PathLike[str]) -> Written:
    """Every file of one match, made visible together (the reel first: the step most likely to fail; when it fails,
    one warning line says why and the other files are still written). Files of an earlier run that this one does
    not write (a reel, when this run makes none) are removed. `output`: an Output,
    or just the folder (default settings)."""
    from soccer_highlights.evaluation.plots import plot_timeline  # deferred: loads matplotlib (start-up)

    output = output if isinstance(output, Output) else Output(Path(output))
    out, written = output.out, Written()
    inputs = [*result.match.inputs(), result.model, *output.protected]
    if result.extraction and result.extraction.pca:
        inputs.append(Path(result.extraction.pca))
    with OutputSet(out, OUTPUT_FILES, inputs=inputs, root=output.root or out, keep_old=output.keep_old) as files:
        t0 = time.perf_counter()
        try:
            reel = _write_reel(result, output, files, written)
        except UserError as exc:  # the video's other outputs are still worth having
            print(f"warning: no reel: {' '.join(str(exc).split())} (the other outputs are written)", file=sys.stderr)
            reel = None
            for name in ("highlights.mp4", "highlights.srt"):
                files.drop(name)
            for role in ("reel", "subtitles"):
                written.files.pop(role, None)
        written.timings["reel"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        identity = match_identity(result)  # hashes the inputs once, for spans.json and the report
        write_json(files.path("spans.json"), spans_json(result, identity))
        game = str(result.match.source)
        write_results_spotting(
            files.path("results_spotting.json"),
            game,
            result.spots(),
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
        written.files.update(
            spans=out / "spans.json",
            spotting=out / "results_spotting.json",
            timeline=out / "timeline.png",
            report=out / "report.html",
        )
        write_report(files.path("report.html"), result, reel=reel, folder=out, identity=identity)
    written.timings["write"] = time.perf_counter() - t0
    return written


def _write_reel(result: Result, output: Output, files: OutputSet, written: Written) -> ReelView | None:
    """The reel and its subtitles, when there is a video and something to show."""
    video = result.match.video_file
    if not (video and output.reel and (result.spans() or output.intro_sec or output.outro_sec)):
        return None
    h = result.halves[0]
    clips = plan_clips(
        h.spans,
        h.duration,
        intro_sec=output.intro_sec,
        outro_sec=output.outro_sec,
        title=lambda s: " + ".join(f"{e.label} {game_time(h.number, e.peak)} ({e.score:.2f})" for e in s.all_events()),
        join_overlaps=not output.reel_repeat_overlaps,
    )
    reel = make_reel(
        video,
        clips,
        files.path("highlights.mp4"),
        fast=output.fast,
        progress=output.progress,
        srt_out=files.path("highlights.srt"),
    )
    written.files["reel"] = output.out / "highlights.mp4"
    written.files["subtitles"] = output.out / "highlights.srt"
    written.reel_seconds = reel.duration
    return ReelView(output.out / "highlights.mp4", [(c.start, c.end) for c in clips])


def _joined_halves(halves: Sequence[Half], tokens_per_second: float) -> tuple[np.ndarray, list, list]:
    """(probs, spans, ground truth) of the halves laid end to end, for one timeline."""
    offset, spans, truth, curves = 0.0, [], [], []
    for h in halves:
        assert h.probs is not None  # every half of a Result is scored
        spans += [Span(s.start + offset, s.end + offset, s.label, s.score, s.peak + offset) for s in h.spans]
        truth += [(t + offset, c) for t, c in h.events]
        offset += len(h.probs) / tokens_per_second
        curves.append(h.probs)
    return np.concatenate(curves), spans, truth


def thresholds_line(result: Result) -> str:
    """The decoder's peak threshold of each class, on one line: a span needs a score at least that high."""
    decoder = result.scoring.decoder
    shown = [n for n in result.class_names if n != BACKGROUND] or result.class_names
    values = {n: decoder.rule(n).threshold for n in shown}
    if len(set(values.values())) == 1:
        text = f"{next(iter(values.values())):.2f} for every class"
    else:
        text = ", ".join(f"{n} {v:.2f}" for n, v in values.items())
    return f"decoder threshold {text} (a span needs a score this high; --threshold sets every class)"


def summary(result: Result, written: Written | None = None) -> str:
    """One screen: input, model, spans, coverage, outputs, time per stage."""
    spec = result.spec
    lines = [
        f"model   {result.model} ({spec.architecture}, {spec.pooling}, {spec.window_seconds:g} s windows, "
        f"classes {', '.join(spec.class_names[1:])})"
    ]
    lines.append(thresholds_line(result))
    for h in result.halves:
        tokens = len(result.curves(h.number))
        lines.append(
            f"half {h.number}  {h.duration / 60:.1f} min, {tokens} tokens, {len(h.spots)} spots, {len(h.spans)} spans"
        )
    spans = result.spans()
    for number, s in spans[:12]:
        lines.append(f"  {game_time(number, s.peak)}  {s.label:<10} {s.start:7.1f}-{s.end:7.1f} s  score {s.score:.2f}")
    if len(spans) > 12:
        lines.append(f"  ... {len(spans) - 12} more in spans.json")
    timings = dict(result.timings)
    if written:
        lines += [f"{k:<9} {v}" for k, v in written.files.items()]
        timings.update(written.timings)
    lines.append("time    " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    if result.random_weights:
        lines.append("WARNING: features came from RANDOM extraction weights: these highlights mean nothing")
    text = f"{len(spans)} highlights ({sum(s.duration for _, s in spans):.0f} s)"
    hits, events = result.covered()
    if events:
        text += f", {hits} of {events} true events covered"
    lines.append(text)
    return "\n".join(lines)
