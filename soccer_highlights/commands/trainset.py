"""Reviewed matches -> a SoccerNet-layout training set: game folders, game lists and the class map.

    soccer-trainset --out reviewed --match inference_output/match1 ~/Downloads/Labels-v2.json \\
        --match inference_output/match2 ~/Downloads/Labels-v2\\ \\(1\\).json
    python ClassificationMinuteBased.py --init_model Model/M_best.keras --class_map reviewed/class_map.json \\
        --training reviewed/listgame_Train_2.npy --validation reviewed/listgame_Valid_2.npy \\
        --testing reviewed/listgame_Test_2.npy --tflog Model --outputPrefix reviewed

Each `--match` pairs an inference output folder (its `spans.json` names the features the match was scored from
and their identity) with the `Labels-v2.json` that the report's review mode downloaded for it. Labels whose
identity (the match's files, by size and SHA-256) differs from the folder's, or from the files now on disk, are
refused: they were reviewed on another match. Each match becomes `OUT/<folder name>/` with its feature files
(`<half>_ResNET_TF2_PCA512.npy`, `<half>_VGGish.npy`, copied) and its reviewed `Labels-v2.json`. A game folder
keeps its two halves; a single video (one stream of tokens) is split at its middle token into the two halves a
SoccerNet game has, its events moved with it. The lists hold every game (`--valid K`: the last K games go to
validation and testing instead), and `class_map.json` is the model's class map, so training reads the same labels.
A run whose features were extracted in memory (a plain `--video`) kept no features: extract them first
(`soccer-extract`) and score with `--features_video` / `--features_audio`.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soccer_highlights import dataset as ds
from soccer_highlights.common.atomic import OutputSet, atomic_path, read_json, save_npy, write_json
from soccer_highlights.common.cli import Parser, add_keep_old_flag
from soccer_highlights.common.constants import AUDIO_FEATURES, BACKGROUND, TOKENS_PER_SECOND, VIDEO_FEATURES
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.names import unique_names
from soccer_highlights.common.timefmt import game_time
from soccer_highlights.report.labels import HASH, file_record, read_reviewed, same_files

EXTRACTION_RECORD = "extraction.json"


@dataclass(frozen=True)
class Reviewed:
    """One reviewed match: its inference output folder, its downloaded labels, and both files read."""

    out: Path
    labels: Path
    spans: dict[str, Any]
    review: dict[str, Any]

    @property
    def identity(self) -> dict[str, Any]:
        return self.spans["identity"]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        command="soccer-trainset",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.epilog = __doc__.split("\n\n", 1)[1]
    p.add_argument("--out", required=True, help="folder of the training set (game folders, lists, class_map.json)")
    p.add_argument(
        "--match",
        nargs=2,
        action="append",
        required=True,
        metavar=("OUTPUT_DIR", "LABELS"),
        help="an inference output folder and the Labels-v2.json its report's review mode downloaded (repeat)",
    )
    p.add_argument("--valid", type=int, default=0, help="games held out for validation and testing (default: none)")
    add_keep_old_flag(p)
    return p


def read_match(out: Path, labels: Path) -> Reviewed:
    """The output folder's spans.json and the labels, checked to be of the same match (one line naming the file)."""
    spans_file = out / "spans.json"
    if not spans_file.is_file():
        raise UserError(f"{out}: no spans.json (not an inference output folder)")
    spans = read_json(spans_file)
    if not isinstance(spans, dict) or not isinstance(spans.get("identity"), dict):
        raise UserError(f"{spans_file}: no match identity (written before reviews existed: run the inference again)")
    if not labels.is_file():
        raise UserError(f"{labels}: no such labels file")
    review = read_reviewed(labels)
    ours, theirs = spans["identity"], review["identity"]
    if not same_files(ours["files"], theirs["files"]):
        raise UserError(
            f"{labels}: reviewed on another match ({_describe(theirs)}), not on {out}'s ({_describe(ours)}): refused"
        )
    return Reviewed(out, labels, spans, review)


def _describe(identity: Mapping[str, Any]) -> str:
    first = identity["files"][0]
    digest = str(first.get(HASH) or "no hash")[:12]
    return f"{first.get('name')}, {first.get('size')} bytes, {HASH} {digest}"


def _source_files(m: Reviewed) -> dict[str, Path]:
    """Role -> path of every file of the match's identity, checked unchanged since the run (size and SHA-256)."""
    source = m.spans.get("source", {})
    paths: dict[str, Path] = {}
    for f in m.identity["files"]:
        role = f["role"]
        if role.startswith("half"):
            if "game_dir" not in source:
                raise UserError(f"{m.out}/spans.json: a game's feature file {f['name']} but no game_dir")
            paths[role] = Path(source["game_dir"]) / f["name"]
        elif role in source:
            paths[role] = Path(source[role])
        else:
            raise UserError(f"{m.out}/spans.json: its identity names a {role} that its source does not")
        if f.get(HASH) is None:
            raise UserError(f"{m.out}/spans.json: {paths[role]} was missing when the run wrote it: nothing to check")
        if not paths[role].is_file():
            raise UserError(f"{paths[role]}: not found (moved since {m.out} was written? run from the same folder)")
        now = file_record(role, paths[role])
        if (now["size"], now[HASH]) != (f["size"], f[HASH]):
            raise UserError(f"{paths[role]}: changed since {m.out} was written ({HASH} differs): refused")
    return paths


def _class_map(matches: Sequence[Reviewed]) -> ds.ClassMap:
    """The class map every match was reviewed with (the model's, or one label per class when it had none)."""
    maps = []
    for m in matches:
        identity = m.identity
        recorded = identity.get("class_map")
        if recorded is None:
            names = [n for n in identity["model"]["class_names"] if n != BACKGROUND]
            recorded = {"name": "reviewed", "classes": [BACKGROUND, *names], "labels": {n: [n] for n in names}}
        maps.append((m.labels, ds.class_map_from_json(recorded, str(m.labels))))
    first = maps[0][1]
    for labels, cmap in maps[1:]:
        if cmap.to_json() != first.to_json():
            raise UserError(f"{labels}: reviewed with another class map ({cmap.name}) than {maps[0][0]} ({first.name})")
    return first


def _events(m: Reviewed) -> list[ds.Event]:
    events = ds.parse_labels(m.review, str(m.labels))
    halves = set(m.identity.get("halves") or [1, 2])
    wrong = sorted({e.half for e in events} - halves)
    if wrong:
        raise UserError(f"{m.labels}: events in half {wrong[0]}, which {m.out}'s match does not have")
    return events


def game_files() -> list[str]:
    """The files of a game folder of the training set."""
    halves = [f"{half}_{name}.npy" for half in (1, 2) for name in (VIDEO_FEATURES, AUDIO_FEATURES)]
    return [*halves, EXTRACTION_RECORD, "Labels-v2.json"]


def write_game(m: Reviewed, files: OutputSet) -> int:
    """The match's features and reviewed labels as a SoccerNet game folder (staged in `files`, put in place with
    the rest of the training set); the number of events written."""
    paths = _source_files(m)
    events = _events(m)
    annotations = [a for a in m.review["annotations"] if isinstance(a, dict)]
    if "features_video" in paths:  # one stream: split at its middle token into two halves
        video, audio = np.load(paths["features_video"]), np.load(paths["features_audio"])
        tokens = min(len(video), len(audio))
        mid = tokens // 2
        if mid < 1:
            raise UserError(f"{paths['features_video']}: too short to make a game ({tokens} tokens)")
        for half, (a, b) in ((1, (0, mid)), (2, (mid, tokens))):
            _save(files, f"{half}_{VIDEO_FEATURES}.npy", video[a:b], paths["features_video"])
            _save(files, f"{half}_{AUDIO_FEATURES}.npy", audio[a:b], paths["features_audio"])
        mid_ms = round(mid / TOKENS_PER_SECOND * 1000)
        moved = []
        for ev, ann in zip(events, annotations, strict=True):
            half, ms = (1, ev.position_ms) if ev.position_ms < mid_ms else (2, ev.position_ms - mid_ms)
            moved.append({**ann, "gameTime": game_time(half, ms // 1000), "position": str(ms)})
        annotations = moved
        record = paths["features_video"].parent / EXTRACTION_RECORD
    else:
        for half in (1, 2):
            for role, name in (("video", VIDEO_FEATURES), ("audio", AUDIO_FEATURES)):
                src = paths.get(f"half{half}_features_{role}")
                if src is None:
                    raise UserError(f"{m.out}/spans.json: no half {half} {role} features in its identity")
                _copy(src, files, f"{half}_{name}.npy")
        record = Path(m.spans["source"]["game_dir"]) / EXTRACTION_RECORD
    if record.is_file():  # the feature recipe travels with the features
        _copy(record, files, EXTRACTION_RECORD)
    labels = {
        "UrlLocal": files.folder.name + "/",
        "UrlYoutube": "",
        "annotations": annotations,
        "review": m.review.get("review", {}),
        "identity": m.identity,
    }
    write_json(files.path("Labels-v2.json"), labels)
    return len(annotations)


def _same(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def _save(files: OutputSet, name: str, array: np.ndarray, src: Path) -> None:
    if _same(files.folder / name, src):
        raise UserError(f"{files.folder / name}: is an input of the training set (give another --out)")
    save_npy(files.path(name), np.ascontiguousarray(array))


def _copy(src: Path, files: OutputSet, name: str) -> None:
    if _same(files.folder / name, src):
        raise UserError(f"{files.folder / name}: is an input of the training set (give another --out)")
    with atomic_path(files.path(name)) as tmp:
        shutil.copyfile(src, tmp)


def _write_list(files: OutputSet, name: str, games: Sequence[str]) -> Path:
    with atomic_path(files.path(name)) as tmp, open(tmp, "wb") as f:
        np.save(f, np.array(games))
    return files.folder / name


def main(argv: Sequence[str] | None = None) -> int:
    """Every output is staged first and put in place together at the end (`common.atomic.OutputSet`, one per
    folder): a run that fails or is stopped (Ctrl-C) leaves the training set as it was, and a file of the user's
    with an output's name refuses the run before any work (or is kept as NAME.old-N.EXT with --keep_old)."""
    args = build_parser().parse_args(argv)
    pairs = [(Path(o), Path(lab)) for o, lab in args.match]
    if not 0 <= args.valid < len(pairs):
        raise UserError(f"--valid {args.valid}: must leave at least one of the {len(pairs)} matches for training")
    matches = [read_match(out, labels) for out, labels in pairs]
    cmap = _class_map(matches)
    root = Path(args.out)
    names = unique_names([m.out.resolve() for m in matches], reserved=("class_map",))
    train, held = (names[: -args.valid], names[-args.valid :]) if args.valid else (names, names)
    lists = {
        "Train": (f"listgame_Train_{len(train)}.npy", train),
        "Valid": (f"listgame_Valid_{len(held)}.npy", held),
        "Test": (f"listgame_Test_{len(held)}.npy", held),
    }
    made = [f for f in (root, *(root / n for n in names)) if not f.exists()]  # removed again if the run stops
    try:
        with contextlib.ExitStack() as stack:  # on success the sets are committed, the root's (the lists) last
            top = stack.enter_context(
                OutputSet(root, ["class_map.json", *(n for n, _ in lists.values())], keep_old=args.keep_old)
            )
            games = [stack.enter_context(OutputSet(root / n, game_files(), keep_old=args.keep_old)) for n in names]
            counts = [write_game(m, files) for m, files in zip(matches, games, strict=True)]
            write_json(top.path("class_map.json"), cmap.to_json())
            paths = {split: _write_list(top, name, games_of) for split, (name, games_of) in lists.items()}
    except BaseException:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a folder this run made and wrote nothing into
        raise
    for m, name, count in zip(matches, names, counts, strict=True):
        left = int(m.review.get("review", {}).get("left", 0) or 0)
        note = f", {left} items left unreviewed (they count as background unless accepted)" if left else ""
        print(f"{root / name}: {count} events{note}", file=sys.stderr if left else sys.stdout)
    if not args.valid:
        print("validation and testing lists hold the training games (--valid K holds K games out)")
    print(
        "train on it: python ClassificationMinuteBased.py --init_model MODEL.keras "
        f"--class_map {root / 'class_map.json'} --training {paths['Train']} --validation {paths['Valid']} "
        f"--testing {paths['Test']}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
