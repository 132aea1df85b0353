"""Fine-tuning on reviewed matches of another league: average-mAP on held-out matches before and after.

A model is trained on generated league A (`soccer_highlights.synthetic`, its event traces as they are). League B is
generated with other traces (`OTHER_LEAGUE`: goals heard less and seen more, cards heard, set pieces and
substitutions a few seconds later and weaker on screen), so the model meets events that look different from its
training set's. For N = 1, 3, 10 matches of league B, the review is simulated: each match goes through inference
(its spans.json records its identity), its true labels are written through the report's download format
(`report.labels.labels_document`, what review mode saves), `soccer-trainset` turns them into a training set, and
`ClassificationMinuteBased.py --init_model` fine-tunes the model with the fine-tuning preset. Every model is scored
on the same held-out league-B matches (V&D's spotting, SoccerNet's loose average-mAP). Small sizes on purpose
(NetVLAD with few clusters, 4 s windows, short halves): the figure is the gain, not the absolute mAP.

    .venv/bin/python bench/bench_finetune.py   # writes nothing; prints the table
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from soccer_highlights import dataset as ds  # noqa: E402
from soccer_highlights.commands import inference, spot, trainset  # noqa: E402
from soccer_highlights.commands import train as train_cmd  # noqa: E402
from soccer_highlights.common.modelfile import read_spec  # noqa: E402
from soccer_highlights.evaluation.metrics import evaluate_games  # noqa: E402
from soccer_highlights.report.labels import Reviewed, file_digest, labels_document  # noqa: E402
from soccer_highlights.synthetic import games as synthetic  # noqa: E402
from soccer_highlights.training.presets import FINETUNE  # noqa: E402

# League B's traces, by label: (events per minute, delay s, [(trace key, video amp, audio amp)]), replacing A's.
OTHER_LEAGUE = {
    "Goal": (0.07, 5.0, [("goal", 3.0, 1.0), ("card", 0.0, 1.5)]),
    "Shots on target": (0.08, 4.0, [("goal", 2.5, 0.8)]),
    "Corner": (0.15, 4.0, [("kick", 1.2, 2.5), ("subs", 0.0, 1.5)]),
    "Direct free-kick": (0.08, 4.0, [("kick", 1.2, 2.5)]),
    "Indirect free-kick": (0.10, 4.0, [("kick", 1.2, 2.5)]),
    "Substitution": (0.08, 5.0, [("subs", 1.5, 2.5)]),
    "Yellow card": (0.08, 3.0, [("card", 1.0, 3.5), ("goal", 0.0, 1.0)]),
}


@contextlib.contextmanager
def other_league() -> Iterator[None]:
    """synthetic's event table with league B's traces while the block runs."""
    saved = dict(synthetic.EVENT_TABLE)
    synthetic.EVENT_TABLE.update(OTHER_LEAGUE)
    try:
        yield
    finally:
        synthetic.EVENT_TABLE.clear()
        synthetic.EVENT_TABLE.update(saved)


def train(lists: dict[str, Path], tflog: Path, prefix: str, extra: Sequence[str]) -> Path:
    argv = [
        "--training",
        str(lists["train"]),
        "--validation",
        str(lists["valid"]),
        "--testing",
        str(lists["test"]),
        "--formatdataset",
        "1",
        "--batch_windows",
        "16",
        "--tflog",
        str(tflog),
        "--outputPrefix",
        prefix,
        "--cache_dir",
        str(tflog / f"cache_{prefix}"),
        "--quiet",
        *extra,
    ]
    with contextlib.redirect_stdout(sys.stderr):
        assert train_cmd.main(argv) == 0
    return tflog / f"{prefix}_best.keras"


def score(model: Path, game_list: Path, root: Path, out: Path) -> float:
    """Loose average-mAP of the model's spots on the games of `game_list` (their Labels-v2.json)."""
    with contextlib.redirect_stdout(sys.stderr):
        assert spot.main(["--testing", str(game_list), "--model", str(model), "--output", str(out), "--quiet"]) == 0
    cmap = ds.class_map_from_json(read_spec(model).class_map, str(model))
    names = [str(g) for g in np.load(game_list)]
    return float(evaluate_games(root, out, names, cmap.classes, cmap.label_to_index).a_mAP)


def review(model: Path, game: Path, out: Path, downloads: Path) -> Path:
    """Inference on one match, then its true labels saved in review mode's download format: the labels file."""
    with contextlib.redirect_stdout(sys.stderr):
        assert inference.main(["--model", str(model), "--out", str(out), "--game_dir", str(game), "--quiet"]) == 0
    identity = json.loads((out / "spans.json").read_text())["identity"]
    cmap = ds.class_map_from_json(identity["class_map"], str(out))
    events = [
        Reviewed(e.half, e.position_ms / 1000, cmap.classes[cmap.label_to_index[e.label]])
        for e in ds.read_labels(game)
        if e.label in cmap.label_to_index
    ]
    path = downloads / f"{out.name}.json"
    path.write_text(json.dumps(labels_document(identity, events)))
    return path


def hash_speed(folder: Path, mib: int = 256) -> float:
    """MiB/s of the identity's SHA-256 (`report.labels.file_digest`) over a file of `mib` MiB, read back from disk."""
    path = folder / "hash.bin"
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    t0 = time.perf_counter()
    file_digest(path)
    seconds = time.perf_counter() - t0
    path.unlink()
    return mib / seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--games_a", type=int, default=10, help="league A games (60 %% train, 20 %% valid, 20 %% test)")
    p.add_argument("--half_minutes", type=float, default=4.0)
    p.add_argument("--vlad_k", type=int, default=8)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--base_epochs", type=int, default=25)
    p.add_argument("--held_out", type=int, default=5, help="league B matches scored, never reviewed")
    p.add_argument("--ns", default="1,3,10", help="numbers of reviewed league B matches")
    p.add_argument("--keep", default=None, help="keep the work folder here")
    args = p.parse_args()
    ns = [int(n) for n in args.ns.split(",")]
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_finetune-"))
    t0 = time.perf_counter()
    league_a = synthetic.generate_dataset(work / "a", args.games_a, args.half_minutes, seed=0, progress=False)
    small = ["--PCA", "--network", "VLAD", "--VLAD_k", str(args.vlad_k), "--WindowSize", str(args.window)]
    base = train(
        league_a.lists,
        work / "model",
        "base",
        ["--architecture", "concat", *small, "--max_epoch", str(args.base_epochs), "--class_map", "highlight"],
    )
    with other_league():
        league_b = synthetic.generate_dataset(
            work / "b", max(ns) + args.held_out, args.half_minutes, seed=1, splits=(1.0, 0.0, 0.0), progress=False
        )
    names = [str(g) for g in np.load(league_b.lists["train"])]
    reviewed, held = names[: max(ns)], names[max(ns) :]
    held_list = work / "b" / f"listgame_Held_{len(held)}.npy"
    np.save(held_list, np.array(held))
    rows = [
        ("league A test (trained on A)", score(base, league_a.lists["test"], work / "a", work / "spots_a"), None),
        ("league B held-out, before", score(base, held_list, work / "b", work / "spots_b"), None),
    ]
    downloads = work / "downloads"
    downloads.mkdir()
    labels = [review(base, work / "b" / g, work / "outputs" / f"match{i}", downloads) for i, g in enumerate(reviewed)]
    for n in ns:
        pairs = [a for i in range(n) for a in ("--match", str(work / "outputs" / f"match{i}"), str(labels[i]))]
        with contextlib.redirect_stdout(sys.stderr):
            assert trainset.main(["--out", str(work / f"set{n}"), *pairs]) == 0
        lists = {k: work / f"set{n}" / f"listgame_{s}_{n}.npy" for k, s in (("train", "Train"), ("valid", "Valid"))}
        lists["test"] = lists["valid"]
        t1 = time.perf_counter()
        tuned = train(lists, work / "model", f"tuned{n}", ["--init_model", str(base)])
        seconds = time.perf_counter() - t1
        rows.append(
            (
                f"league B held-out, after fine-tuning on {n}",
                score(tuned, held_list, work / "b", work / f"spots{n}"),
                seconds,
            )
        )
    print(
        f"league A: {args.games_a} games, league B: {max(ns)} reviewable + {len(held)} held out, halves of "
        f"{args.half_minutes:g} min (+0-59 s), concat NetVLAD-{args.vlad_k}, {args.window} s windows, base "
        f"{args.base_epochs} epochs, fine-tuning LR {FINETUNE.lr:g} up to {FINETUNE.max_epoch} epochs; "
        f"{time.perf_counter() - t0:.0f} s in all; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"identity hash: SHA-256 at {hash_speed(work):.0f} MiB/s (a 256 MiB file, page cache warm)")
    print("| model | average-mAP (loose) | fine-tuning time |")
    print("|---|---:|---:|")
    for name, value, seconds in rows:
        print(f"| {name} | {value:.3f} | {'' if seconds is None else f'{seconds:.0f} s'} |")


if __name__ == "__main__":
    main()
