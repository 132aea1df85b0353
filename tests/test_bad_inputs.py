"""The bad-input matrix: every CLI, fed what a new user might give it, answers with one clear line and the
right exit code, and leaves the disk as it found it (nothing written, nothing stale, no temporary files).

Each case is (CLI, input, expected exit code, expected message fragment, optional on-disk check). Each case
is named after the input and what is expected of it. CLIs run in process through `run_cli` (one TensorFlow import), except the bash script.
Separate tests below: a full disk during training, and SIGTERM while the reel is cut.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import hashlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights.commands import evaluate, inference, trainset
from soccer_highlights.commands import extract as extract_cli
from soccer_highlights.commands import spot as ClassificationSecondBased
from soccer_highlights.commands import train as ClassificationMinuteBased
from soccer_highlights.common.atomic import MANIFEST, record_files
from soccer_highlights.common.errors import run_cli
from tests.argv import train_argv

ROOT = Path(__file__).resolve().parent.parent
D = 512
CLIS = {
    "inference": inference.main,
    "evaluate": evaluate.main,
    "train": ClassificationMinuteBased.main,
    "spot": ClassificationSecondBased.main,
    "extract": extract_cli.main,
    "trainset": trainset.main,
}


# ---- inputs ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tiny_model) -> Path:
    return tiny_model


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    from soccer_highlights.synthetic.video import make_match_video

    return make_match_video(tmp_path_factory.mktemp("video") / "match.mp4", 8, [(3.0, "goal")], size="64x36")


def ann(game_time: str, label: str, position: int | None = None) -> dict:
    return {"gameTime": game_time, "label": label, **({"position": str(position)} if position is not None else {})}


@dataclass
class Env:
    """One case's folder and the shared model / video; helpers that write inputs into the folder."""

    tmp: Path
    model: Path
    video: Path

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def npy(self, name: str, array: np.ndarray) -> Path:
        np.save(self.tmp / name, array)
        return self.tmp / name

    def features(self, video_rows: int = 40, audio_rows: int = 40) -> list[str]:
        rng = np.random.default_rng(0)
        v = self.npy("v.npy", rng.standard_normal((video_rows, D)).astype(np.float32))
        a = self.npy("a.npy", rng.standard_normal((audio_rows, D)).astype(np.float32))
        return ["--features_video", str(v), "--features_audio", str(a)]

    def infer(self, *extra: str) -> list[str]:
        return ["--model", str(self.model), "--out", str(self.out), "--quiet", *extra]

    def game(self, labels: list[dict], name: str = "game", frames: int = 130) -> Path:
        """A SoccerNet game folder: random features of two 65 s halves and these labels."""
        game = self.tmp / "data" / name
        game.mkdir(parents=True)
        rng = np.random.default_rng(1)
        for half in (1, 2):
            for feature in ("ResNET_TF2_PCA512", "VGGish"):
                np.save(game / f"{half}_{feature}.npy", rng.standard_normal((frames, D)).astype(np.float32))
        (game / "Labels-v2.json").write_text(json.dumps({"annotations": labels}))
        return game

    def train(self, labels: list[dict], *extra: str) -> list[str]:
        self.game(labels)
        lst = self.npy("data/listgame_Train_1.npy", np.array(["game"]))
        return train_argv(lst, self.tmp / "Model", *extra, max_epoch=1, cache_dir=self.tmp / "cache")

    def evaluate(
        self,
        predictions: list[dict] | None = None,
        labels: list[dict] | None = None,
        game_list: Path | None = None,
        *extra: str,
    ) -> list[str]:
        self.game(labels or [ann("1 - 00:10", "Goal", 10_000)])
        pred = self.tmp / "preds" / "game"
        pred.mkdir(parents=True)
        preds = (
            [{"label": "Goal", "half": "1", "position": "10000", "confidence": "0.9"}]
            if predictions is None
            else predictions
        )
        (pred / "results_spotting.json").write_text(json.dumps({"predictions": preds}))
        lst = game_list or self.tmp / "list.txt"
        if game_list is None:
            lst.write_text("game\n")
        return [
            "--labels",
            str(self.tmp / "data"),
            "--predictions",
            str(self.tmp / "preds"),
            "--game_list",
            str(lst),
            *extra,
        ]

    def extract(self, video: Path | None = None, out: Path | None = None, *extra: str) -> list[str]:
        """An extraction of `video` (default: the match video) into `out` (default: --out), random weights."""
        return ["--video", str(video or self.video), "--out", str(out or self.out), "--weights", "random", *extra]

    def live(self, *extra: str) -> list[str]:
        """A live run into --out from a UDP port nothing sends to (refused before it listens), random weights."""
        return [
            "--model",
            str(self.model),
            "--out",
            str(self.out),
            "--live",
            "udp://127.0.0.1:9",
            "--weights",
            "random",
            *extra,
        ]

    def decoder(self, config: dict) -> list[str]:
        (self.tmp / "decoder.json").write_text(json.dumps(config))
        return ["--decoder_config", str(self.tmp / "decoder.json")]

    def earlier_run(self, *names: str) -> list[str]:
        """The files of an earlier inference run in --out, and its record of them (no arguments to add)."""
        self.out.mkdir(exist_ok=True)
        for name in names:
            (self.out / name).write_bytes(f"earlier {name}".encode())
        record_files(self.out, names)
        return []

    def user_files(self, *names: str) -> list[str]:
        """Files of the user in --out that happen to have the names of outputs (no arguments to add)."""
        self.out.mkdir(exist_ok=True)
        for name in names:
            (self.out / name).write_bytes(f"the user's {name}".encode())
        return []

    def legacy_record(self, *names: str) -> list[str]:
        """The files of an earlier inference run in --out and the record an earlier version wrote of them (names
        only, no sizes or hashes; no arguments to add)."""
        self.earlier_run(*names)
        (self.out / MANIFEST).write_text(json.dumps({"written": list(names)}))
        return []

    def changed_since_record(self) -> list[str]:
        """--out's record made older than its files, as if they had changed since (no arguments to add)."""
        past = min(p.stat().st_ctime for p in self.out.iterdir()) - 60
        os.utime(self.out / MANIFEST, (past, past))
        return []

    def tflog_files(self, *names: str) -> list[str]:
        """Files of the user in the training's --tflog (Model/) with the names of its outputs (no arguments)."""
        (self.tmp / "Model").mkdir(exist_ok=True)
        for name in names:
            (self.tmp / "Model" / name).write_bytes(f"the user's {name}".encode())
        return []

    def reviewed(self) -> list[str]:
        """soccer-trainset's `--match OUTPUT LABELS`: an inference output of random features and the labels its
        review mode would download."""
        from soccer_highlights.report.labels import Reviewed, labels_document

        scored = self.tmp / "scored"
        argv = ["--model", str(self.model), "--out", str(scored), *self.features(), "--no_reel", "--quiet"]
        assert inference.main(argv) == 0
        identity = json.loads((scored / "spans.json").read_text())["identity"]
        labels = self.file("Labels-v2.json", json.dumps(labels_document(identity, [Reviewed(1, 3.0, "goal")])))
        return ["--match", str(scored), str(labels)]

    def inside_out(self, name: str, source: Path | None = None, link: str = "") -> Path:
        """An input placed in --out under an output's name: a copy of `source` (default: the match video), a
        symbolic link to it (`link="sym"`) or a hard link (`link="hard"`)."""
        self.out.mkdir(exist_ok=True)
        source = source or self.tmp / "match_copy.mp4"
        if not source.exists():
            source.write_bytes(self.video.read_bytes())
        target = self.out / name
        if link == "sym":
            target.symlink_to(source)
        elif link == "hard":
            os.link(source, target)
        else:
            target.write_bytes(source.read_bytes())
        return target

    def file(self, name: str, text: str) -> Path:
        (self.tmp / name).write_text(text)
        return self.tmp / name

    def folder(self, name: str) -> list[str]:
        """A folder where an output file goes (no arguments to add)."""
        (self.tmp / name).mkdir(parents=True)
        return []

    def infinite(self, name: str) -> list[str]:
        """Overwrite a feature file with infinities (no arguments to add)."""
        shape = np.load(self.tmp / name, mmap_mode="r").shape
        self.npy(name, np.full(shape, np.inf, np.float32))
        return []


def _text_npy(env: Env) -> Path:
    (env.tmp / "list.npy").write_text("game\n")
    return env.tmp / "list.npy"


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _killed_run_leftovers(env: Env) -> list[str]:
    """What a SIGKILLed inference run left in --out: its staging folder with the reel's work folder and temp MP4."""
    pid = _dead_pid()
    staging = env.out / f".partial.{pid}.abcd1234"
    (staging / f".reel.{pid}.efgh5678").mkdir(parents=True)
    (staging / f".highlights.{pid}.ijkl9012.mp4").write_bytes(b"half a reel")
    (env.out / f".spans.{pid}.mnop3456.json").write_text("{")
    (env.out / ".keep.me").write_text("the user's")  # not a leftover: stays
    return env.features()


@contextlib.contextmanager
def full_disk(folder: Path, suffix: str = ""):
    """Writes to files under `folder` (names ending in `suffix`) fail with ENOSPC, as on a full disk."""
    real_open = builtins.open

    class Full(io.RawIOBase):
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def close(self):
            self.fh.close()

    def fake_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        name = str(os.fspath(file)) if isinstance(file, str | os.PathLike) else ""
        if any(m in mode for m in "wax") and name.startswith(str(folder)) and name.endswith(suffix):
            return Full(fh)
        return fh

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", fake_open)
        mp.setattr(io, "open", fake_open)
        yield


# ---- on-disk checks for the cases that succeed -----------------------------------------------------------------


def _reel_removed(env: Env, err: str) -> None:
    names = sorted(p.name for p in env.out.iterdir())
    assert names == [MANIFEST, "report.html", "results_spotting.json", "spans.json", "timeline.png"], names
    assert json.loads((env.out / "spans.json").read_text())["spans"] == []
    assert err.count("removed highlights.mp4, highlights.srt of an earlier run") == 1


def _swept(env: Env, err: str) -> None:
    assert sorted(p.name for p in env.out.iterdir()) == [
        ".keep.me",
        MANIFEST,
        "report.html",
        "results_spotting.json",
        "spans.json",
        "timeline.png",
    ]


def _cache_positives(cls: str, count: int) -> Callable[[Env, str], None]:
    def check(env: Env, err: str) -> None:
        (cache,) = (env.tmp / "cache").glob("listgame_Train_1-*")  # the cache of the training list's data
        labels = np.load(cache / "labels.npy")
        assert labels[:, ["background", cls].index(cls)].sum() == count

    return check


def _goal_map(e: Env) -> list[str]:
    """A one-class map, so one game with a goal has a positive window of every class."""
    return ["--class_map", str(e.file("goal.json", json.dumps({"labels": {"goal": ["Goal"]}})))]


def _covered(text: str) -> Callable[[Env, str], None]:
    def check(env: Env, err: str) -> None:
        assert text in err

    return check


@dataclass
class Case:
    cli: str
    argv: Callable[[Env], list[str]]
    code: int
    message: str
    after: Callable[[Env, str], None] | None = None  # for exit 0; errors must leave the disk untouched


INTERVAL_LABELS = [ann("1 - 00:10", "Goal", 10_000), ann("1 - 95:00", "Goal"), ann("2 - 00:05", "Goal", -5000)]
ODD_LABELS = [
    ann("1 - 00:10", "Goal"),
    ann("1 - 00:20", "Alien invasion"),
    ann("1 - 00:30", "Alien invasion"),
    ann("3 - 00:10", "Goal"),
]
GOALL_MAP = {"labels": {"goal": ["Goal", "Goall"], "card": ["Yellow card"]}}


def _narrow_pca(e: Env) -> Path:
    np.savez(e.tmp / "narrow.npz", mean=np.zeros(100, np.float32), components=np.zeros((8, 100), np.float32))
    return e.tmp / "narrow.npz"


def _with(argv: list[str], flag: str, value: str) -> list[str]:
    """`argv` with the value of `flag` replaced."""
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def _nested_list(e: Env, name: str) -> Path:
    """A game list in data/lists/ naming `name`, with a game at data/game."""
    e.game([])
    (e.tmp / "data" / "lists").mkdir()
    return e.npy("data/lists/l.npy", np.array([name]))


def _short_audio(e: Env, rows: int) -> Path:
    game = e.game([])
    np.save(game / "2_VGGish.npy", np.zeros((rows, D), np.float32))
    return game


def _other_video_features(e: Env) -> Path:
    """A folder where `extract_features --video` put the features of another video."""
    folder = e.tmp / "features"
    folder.mkdir()
    files = {"video": "1_ResNET_TF2_PCA512.npy", "audio": "1_VGGish.npy"}
    for name in files.values():
        np.save(folder / name, np.zeros((4, D), np.float32))
    record = {"halves": {"1": {"video": "/elsewhere/other.mp4", "files": files}}}
    (folder / "extraction.json").write_text(json.dumps(record))
    return folder


def _pca_in_out(e: Env, name: str = "timeline.png") -> Path:
    from soccer_highlights.extract_features.pca import random_pca, save_pca

    save_pca(e.tmp / "pca.npz", random_pca())
    return e.inside_out(name, e.tmp / "pca.npz")


def _tree_with_pca(e: Env, name: str) -> Path:
    """A SoccerNet tree of one game whose first half is the match video, a PCA saved in the game under `name`."""
    game = e.tmp / "tree" / "game"
    game.mkdir(parents=True)
    (game / "1_224p.mp4").write_bytes(e.video.read_bytes())
    from soccer_highlights.extract_features.pca import random_pca, save_pca

    save_pca(game / name, random_pca())
    return e.tmp / "tree"


def _unchanged_game(e: Env) -> bool:
    """The game folder's features and labels are those Env.game wrote."""
    game = e.tmp / "data" / "game"
    labels = json.loads((game / "Labels-v2.json").read_text())["annotations"]
    return labels == [ann("1 - 00:10", "Goal")] and np.load(game / "1_VGGish.npy").shape == (130, D)


def _raw_with(e: Env, value: float, row: int) -> Path:
    """2048-d raw features of 20 rows with `value` at `row`, in a game folder."""
    raw = np.random.default_rng(0).standard_normal((20, 2048)).astype(np.float32)
    raw[row, 5] = value
    (e.tmp / "raw").mkdir()
    return e.npy("raw/1_ResNET_TF2.npy", raw)


def _nan_pca(e: Env, which: str = "components") -> Path:
    arrays = {"mean": np.zeros(2048, np.float32), "components": np.eye(4, 2048, dtype=np.float32)}
    arrays[which][0] = np.nan if which == "components" else np.inf
    np.savez(e.tmp / "nan.npz", **arrays)
    return e.tmp / "nan.npz"


def _nan_model(e: Env) -> Path:
    from soccer_highlights import archis

    model = archis.load_model(e.model)
    weight = model.weights[0]
    weight.assign(np.full(weight.shape, np.nan, np.float32))
    model.save(e.tmp / "nan.keras")
    return e.tmp / "nan.keras"


def _lambda_model(e: Env) -> Path:
    import keras

    inp = keras.Input((3,))
    keras.Model(inp, keras.layers.Lambda(lambda x: x * 2)(inp)).save(e.tmp / "lambda.keras")
    return e.tmp / "lambda.keras"


def _respec(e: Env, name: str, change: Callable[[dict], None] | None = None, pad_config: int = 0) -> Path:
    """The shared model with its config.json's spec changed by `change`, or padded with `pad_config` spaces."""
    import zipfile

    out = e.tmp / name
    with zipfile.ZipFile(e.model) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                if change:
                    change(config["config"]["spec"])
                data = json.dumps(config).encode() + b" " * pad_config
            dst.writestr(info, data)
    return out


def _four_classes(spec: dict) -> None:
    spec["class_names"] = spec["class_names"][:4]
    spec.pop("class_map", None)


def _pickle(e: Env, name: str, content) -> Path:
    with open(e.tmp / name, "wb") as fh:
        pickle.dump(content, fh)
    return e.tmp / name


CASES: dict[str, Case] = {
    # inference.py: flags and inputs that already failed cleanly
    "inference missing model": Case(
        "inference",
        lambda e: ["--model", str(e.tmp / "nope.keras"), "--out", str(e.out), *e.features()],
        2,
        "no such model file",
    ),
    "inference half of the features pair": Case("inference", lambda e: e.infer(*e.features()[:2]), 2, "go together"),
    "inference no input": Case("inference", lambda e: e.infer(), 2, "give one input"),
    "inference list naming no videos": Case(
        "inference", lambda e: e.infer(str(e.file("empty.txt", "# none\n"))), 2, "the list names no videos"
    ),
    "inference narrow features": Case(
        "inference",
        lambda e: e.infer(
            "--features_video",
            str(e.npy("v.npy", np.zeros((40, 256), np.float32))),
            "--features_audio",
            str(e.npy("a.npy", np.zeros((40, 256), np.float32))),
        ),
        2,
        "256 wide but the model expects 512",
    ),
    "inference integer features": Case(
        "inference",
        lambda e: e.infer(*e.features(), "--features_video", str(e.npy("int.npy", np.zeros((40, D), np.int32)))),
        2,
        "expected float features",
    ),
    "inference zero-length video": Case(
        "inference", lambda e: e.infer("--video", str(e.file("z.mp4", ""))), 2, "zero-length video"
    ),
    "inference stride 0": Case(
        "inference", lambda e: e.infer(*e.features(), "--stride", "0"), 2, "--stride must be >= 1"
    ),
    "inference threshold flag 1.5": Case(
        "inference", lambda e: e.infer(*e.features(), "--threshold", "1.5"), 2, "--threshold must be in [0, 1]"
    ),
    "inference out is a file": Case(
        "inference",
        lambda e: [*e.infer(*e.features()), "--out", str(e.file("o", "x"))],
        2,
        "exists and is not a folder",
    ),
    "inference decoder config unknown key": Case(
        "inference", lambda e: e.infer(*e.features(), *e.decoder({"max_total": 5})), 2, "unknown key"
    ),
    # a folder in the way, a full disk
    "inference spans.json is a folder": Case(
        "inference", lambda e: e.infer(*e.features(), *e.folder("out/spans.json")), 2, "spans.json: is a folder"
    ),
    "evaluate --out names a folder": Case(
        "evaluate",
        lambda e: e.evaluate(None, None, None, "--out", str(e.tmp), "--plot", str(e.tmp / "plot.png")),
        2,
        "is a folder",
    ),
    # stale files of an earlier run, leftovers of a killed one
    "no spans: earlier reel removed": Case(
        "inference",
        lambda e: e.infer(
            *e.features(), "--threshold", "1", *e.earlier_run("highlights.mp4", "highlights.srt", "spans.json")
        ),
        0,
        "0 highlights",
        _reel_removed,
    ),
    "killed run's temp files swept": Case(
        "inference", lambda e: e.infer(*_killed_run_leftovers(e)), 0, "left by an interrupted run", _swept
    ),
    # features of two different inputs
    "video 5 rows, audio 342": Case("inference", lambda e: e.infer(*e.features(5, 342)), 2, "has 5 rows (2.5 s) but"),
    "a gap of 2 tokens is truncated": Case(
        "inference", lambda e: e.infer(*e.features(40, 42)), 0, "scoring the first 40"
    ),
    # labels outside their half, unknown labels, half 3, a class map label no game has
    "inference: label past the half's end not a true event": Case(
        "inference",
        lambda e: e.infer("--game_dir", str(e.game(INTERVAL_LABELS))),
        0,
        "outside their half: Goal at 1 - 95:00 (half 1 has 65 s), Goal at 2 - -00:05",
        _covered("of 1 true events covered"),
    ),
    "training: label past the half's end is no event of the last window": Case(
        "train",
        lambda e: e.train(
            [ann("1 - 00:15", "Goal"), ann("1 - 95:00", "Goal"), ann("2 - 00:05", "Goal", -5000)],
            *_goal_map(e),
            "--event_time",
            "position",  # the negative position is the point (by gameTime the last event is at 5 s)
        ),
        0,
        "Labels-v2.json: ignored 2 of 3 events: outside their half: Goal at 1 - 95:00",
        _cache_positives("goal", 1),
    ),
    "training: a class without positive window stops before the first epoch": Case(
        "train",
        lambda e: e.train([ann("1 - 00:15", "Goal")]),
        2,
        "classes card, subs have no positive training window (label files Labels-v2.json; class map vd_v2",
    ),
    "training: a gameTime past :59 (read as 01:39 before) is refused naming the file": Case(
        "train",
        lambda e: e.train([ann("1 - 00:15", "Goal"), ann("1 - 00:99", "Goal")], *_goal_map(e)),
        2,
        "Labels-v2.json: annotation 1 has gameTime '1 - 00:99': seconds must be 00 to 59",
    ),
    "training: unknown label and half 3 reported once": Case(
        "train",
        lambda e: e.train(ODD_LABELS, *_goal_map(e)),
        0,
        "ignored 3 of 4 events: half 3 x1; unknown label 'Alien invasion' x2",
    ),
    "training: class map label no game has": Case(
        "train",
        lambda e: e.train(
            [*ODD_LABELS[:1], ann("1 - 00:40", "Yellow card")],
            "--class_map",
            str(e.file("m.json", json.dumps(GOALL_MAP))),
        ),
        0,
        "label(s) 'Goall' appear in no game",
    ),
    "evaluate: unknown label and half 3 in the ground truth": Case(
        "evaluate", lambda e: e.evaluate(None, ODD_LABELS), 0, "ignored 3 of 4 events"
    ),
    # decoder settings that named nothing or were out of range
    "decoder background names no class": Case(
        "inference",
        lambda e: e.infer(*e.features(), *e.decoder({"background": "bg"})),
        2,
        "background 'bg' is not a class of the model",
    ),
    "decoder threshold 1.5": Case(
        "inference",
        lambda e: e.infer(*e.features(), *e.decoder({"default": {"threshold": 1.5}})),
        2,
        "threshold is a fraction in [0, 1], got 1.5",
    ),
    "decoder rule for an unknown class": Case(
        "inference",
        lambda e: e.infer(*e.features(), *e.decoder({"rules": {"Goall": {"threshold": 0.3}}})),
        2,
        "rules for ['Goall'], which are not classes",
    ),
    "inference --nms_window -5": Case(
        "inference",
        lambda e: e.infer(*e.features(), "--nms_window", "-5"),
        2,
        "--nms_window must be a number of seconds >= 0",
    ),
    "spotting --nms_window -5": Case(
        "spot",
        lambda e: ["--testing", str(e.npy("l.npy", np.array(["game"]))), "--model", str(e.model), "--nms_window", "-5"],
        2,
        "--nms_window must be",
    ),
    # NaN in the features
    "NaN in inference features": Case(
        "inference",
        lambda e: e.infer(
            *e.features(),
            "--features_video",
            str(e.npy("nan.npy", np.where(np.arange(40)[:, None] == 7, np.nan, np.ones((40, D))).astype(np.float32))),
        ),
        2,
        "nan.npy: NaN or infinite value at row 7",
    ),
    # a text file named .npy, a list that holds no paths
    "text file named .npy as features": Case(
        "inference",
        lambda e: e.infer(*e.features(), "--features_video", str(_text_npy(e))),
        2,
        "not a .npy array file (it is text",
    ),
    "game list of ints": Case(
        "evaluate", lambda e: e.evaluate(None, None, e.npy("l.npy", np.arange(3))), 2, "not a list of game paths"
    ),
    "game list 2-D": Case(
        "evaluate",
        lambda e: e.evaluate(None, None, e.npy("l.npy", np.array([["game"]]))),
        2,
        "not a list of game paths",
    ),
    "game list: text named .npy": Case(
        "train",
        lambda e: ["--architecture", "concat", "--training", str(_text_npy(e)), "--validation", "v", "--testing", "t"],
        2,
        "not a .npy array file (it is text",
    ),
    # predictions evaluate.py used to score
    "prediction of half 9": Case(
        "evaluate",
        lambda e: e.evaluate([{"label": "Goal", "half": "9", "position": "1000", "confidence": "0.5"}]),
        2,
        "prediction 0 has half '9'",
    ),
    "prediction confidence NaN": Case(
        "evaluate",
        lambda e: e.evaluate([{"label": "Goal", "half": "1", "position": "1000", "confidence": "nan"}]),
        2,
        "confidence 'nan'",
    ),
    "prediction confidence 7.5": Case(
        "evaluate",
        lambda e: e.evaluate([{"label": "Goal", "half": "1", "position": "1000", "confidence": 7.5}]),
        2,
        "confidence 7.5",
    ),
    "prediction of an unknown label": Case(
        "evaluate",
        lambda e: e.evaluate([{"label": "Goall", "half": "1", "position": "1000", "confidence": 0.5}]),
        2,
        "unknown label 'Goall'",
    ),
    # extraction inputs that failed only after the work (or with a traceback)
    "extract: a PCA of 100-d features": Case(
        "extract",
        lambda e: e.extract(None, None, "--pca", str(_narrow_pca(e))),
        2,
        "narrow.npz: a PCA of 100-d features",
    ),
    "convert_pca: a pickle holding a dict": Case(
        "extract",
        lambda e: [
            "convert_pca",
            "--average",
            str(_pickle(e, "average.pkl", np.zeros(2048))),
            "--pca",
            str(_pickle(e, "pca.pkl", {"components_": 1})),
            "--allow_pickle",
            "--out",
            str(e.out / "pca.npz"),
        ],
        2,
        "pca.pkl: not a scikit-learn PCA",
    ),
    "convert_pca: an average of text": Case(
        "extract",
        lambda e: [
            "convert_pca",
            "--average",
            str(_pickle(e, "average.pkl", "text")),
            "--pca",
            str(_pickle(e, "pca.pkl", {})),
            "--allow_pickle",
            "--out",
            str(e.out / "pca.npz"),
        ],
        2,
        "average.pkl: the average feature is not an array of numbers",
    ),
    "extract --out naming a file": Case(
        "extract",
        lambda e: e.extract(None, e.file("taken", "")),
        2,
        "taken: is a file, not a folder (--out names the output folder)",
    ),
    # evaluate.py, training, spotting, extraction: errors that already worked
    "evaluate malformed predictions": Case(
        "evaluate",
        lambda e: e.evaluate([{"label": "Goal", "half": "1", "position": "abc", "confidence": 0.5}]),
        2,
        "prediction 0 is malformed",
    ),
    "evaluate missing predictions folder": Case(
        "evaluate",
        lambda e: ["--labels", str(e.tmp), "--predictions", str(e.tmp / "nope"), "--game_list", "x"],
        2,
        "--predictions folder not found",
    ),
    "evaluate unknown class map": Case(
        "evaluate", lambda e: e.evaluate(None, None, None, "--class_map", "v9"), 2, "not a class map file"
    ),
    "train missing game list": Case(
        "train",
        lambda e: [
            "--architecture",
            "concat",
            "--training",
            str(e.tmp / "nope.npy"),
            "--validation",
            "v",
            "--testing",
            "t",
        ],
        2,
        "nope.npy: game list not found",
    ),
    "train NaN features": Case(
        "train",
        lambda e: [*e.train([]), *e.infinite("data/game/1_VGGish.npy")],
        2,
        "1_VGGish.npy: NaN or infinite value at row 0",
    ),
    "train bad mode": Case("train", lambda e: ["--mode", "dance"], 2, "unknown --mode 'dance'"),
    "spot missing model": Case(
        "spot",
        lambda e: ["--testing", str(e.npy("l.npy", np.array(["game"]))), "--model", str(e.tmp / "m.keras")],
        2,
        "m.keras: no such model file",
    ),
    "extract missing video": Case(
        "extract",
        lambda e: e.extract(e.tmp / "x.mp4"),
        2,
        "x.mp4: no such file",
    ),
    # inputs are never outputs: an input in --out under an output's name is refused before any work
    "input video is out/highlights.mp4, --no_reel": Case(
        "inference",
        lambda e: e.infer("--video", str(e.inside_out("highlights.mp4")), *e.features(16, 16), "--no_reel"),
        2,
        "highlights.mp4: an input of this run is also its output highlights.mp4",
    ),
    "input video is out/highlights.mp4, reel cut": Case(
        "inference",
        lambda e: e.infer("--video", str(e.inside_out("highlights.mp4")), *e.features(16, 16)),
        2,
        "is also its output highlights.mp4",
    ),
    "input video linked as out/highlights.mp4": Case(
        "inference",
        lambda e: e.infer("--video", str(e.inside_out("highlights.mp4", link="sym").resolve()), *e.features(16, 16)),
        2,
        "is also its output highlights.mp4",
    ),
    "input video hard-linked as out/highlights.srt": Case(
        "inference",
        lambda e: e.infer("--video", str(e.inside_out("highlights.srt", link="hard")), *e.features(16, 16)),
        2,
        "is also its output highlights.srt",
    ),
    "input features are out/spans.json": Case(
        "inference",
        lambda e: e.infer(
            "--features_video",
            str(e.inside_out("spans.json", e.npy("v.npy", np.zeros((16, D), np.float32)))),
            "--features_audio",
            str(e.npy("a.npy", np.zeros((16, D), np.float32))),
        ),
        2,
        "spans.json: an input of this run is also its output spans.json",
    ),
    "model is out/report.html": Case(
        "inference",
        lambda e: ["--model", str(e.inside_out("report.html", e.model)), "--out", str(e.out), *e.features()],
        2,
        "report.html: an input of this run is also its output report.html",
    ),
    "pca is out/timeline.png": Case(
        "inference",
        lambda e: e.infer("--video", str(e.video), "--weights", "random", "--pca", str(_pca_in_out(e))),
        2,
        "timeline.png: an input of this run is also its output timeline.png",
    ),
    "--out is the features' folder: outputs beside them, inputs untouched": Case(
        "inference",
        lambda e: ["--model", str(e.model), "--out", str(e.tmp), "--quiet", *e.features()],
        0,
        "highlights",
        lambda e, err: np.load(e.tmp / "v.npy").shape == (40, D) or pytest.fail("features changed"),
    ),
    "user's highlights.mp4 in --out, no manifest: refused, kept": Case(
        "inference",
        lambda e: e.infer(*e.features(), *e.user_files("highlights.mp4", "highlights.srt")),
        2,
        "highlights.mp4, highlights.srt were not written by this project (or changed since), so this run would "
        "replace them: choose another --out, or add --keep_old",
        lambda e, err: (e.out / "highlights.mp4").read_bytes() == b"the user's highlights.mp4" or pytest.fail(),
    ),
    "user's report.html in --out, --keep_old: kept as report.old-1.html": Case(
        "inference",
        lambda e: e.infer(*e.features(), *e.user_files("report.html"), "--keep_old"),
        0,
        "kept the earlier files as report.old-1.html",
        lambda e, err: (e.out / "report.old-1.html").read_bytes() == b"the user's report.html" or pytest.fail(),
    ),
    "user's spans.json edited after the run wrote it: refused": Case(
        "inference",
        lambda e: e.infer(*e.features(), *e.earlier_run("spans.json"), *e.user_files("spans.json")),
        2,
        "spans.json was not written by this project (or changed since)",
    ),
    "inference: an earlier version's .outputs.json (names only), its files unchanged: replaced": Case(
        "inference",
        lambda e: e.infer(*e.features(), *e.legacy_record("spans.json", "highlights.mp4")),
        0,
        "removed highlights.mp4 of an earlier run",
        lambda e, err: "sha256" in json.loads((e.out / MANIFEST).read_text())["files"]["spans.json"] or pytest.fail(),
    ),
    "inference: an earlier version's .outputs.json, its files changed since: refused": Case(
        "inference",
        lambda e: e.infer(*e.features(), *e.legacy_record("spans.json"), *e.changed_since_record()),
        2,
        "spans.json was not written by this project (or changed since), so this run would replace it: choose "
        "another --out, or add --keep_old",
    ),
    "train: the user's concat_best.keras in --tflog, --overwrite: refused before any work, kept": Case(
        "train",
        lambda e: e.train(
            [ann("1 - 00:10", "Goal")], "--overwrite", *_goal_map(e), *e.tflog_files("concat_best.keras")
        ),
        2,
        "concat_best.keras was not written by this project (or changed since), so this run would replace it: choose "
        "another --tflog or --outputPrefix, or add --keep_old",
    ),
    "train: the user's concat_summary.json in --tflog, --keep_old: kept as concat_summary.old-1.json": Case(
        "train",
        lambda e: e.train(
            [ann("1 - 00:10", "Goal")], "--keep_old", *_goal_map(e), *e.tflog_files("concat_summary.json")
        ),
        0,
        "--keep_old: kept concat_summary.json as concat_summary.old-1.json",
        lambda e, err: (
            (e.tmp / "Model" / "concat_summary.old-1.json").read_bytes() == b"the user's concat_summary.json"
            or pytest.fail()
        ),
    ),
    "trainset: the user's class_map.json in --out: refused, kept": Case(
        "trainset",
        lambda e: ["--out", str(e.out), *e.reviewed(), *e.user_files("class_map.json")],
        2,
        "class_map.json was not written by this project (or changed since), so this run would replace it: choose "
        "another --out, or add --keep_old",
    ),
    "trainset: the user's class_map.json in --out, --keep_old: kept as class_map.old-1.json": Case(
        "trainset",
        lambda e: ["--out", str(e.out), *e.reviewed(), *e.user_files("class_map.json"), "--keep_old"],
        0,
        "kept the earlier files as class_map.old-1.json",
        lambda e, err: (e.out / "class_map.old-1.json").read_bytes() == b"the user's class_map.json" or pytest.fail(),
    ),
    "extract: the user's 1_VGGish.npy in --out (no extraction.json lists it): refused, kept": Case(
        "extract",
        lambda e: e.extract(None, None, *e.user_files("1_VGGish.npy")),
        2,
        "1_VGGish.npy is not recorded in extraction.json as written by an extraction, so this run would replace it: "
        "choose another --out, or --overwrite",
    ),
    "live: the user's report.html in --out: refused, kept": Case(
        "inference",
        lambda e: e.live(*e.user_files("report.html")),
        2,
        "report.html was not written by this project (or changed since)",
    ),
    "live: a folder with an unfinished live run: refused with the command that finishes it": Case(
        "inference",
        lambda e: e.live(*e.user_files("recording.m3u8")),
        2,
        "holds an earlier live run (recording.m3u8); give another --out; its end-of-run outputs: `",
    ),
    "evaluate --framerate 0": Case(
        "evaluate", lambda e: e.evaluate(None, None, None, "--framerate", "0"), 2, "--framerate must be > 0"
    ),
    "evaluate --framerate nan": Case(
        "evaluate", lambda e: e.evaluate(None, None, None, "--framerate", "nan"), 2, "--framerate: must be a finite"
    ),
    "train --min_lr -1": Case("train", lambda e: ["--mode", "train", "--min_lr=-1"], 2, "--min_lr must be >= 0"),
    "inference empty feature files: the file named": Case(
        "inference", lambda e: e.infer(*e.features(0, 0)), 2, "v.npy: an empty feature file (shape (0, 512))"
    ),
    "inference --intro_sec nan": Case(
        "inference", lambda e: e.infer(*e.features(), "--intro_sec", "nan"), 2, "--intro_sec: must be a finite number"
    ),
    "inference --outro_sec inf": Case(
        "inference", lambda e: e.infer(*e.features(), "--outro_sec", "inf"), 2, "--outro_sec: must be a finite number"
    ),
    "inference --max_total_sec -inf": Case(
        "inference",
        lambda e: e.infer(*e.features(), "--max_total_sec=-inf"),
        2,
        "--max_total_sec: must be a finite number",
    ),
    "train --LR nan": Case(
        "train",
        lambda e: ["--mode", "train", "--LR", "nan"],
        2,
        "--LR: must be a finite number",
    ),
    "extract: the video is out/1_VGGish.npy": Case(
        "extract",
        lambda e: e.extract(e.inside_out("1_VGGish.npy")),
        2,
        "1_VGGish.npy: an input of this run is also its output 1_VGGish.npy",
    ),
    "extract: the video is out/extraction.json, --overwrite": Case(
        "extract",
        lambda e: e.extract(e.inside_out("extraction.json"), None, "--overwrite"),
        2,
        "extraction.json: an input of this run is also its output extraction.json",
    ),
    "extract: the PCA is out/1_ResNET_TF2_PCA512.npy": Case(
        "extract",
        lambda e: e.extract(None, None, "--pca", str(_pca_in_out(e, "1_ResNET_TF2_PCA512.npy"))),
        2,
        "1_ResNET_TF2_PCA512.npy: an input of this run is also its output 1_ResNET_TF2_PCA512.npy",
    ),
    "extract --tree: the PCA is a game's extraction.json": Case(
        "extract",
        lambda e: (
            ["--tree", str(_tree_with_pca(e, "extraction.json")), "--weights", "random"]
            + ["--pca", str(e.tmp / "tree" / "game" / "extraction.json")]
        ),
        2,
        "extraction.json: an input of this run is also its output extraction.json",
    ),
    "fit_pca: --out is its input": Case(
        "extract",
        lambda e: (
            ["fit_pca", str(_raw_with(e, 0.0, 0)), "--out", str(e.tmp / "raw" / "1_ResNET_TF2.npy")] + ["--dim", "4"]
        ),
        2,
        "1_ResNET_TF2.npy: an input of this run is also its output 1_ResNET_TF2.npy",
    ),
    "convert_pca: --out is its --average": Case(
        "extract",
        lambda e: (
            ["convert_pca", "--average", str(_pickle(e, "avg.pkl", np.zeros(2048))), "--pca"]
            + [str(_pickle(e, "pca.pkl", {})), "--out", str(e.tmp / "avg.pkl"), "--allow_pickle"]
        ),
        2,
        "avg.pkl: an input of this run is also its output avg.pkl",
    ),
    "evaluate: --out is a game's results_spotting.json": Case(
        "evaluate",
        lambda e: [*e.evaluate(), "--out", str(e.tmp / "preds" / "game" / "results_spotting.json")],
        2,
        "results_spotting.json: an input of this run is also its output results_spotting.json",
    ),
    "evaluate: --out is a game's Labels-v2.json": Case(
        "evaluate",
        lambda e: [*e.evaluate(), "--out", str(e.tmp / "data" / "game" / "Labels-v2.json")],
        2,
        "Labels-v2.json: an input of this run is also its output Labels-v2.json",
    ),
    "evaluate: --plot is the game list": Case(
        "evaluate",
        lambda e: [*e.evaluate(), "--plot", str(e.tmp / "list.txt")],
        2,
        "list.txt: an input of this run is also its output list.txt",
    ),
    "--out is the game folder: outputs beside its features and labels, inputs untouched": Case(
        "inference",
        lambda e: (
            ["--model", str(e.model), "--out", str(e.game([ann("1 - 00:10", "Goal")])), "--quiet"]
            + ["--game_dir", str(e.tmp / "data" / "game")]
        ),
        0,
        "highlights",
        lambda e, err: _unchanged_game(e) or pytest.fail("the game's files changed"),
    ),
    "--video names a folder": Case(
        "inference", lambda e: e.infer("--video", str(e.tmp)), 2, "is a folder, expected a video file"
    ),
    # numbers are finite where they enter: raw features, PCA files, model weights
    "fit_pca: a NaN in the raw features": Case(
        "extract",
        lambda e: ["fit_pca", str(_raw_with(e, np.nan, 7)), "--out", str(e.out / "pca.npz"), "--dim", "4"],
        2,
        "1_ResNET_TF2.npy: NaN or infinite value at row 7",
    ),
    "fit_pca: an infinity in a folder's raw features": Case(
        "extract",
        lambda e: ["fit_pca", str(_raw_with(e, -np.inf, 3).parent), "--out", str(e.out / "pca.npz"), "--dim", "4"],
        2,
        "NaN or infinite value at row 3",
    ),
    "extract: a PCA whose components are NaN": Case(
        "extract",
        lambda e: e.extract(None, None, "--pca", str(_nan_pca(e))),
        2,
        "nan.npz: components: NaN or infinite value at row 0",
    ),
    "inference: a PCA whose mean is infinite": Case(
        "inference",
        lambda e: e.infer("--video", str(e.video), "--weights", "random", "--pca", str(_nan_pca(e, "mean"))),
        2,
        "nan.npz: mean: NaN or infinite value at row 0",
    ),
    "inference: a model with NaN weights": Case(
        "inference",
        lambda e: ["--model", str(_nan_model(e)), "--out", str(e.out), "--quiet", *e.features()],
        2,
        "nan.keras: NaN or infinite value in weights",
    ),
    # a model file is untrusted: every member it is read from has a cap, every spec size a range (issue 30, 5 and 10)
    "inference: a model whose config.json is padded past its cap": Case(
        "inference",
        lambda e: ["--model", str(_respec(e, "padded.keras", pad_config=5 << 20)), "--out", str(e.out), *e.features()],
        2,
        "padded.keras: not a Keras model (config.json is 5,24",
    ),
    "inference: a spec with a window of 1e9 s": Case(
        "inference",
        lambda e: [
            "--model",
            str(_respec(e, "long.keras", lambda s: s.update(window_seconds=1e9))),
            "--out",
            str(e.out),
            *e.features(),
        ],
        2,
        "long.keras: window_seconds must be in [0, 3600], got 1e+09",
    ),
    "inference: a spec with 0 clusters": Case(
        "inference",
        lambda e: [
            "--model",
            str(_respec(e, "k0.keras", lambda s: s.update(vlad_k=0))),
            "--out",
            str(e.out),
            *e.features(),
        ],
        2,
        "k0.keras: vlad_k must be in [1, 8192], got 0",
    ),
    "inference: a spec naming 4 classes over weights of 5": Case(
        "inference",
        lambda e: ["--model", str(_respec(e, "four.keras", _four_classes)), "--out", str(e.out), *e.features()],
        2,
        "four.keras: the spec in config.json names 4 classes but the weights of layer 'logits' give 5 outputs",
    ),
    "inference: a spec with a field of a newer version": Case(
        "inference",
        lambda e: [
            "--model",
            str(_respec(e, "newer.keras", lambda s: s.update(frobnication=1))),
            "--out",
            str(e.out),
            *e.features(),
        ],
        2,
        "newer.keras: unknown spec fields frobnication",
    ),
    "inference: a model with a Lambda layer": Case(
        "inference",
        lambda e: ["--model", str(_lambda_model(e)), "--out", str(e.out), "--quiet", *e.features()],
        2,
        "lambda.keras: a Keras model with a Lambda layer (Python code in the file), which is never loaded",
    ),
    "evaluate: --predictions one level too high, allowed": Case(
        "evaluate",
        lambda e: [*_with(e.evaluate(), "--predictions", str(e.tmp)), "--allow_missing"],
        0,
        "1 of 1 games have no results_spotting.json",
    ),
    "evaluate: --predictions one level too high": Case(
        "evaluate",
        lambda e: _with(e.evaluate(), "--predictions", str(e.tmp)),
        2,
        "1 of 1 games of the list have no predictions",
    ),
    "spot: a game list naming ../game (its outputs would leave --output)": Case(
        "spot",
        lambda e: [
            "--testing",
            str(_nested_list(e, "../game")),
            "--model",
            str(e.model),
            "--output",
            str(e.out),
            "--quiet",
        ],
        2,
        "game '",
    ),
    "spot: a game list naming an absolute folder": Case(
        "spot",
        lambda e: ["--testing", str(_nested_list(e, str(e.tmp / "data" / "game"))), "--model", str(e.model)],
        2,
        "is not a folder below",
    ),
    "train: --outputPrefix ../x": Case(
        "train", lambda e: [*e.train([]), "--outputPrefix", "../x"], 2, "--outputPrefix '../x': not a plain name"
    ),
    "extract: --prefix ../x": Case(
        "extract",
        lambda e: e.extract(None, None, "--prefix", "../x"),
        2,
        "--prefix '../x': not a plain name",
    ),
    # weak cases: each now one line and the right exit code
    "train: a game listed twice": Case(
        "train",
        lambda e: _with(e.train([]), "--training", str(e.npy("twice.npy", np.array(["game", "game"])))),
        2,
        "twice.npy: game",
    ),
    "train: an unknown architecture, before any cache": Case(
        "train", lambda e: _with(e.train([]), "--architecture", "nope"), 2, "unknown architecture 'nope'"
    ),
    "train: the training list also validates and tests": Case(
        "train",
        lambda e: e.train([ann("1 - 00:15", "Goal")], *_goal_map(e)),
        0,
        "1 of 1 --testing games are also --training games",
    ),
    "inference: game_dir half with 20 audio rows against 130 video rows": Case(
        "inference",
        lambda e: e.infer("--game_dir", str(_short_audio(e, 20))),
        2,
        "2_VGGish.npy has 20 (10.0 s): features of different videos?",
    ),
    "extract --video into a folder holding another video's features": Case(
        "extract",
        lambda e: e.extract(None, _other_video_features(e)),
        2,
        "holds the features 1_* of another video (/elsewhere/other.mp4); --overwrite replaces them",
    ),
    "extract no videos in tree": Case(
        "extract", lambda e: ["--tree", str(e.tmp), "--weights", "random"], 2, "no SoccerNet videos found"
    ),
}


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` with a digest of its content."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def sigterm_restored():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if CASES[n].cli == "train" else n for n in CASES]
)
def test_bad_input(name, model, video, tmp_path, capsys, caplog, sigterm_restored):
    case = CASES[name]
    env = Env(tmp_path, model, video)
    argv = case.argv(env)
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(CLIS[case.cli], argv)
    captured = capsys.readouterr()
    err = captured.err + caplog.text
    assert exit_info.value.code == case.code, err[-2000:]
    assert case.message in err + captured.out, err[-2000:]
    if case.code == 2:
        errors = [ln for ln in captured.err.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1 and case.message in errors[0] and "Traceback" not in captured.err, captured.err
        assert _snapshot(tmp_path) == before, "an error must leave the disk as it was"
    else:
        case.after and case.after(env, err + captured.out)
    leftovers = [str(p) for p in tmp_path.rglob(".*") if p.name not in (".keep.me", MANIFEST)]
    assert not leftovers, leftovers


def test_the_bash_script_quick_errors(tmp_path):
    """run_inference.sh: bad options and inputs are one line, exit 2, before Python starts."""
    for args, message in (
        (["--bogus"], "unknown option --bogus"),
        ([str(tmp_path / "x.mp4")], "x.mp4: no such file"),
        (["--model"], "--model needs a value"),
        (["--out", "--model", "m.keras"], "--out needs a value"),
    ):
        proc = subprocess.run(
            ["bash", str(ROOT / "run_inference.sh"), *args],
            capture_output=True,
            text=True,
            env={**os.environ, "MODEL": "m.keras", "VENV": sys.prefix},
            timeout=30,
        )
        assert proc.returncode == 2 and proc.stderr.strip() == f"error: {proc.stderr.strip()[7:]}"
        assert message in proc.stderr
    assert not list(tmp_path.iterdir())


# ---- a full disk -----------------------------------------------------------------------------------------------


def test_full_disk_during_extraction_is_one_line_with_the_room_needed(video, tmp_path, capsys, monkeypatch):
    """issue 30.6: numpy writes a .npy to a real file with `tofile`, whose OSError on a full disk has no errno
    ("61440 requested and 14304 written"): on 643e491 it came out as a traceback from common/atomic.py. Now it
    is one line naming the file, the room on its disk and what the file needs. (The disk: a 16 kB tmpfs when
    this runs as root, else numpy's short write injected, on a disk shown as full.)"""
    out = tmp_path / "disk"
    out.mkdir()
    mounted = (
        os.geteuid() == 0
        and not subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(out)], capture_output=True
        ).returncode
    )
    if not mounted:
        import shutil

        from soccer_highlights.common import atomic

        def short_write(fh, array, *args, **kwargs):
            fh.write(b"\x93NUMPY")
            raise OSError("61440 requested and 14304 written")

        monkeypatch.setattr(atomic.np, "save", short_write)
        monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**6, 10**6 - 4096, 4096))
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(extract_cli.main, ["--video", str(video), "--out", str(out / "f"), "--weights", "random"])
        err = capsys.readouterr().err
        errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
        assert exit_info.value.code == 2 and len(errors) == 1 and "Traceback" not in err, err[-2000:]
        assert ".npy: cannot write (No space left on device): " in errors[0], errors
        assert "free on its disk, the file needs " in errors[0], errors
        assert not [p for p in out.rglob(".*")]  # no temporary file left
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(out)], check=True)


def test_full_disk_while_the_timeline_is_written_keeps_the_earlier_run(model, video, tmp_path, capsys):
    """A full disk while the outputs are written: the earlier run's four files stay as they were, nothing of the new run appears."""
    env = Env(tmp_path, model, video)
    argv = env.infer(*env.features())
    env.earlier_run("spans.json", "results_spotting.json", "timeline.png", "highlights.mp4")
    before = _snapshot(tmp_path)
    with full_disk(env.out, ".png"), pytest.raises(SystemExit) as exit_info:
        run_cli(inference.main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "timeline.png: cannot write (No space left on device)" in err
    assert _snapshot(tmp_path) == before


def test_full_disk_during_training_is_one_line(model, video, tmp_path, capsys):
    """A full disk during training: the best model cannot be saved -> one line naming it, no temporary file left."""
    env = Env(tmp_path, model, video)
    argv = env.train([ann("1 - 00:10", "Goal", 10_000)], *_goal_map(env))
    with full_disk(tmp_path / "Model", ".keras"), pytest.raises(SystemExit) as exit_info:
        run_cli(ClassificationMinuteBased.main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert line.startswith(f"error: {tmp_path / 'Model' / 'concat_best.keras'}: cannot write (No space left on device)")
    assert "free on its disk" in line, line
    assert not [p for p in tmp_path.rglob(".*") if p.name != MANIFEST]  # the record of the claimed folders only
    assert not (tmp_path / "Model" / "concat_best.keras").exists()


# ---- signals ---------------------------------------------------------------------------------------------------


def _demo_data(env: Env) -> Path:
    """What run_inference.sh's demo needs, already made: the match, its game's features, the model."""
    demo = env.tmp / "demo"
    (demo / "game").mkdir(parents=True)
    (demo / "model").mkdir()
    (demo / "match.mp4").write_bytes(env.video.read_bytes())
    (demo / "model" / "demo_best.keras").write_bytes(env.model.read_bytes())
    for name in ("1_ResNET_TF2_PCA512.npy", "1_VGGish.npy"):
        np.save(demo / "game" / name, np.random.default_rng(0).standard_normal((16, D)).astype(np.float32))
    (demo / "game" / "Labels-v2.json").write_text(json.dumps({"annotations": []}))
    return demo


@pytest.mark.slow
@pytest.mark.parametrize("via", ["inference.py", "run_inference.sh"])
def test_sigterm_while_the_reel_is_cut_cleans_up(via, model, video, tmp_path):
    """SIGTERM during the reel -> exit 143, one line, ffmpeg stopped, no temporary files, and
    the earlier run's files untouched. ffmpeg is a wrapper that hangs when asked to cut the reel; the bash
    script is signalled alone (not its process group) and must pass the signal on."""
    import imageio_ffmpeg

    real = os.environ.get("FFMPEG_BINARY") or imageio_ffmpeg.get_ffmpeg_exe()
    fake = tmp_path / "ffmpeg"
    fake.write_text(
        f'#!/bin/sh\ncase "$*" in *-progress*) echo $$ > "{tmp_path}/cutting"; exec sleep 60;; esac\n'
        f'exec "{real}" "$@"\n'
    )
    fake.chmod(0o755)
    env = Env(tmp_path, model, video)
    env.earlier_run("spans.json", "highlights.mp4")
    before = _snapshot(env.out)
    if via == "inference.py":
        cmd = [
            sys.executable,
            str(ROOT / "inference.py"),
            *env.infer("--video", str(video), *env.features(16, 16), "--threshold", "0.0"),
        ]
    else:
        cmd = ["bash", str(ROOT / "run_inference.sh")]
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={
            **os.environ,
            "FFMPEG_BINARY": str(fake),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "VENV": sys.prefix,
            "DEMO_DATA": str(_demo_data(env)),
            "OUT": str(env.out),
            "DEMO_THRESHOLD": "0.0",
        },
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while not (tmp_path / "cutting").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert (tmp_path / "cutting").exists(), proc.stderr.read() if proc.poll() is not None else "reel never started"
        assert any(env.out.glob(".partial.*/.reel.*")), "the reel's work folder is where it should be"
        proc.send_signal(signal.SIGTERM)  # to the process alone, not its group
        _, err = proc.communicate(timeout=30)
    finally:  # whatever happened, nothing of the test keeps running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143 and "error: terminated (SIGTERM)" in err.strip().splitlines()[-1], err[-2000:]
    assert "Traceback" not in err
    assert _snapshot(env.out) == before
    ffmpeg_pid = int((tmp_path / "cutting").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(ffmpeg_pid, 0)


# ---- one writer per output ------------------------------------------------------------------------------------


def test_a_second_training_into_the_same_outputs_is_refused_while_the_first_runs(model, video, tmp_path, capsys):
    """Two trainings started at once into one --tflog both exited 0, their TensorBoard events mixed. The first
    is stood in for by a process holding the lock the way a training does; once it ends, training goes ahead."""
    env = Env(tmp_path, model, video)
    argv = env.train([ann("1 - 00:10", "Goal", 10_000)], *_goal_map(env))
    lock = tmp_path / "Model" / ".concat.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from soccer_highlights.common.lock import Lock; Lock({str(lock)!r}, 'x'); print('held', flush=True); "
         "import time; time.sleep(120)"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as exit_info:
            run_cli(ClassificationMinuteBased.main, argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, err[-2000:]
        assert f"a training writes concat_* here (--tflog, --outputPrefix) by another process (id {holder.pid})" in err
        assert not (tmp_path / "Model" / "concat_best.keras").exists()
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(ClassificationMinuteBased.main, argv)
    assert exit_info.value.code == 0 and (tmp_path / "Model" / "concat_best.keras").is_file()
    assert not lock.exists()
