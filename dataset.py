"""SoccerNet-layout data: game lists, label files, class maps, feature files, windows, window cache.

The training path is: game list -> per-half features + labels -> non-overlapping windows with
multi-hot labels (docs/DESIGN.md, "Tokens and time") -> a window cache on disk (`--formatdataset 1`) -> batches streamed from
memory-mapped cache files (`--formatdataset 0` reuses the cache). Nothing holds more than one batch
(or one shuffle group) of windows in memory, so memory does not grow with the number of games.
Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import struct
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_path, read_json, write_json
from common.constants import BACKGROUND, FEATURE_DIM, LABEL_FILES, TOKENS_PER_SECOND
from common.errors import UserError
from common.features import folder_recipe
from common.inputs import load_features, open_npy

log = logging.getLogger(__name__)

SOCCERNET_V2_LABELS = (
    "Penalty",
    "Kick-off",
    "Goal",
    "Substitution",
    "Offside",
    "Shots on target",
    "Shots off target",
    "Clearance",
    "Ball out of play",
    "Throw-in",
    "Foul",
    "Indirect free-kick",
    "Direct free-kick",
    "Corner",
    "Yellow card",
    "Red card",
    "Yellow->red card",
)
SOCCERNET_SPLITS = ("train", "valid", "test", "challenge")
CACHE_FORMAT = 1

# Class maps are data: {class: [source label names]}; the first label of a class is the one written
# back into results_spotting.json.
_BUILTIN_MAPS: dict[str, dict[str, list[str]]] = {
    "highlight": {
        "kick": ["Penalty", "Corner", "Direct free-kick", "Indirect free-kick"],
        "subs": ["Substitution"],
        "card": ["Yellow card", "Red card", "Yellow->red card"],
        "goal": ["Goal", "Shots on target"],
    },
    "v1": {
        "card": ["y-card", "r-card", "yr-card"],
        "subs": ["substitution-in", "substitution-out"],
        "goal": ["soccer-ball", "soccer-ball-own"],
    },
    "v2": {name: [name] for name in SOCCERNET_V2_LABELS},
}


# --------------------------------------------------------------------------------------------
# Class maps


@dataclass(frozen=True)
class ClassMap:
    """Classes (index 0 = background) and the SoccerNet label names that map onto them."""

    name: str
    classes: list[str]
    label_to_index: dict[str, int]
    index_to_label: dict[int, str]

    def to_json(self) -> dict[str, Any]:
        labels: dict[str, list[str]] = {c: [] for c in self.classes[1:]}
        for label, idx in self.label_to_index.items():
            labels[self.classes[idx]].append(label)
        return {"name": self.name, "classes": list(self.classes), "labels": labels}


def _class_map_from_groups(name: str, groups: dict[str, list[str]], where: str) -> ClassMap:
    classes = [BACKGROUND]
    label_to_index: dict[str, int] = {}
    index_to_label: dict[int, str] = {}
    for cls, labels in groups.items():
        if cls == BACKGROUND or cls in classes:
            raise UserError(f"{where}: class {cls!r} is reserved or repeated")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise UserError(f"{where}: class {cls!r} needs a non-empty list of label names")
        classes.append(cls)
        index_to_label[len(classes) - 1] = labels[0]
        for label in labels:
            if label in label_to_index:
                raise UserError(f"{where}: label {label!r} is mapped to two classes")
            label_to_index[label] = len(classes) - 1
    if len(classes) < 2:
        raise UserError(f"{where}: a class map needs at least one class besides background")
    return ClassMap(name, classes, label_to_index, index_to_label)


def load_class_map(spec: str) -> ClassMap:
    """`highlight` | `v1` | `v2` | a JSON file `{"classes": [...], "labels": {class: [labels]}}`."""
    if spec in _BUILTIN_MAPS:
        return _class_map_from_groups(spec, _BUILTIN_MAPS[spec], f"class map {spec}")
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"{spec}: not a class map file (or one of {', '.join(_BUILTIN_MAPS)})")
    data = read_json(path)
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": path.stem}
    return class_map_from_json(data, str(path))


def class_map_from_json(data: Any, where: str) -> ClassMap:
    """A ClassMap from its `to_json()` form (as a model file records it); UserError naming `where` if malformed."""
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, dict):
        raise UserError(f"{where}: a class map needs a 'labels' object {{class: [label names]}}")
    order = data.get("classes") or [BACKGROUND, *labels]
    if order[0] != BACKGROUND or sorted(order[1:]) != sorted(labels):
        raise UserError(f"{where}: 'classes' must be background followed by the keys of 'labels'")
    return _class_map_from_groups(str(data.get("name", "custom")), {c: labels[c] for c in order[1:]}, where)


# --------------------------------------------------------------------------------------------
# Game lists and labels


def read_game_list(list_path: str | Path, dataset_root: str | Path | None = None) -> list[Path]:
    """Game folders of a list: `listgame_*.npy` (or a text file, one game a line), or a SoccerNet
    split name (`train`, `valid`, `test`, `challenge`, needs `dataset_root`). Relative game paths are
    resolved against `dataset_root`, else against the list file's folder."""
    list_path = Path(list_path)
    if not list_path.exists() and str(list_path) in SOCCERNET_SPLITS:
        if dataset_root is None:
            raise UserError(f"{list_path}: a SoccerNet split name needs --dataset_root")
        from SoccerNet.utils import getListGames

        names = list(getListGames(str(list_path)))
    elif not list_path.is_file():
        raise UserError(f"{list_path}: game list not found")
    elif list_path.suffix == ".npy":
        arr = open_npy(list_path, mmap=False)
        if arr.ndim > 1 or arr.dtype.kind not in "US":
            raise UserError(
                f"{list_path}: not a list of game paths (a 1-D array of strings), found {arr.dtype} {list(arr.shape)}"
            )
        names = [str(x) for x in np.atleast_1d(arr).tolist()]
    else:
        try:
            text = list_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{list_path}: not a text list of game paths, one a line ({exc})") from exc
        names = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not names:
        raise UserError(f"{list_path}: the game list is empty")
    base = Path(dataset_root) if dataset_root is not None else list_path.parent
    return [base / name for name in names]


@dataclass(frozen=True)
class Event:
    half: int
    position_ms: int
    label: str


_GAMETIME = re.compile(r"^\s*(\d+)\s*-\s*(\d+):(\d+)\s*$")


def labels_path(game_dir: str | Path) -> Path | None:
    """The label file of a game folder: `Labels-v2.json` (preferred) or `Labels.json`; None without one."""
    game_dir = Path(game_dir)
    return next((game_dir / n for n in LABEL_FILES if (game_dir / n).is_file()), None)


def read_labels(game_dir: str | Path) -> list[Event]:
    """Events of a game from `Labels-v2.json` (preferred) or `Labels.json`; `position` (ms) wins over `gameTime`.
    Every event is returned; `usable_events` says which can be used."""
    game_dir = Path(game_dir)
    path = labels_path(game_dir)
    if path is None:
        raise UserError(f"{game_dir}: no Labels-v2.json or Labels.json")
    data = read_json(path)
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list):
        raise UserError(f"{path}: no 'annotations' list")
    events = []
    for i, ann in enumerate(annotations):
        m = _GAMETIME.match(str(ann.get("gameTime", ""))) if isinstance(ann, dict) else None
        if m is None or "label" not in ann:
            raise UserError(f"{path}: annotation {i} needs 'label' and 'gameTime' like '1 - 13:10'")
        half, minutes, seconds = (int(g) for g in m.groups())
        position = ann.get("position")
        try:
            ms = int(position) if position not in (None, "") else (minutes * 60 + seconds) * 1000
        except (TypeError, ValueError) as exc:
            raise UserError(f"{path}: annotation {i} has a bad position {position!r}") from exc
        events.append(Event(half, ms, str(ann["label"])))
    return events


# Every label name SoccerNet uses (v2 and v1): a label outside these and outside the class map is a typo or
# foreign data, reported; a known label outside the class map is background by design, silently.
KNOWN_LABELS = (
    frozenset(SOCCERNET_V2_LABELS)
    | {label for labels in _BUILTIN_MAPS["v1"].values() for label in labels}
    | {"substitution-out"}
)


def usable_events(
    events: Sequence[Event], source: str | Path, class_map: ClassMap, durations: Mapping[int, float]
) -> list[Event]:
    """The events that can be used: of a half in `durations` (its seconds of features), at a position inside
    that half, of a label the class map or SoccerNet knows. Events of halves 1 and 2 not in `durations` are
    left out silently; the others are dropped with one warning line for `source` saying which and how often
    (an event past the end of its half is no event of the last window, a negative position none of the first)."""
    ignored: Counter[str] = Counter()
    outside: list[str] = []
    keep = []
    for ev in events:
        if ev.half not in (1, 2):
            ignored[f"half {ev.half}"] += 1
        elif ev.half not in durations:
            continue  # a half this run does not look at
        elif ev.label not in class_map.label_to_index and ev.label not in KNOWN_LABELS:
            ignored[f"unknown label {ev.label!r}"] += 1
        elif not 0 <= ev.position_ms <= durations[ev.half] * 1000:
            outside.append(
                f"{ev.label} at {ev.half} - {_clock(ev.position_ms)} (half {ev.half} has {durations[ev.half]:.0f} s)"
            )
        else:
            keep.append(ev)
    report_ignored(source, len(events), ignored, outside)
    return keep


def report_ignored(source: str | Path, total: int, ignored: Mapping[str, int], outside: Sequence[str] = ()) -> None:
    """One warning line for a label file: which events were ignored (`ignored`: reason -> count;
    `outside`: events outside their half, named) out of `total`."""
    parts = [f"{what} x{n}" for what, n in sorted(ignored.items())]
    if outside:
        more = f" and {len(outside) - 4} more" if len(outside) > 4 else ""
        parts.append("outside their half: " + ", ".join(outside[:4]) + more)
    if parts:
        count = sum(ignored.values()) + len(outside)
        log.warning("%s: ignored %d of %d events: %s", source, count, total, "; ".join(parts))


def _clock(ms: int) -> str:
    sign, s = ("-" if ms < 0 else ""), abs(ms) // 1000
    return f"{sign}{s // 60:02d}:{s % 60:02d}"


def warn_unseen_labels(class_map: ClassMap, seen: set[str], where: str) -> None:
    """One warning for the class map's labels that no game of `where` has and that SoccerNet does not
    know either (most likely typos, e.g. 'Goall')."""
    unseen = sorted(label for label in class_map.label_to_index if label not in seen and label not in KNOWN_LABELS)
    if unseen:
        log.warning(
            "class map %s: label(s) %s appear in no game of %s and are no SoccerNet label: a typo?",
            class_map.name,
            ", ".join(map(repr, unseen)),
            where,
        )


# --------------------------------------------------------------------------------------------
# Feature files


def find_feature_file(game_dir: Path, half: int, name: str, pca: bool | None) -> Path:
    """The `<half>_*<name>*.npy` file of a half (SoccerNet's layout, docs/DESIGN.md "Data formats"). `pca` True/False requires/excludes `PCA` in
    the name (None: either); `float16` files are ignored. Among several, the exact `<half>_<name>[_PCA512]`
    name wins, then the TF2 release."""
    prefix = f"{half}_"
    try:
        names = sorted(p.name for p in game_dir.iterdir())
    except OSError as exc:
        raise UserError(f"{game_dir}: cannot list the game folder ({exc.strerror or exc})") from exc
    found = [
        n
        for n in names
        if n.startswith(prefix)
        and n.endswith(".npy")
        and name in n
        and "float16" not in n
        and (pca is None or ("PCA" in n) == pca)
    ]
    if not found:
        what = f"{prefix}*{name}*{'PCA' if pca else ''}*.npy"
        raise UserError(f"{game_dir}: no feature file {what}")
    exact = f"{prefix}{name}{'_PCA512' if pca else ''}.npy"
    if exact in found:
        return game_dir / exact
    tf2 = [n for n in found if "TF2" in n]
    if len(found) > 1 and len(tf2) != 1:
        raise UserError(f"{game_dir}: several feature files match {name!r} ({', '.join(found)}): use a longer name")
    return game_dir / (tf2[0] if len(found) > 1 else found[0])


def load_half(
    game_dir: str | Path,
    half: int,
    features_video: str = "ResNET",
    features_audio: str = "VGGish",
    pca: bool = True,
    feature_dim: int = FEATURE_DIM,
) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped (video [T, D], audio [T, D]) of one half, truncated to the shorter with one warning."""
    game_dir = Path(game_dir)
    vpath = find_feature_file(game_dir, half, features_video, pca)
    apath = find_feature_file(game_dir, half, features_audio, None)
    video, audio = load_features(vpath, feature_dim), load_features(apath, feature_dim)
    if video.shape[0] != audio.shape[0]:
        t = min(video.shape[0], audio.shape[0])
        log.warning(
            "%s half %d: video has %d rows, audio %d: truncating both to %d",
            game_dir,
            half,
            video.shape[0],
            audio.shape[0],
            t,
        )
        video, audio = video[:t], audio[:t]
    return video, audio


# --------------------------------------------------------------------------------------------
# Windows and labels


def window_labels(
    events: Sequence[Event], half: int, n_windows: int, window_seconds: float, class_map: ClassMap
) -> np.ndarray:
    """Multi-hot [n_windows, C]: class c is 1 where an event of c falls (floor(t / W), clamped to the
    last window); background is 1 only where no other class is."""
    labels = np.zeros((n_windows, len(class_map.classes)), dtype=np.uint8)
    for ev in events:
        cls = class_map.label_to_index.get(ev.label, 0)
        if ev.half != half or cls == 0 or n_windows == 0:
            continue
        idx = min(max(int(math.floor(ev.position_ms / 1000.0 / window_seconds)), 0), n_windows - 1)
        labels[idx, cls] = 1
    labels[:, 0] = labels[:, 1:].max(axis=1, initial=0) == 0
    return labels


def window_frames(window_seconds: float, frames_per_second: float) -> int:
    n = window_seconds * frames_per_second
    if n < 1 or abs(n - round(n)) > 1e-6:
        raise UserError(
            f"WindowSize {window_seconds} x featurePerSec {frames_per_second} must be a whole number of frames"
        )
    return int(round(n))


def class_weights(labels: np.ndarray, classes: Sequence[str] | None = None) -> np.ndarray:
    """Inverse class frequency over windows, normalised to sum to 1 (a class never seen counts once)."""
    counts = labels.sum(axis=0).astype(np.float64)
    for c in np.flatnonzero(counts == 0):
        log.warning("class %s has no training window: its weight assumes one", classes[c] if classes else c)
    inv = 1.0 / np.maximum(counts, 1.0)
    return (inv / inv.sum()).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The window cache


@dataclass(frozen=True)
class DataConfig:
    """What selects and shapes the windows; recorded in the cache and compared on reuse."""

    features_video: str = "ResNET"
    features_audio: str = "VGGish"
    pca: bool = False
    window_seconds: float = 60.0
    frames_per_second: float = TOKENS_PER_SECOND
    feature_dim: int = FEATURE_DIM
    dataset_root: str | None = None
    skip_bad_games: bool = False
    class_map: ClassMap = field(default_factory=lambda: load_class_map("highlight"))

    @property
    def window_frames(self) -> int:
        return window_frames(self.window_seconds, self.frames_per_second)

    def settings(self, list_path: str | Path, games: Sequence[Path]) -> dict[str, Any]:
        return {
            "format": CACHE_FORMAT,
            "list": str(list_path) if str(list_path) in SOCCERNET_SPLITS else str(Path(list_path).resolve()),
            "games": [str(g) for g in games],
            "featuresVideo": self.features_video,
            "featuresAudio": self.features_audio,
            "PCA": self.pca,
            "WindowSize": self.window_seconds,
            "featurePerSec": self.frames_per_second,
            "feature_dim": self.feature_dim,
            "skip_bad_games": self.skip_bad_games,
            "class_map": self.class_map.to_json(),
        }


_HEADER_LEN = 128  # fixed-size .npy v1 header, so the row count can be written after streaming


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    descr = np.lib.format.dtype_to_descr(dtype)
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    text = text.ljust(_HEADER_LEN - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


class _NpyAppender:
    """Append rows to a .npy file with plain writes (no growing in-memory array, no writable mmap)."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: Any) -> None:
        self.fh = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.row_shape, self.dtype, self.rows = row_shape, np.dtype(dtype), 0
        self.fh.write(_npy_header((0, *row_shape), self.dtype))

    def append(self, block: np.ndarray) -> None:
        self.fh.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += block.shape[0]

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(_npy_header((self.rows, *self.row_shape), self.dtype))
        self.fh.close()


def cache_dir_for(cache_root: str | Path, list_path: str | Path) -> Path:
    return Path(cache_root) / Path(str(list_path)).stem


def prepare_cache(
    list_path: str | Path, cache_dir: str | Path, config: DataConfig, progress: bool = True
) -> WindowCache:
    """Cut every half of a game list into windows + labels and write them to `cache_dir` (`--formatdataset 1`)."""
    from tqdm import tqdm

    games = read_game_list(list_path, config.dataset_root)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "settings.json").unlink(missing_ok=True)  # the cache is invalid until it is complete
    n, d, c = config.window_frames, config.feature_dim, len(config.class_map.classes)
    halves: list[dict[str, Any]] = []
    bad: list[dict[str, str]] = []
    feature_files: dict[str, str] = {}
    seen: set[str] = set()
    recipe: dict[str, str] | None = None
    with contextlib.ExitStack() as stack:
        tmp = {k: stack.enter_context(atomic_path(cache_dir / f"{k}.npy")) for k in ("video", "audio", "labels")}
        out = {
            "video": _NpyAppender(tmp["video"], (n, d), np.float32),
            "audio": _NpyAppender(tmp["audio"], (n, d), np.float32),
            "labels": _NpyAppender(tmp["labels"], (c,), np.uint8),
        }
        for game in tqdm(games, desc=f"windows {Path(str(list_path)).name}", unit="game", disable=not progress):
            try:
                blocks = _game_windows(game, config, seen)
            except UserError as exc:
                if not config.skip_bad_games:
                    raise
                log.warning("skipping game %s: %s", game, exc)
                bad.append({"game": str(game), "error": str(exc)})
                continue
            if not feature_files:  # record what the flags matched and how it was made, for the model's metadata
                feature_files = {
                    k: find_feature_file(game, 1, *spec).name[2:-4]
                    for k, spec in (
                        ("video", (config.features_video, config.pca)),
                        ("audio", (config.features_audio, None)),
                    )
                }
                recipe = folder_recipe(game)
            for half, video, audio, labels in blocks:
                halves.append({"game": str(game), "half": half, "start": out["labels"].rows, "count": len(labels)})
                out["video"].append(video)
                out["audio"].append(audio)
                out["labels"].append(labels)
        for appender in out.values():
            appender.close()
        if not halves:
            raise UserError(f"{list_path}: no usable game (all {len(games)} failed)")
    warn_unseen_labels(config.class_map, seen, str(list_path))
    write_json(
        cache_dir / "settings.json",
        {
            **config.settings(list_path, games),
            "feature_files": feature_files,
            "feature_recipe": recipe,
            "halves": halves,
            "bad_games": bad,
        },
    )
    return WindowCache(cache_dir)


def _game_windows(
    game: Path, config: DataConfig, seen: set[str]
) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Windows of both halves of one game, read and validated before any of it is written; adds the game's
    label names to `seen`."""
    if not game.is_dir():
        raise UserError(f"{game}: game folder not found")
    events = read_labels(game)
    n = config.window_frames
    features = {
        half: load_half(game, half, config.features_video, config.features_audio, config.pca, config.feature_dim)
        for half in (1, 2)
    }
    events = usable_events(
        events,
        labels_path(game),
        config.class_map,
        {half: len(video) / config.frames_per_second for half, (video, _) in features.items()},
    )
    seen.update(ev.label for ev in events)
    blocks = []
    for half, (video, audio) in features.items():
        count = video.shape[0] // n
        if count == 0:
            raise UserError(
                f"{game}: half {half} has {video.shape[0]} frames, shorter than one window of "
                f"{config.window_seconds:g} s ({n} frames)"
            )
        labels = window_labels(events, half, count, config.window_seconds, config.class_map)
        blocks.append(
            (
                half,
                np.asarray(video[: count * n], np.float32).reshape(count, n, -1),
                np.asarray(audio[: count * n], np.float32).reshape(count, n, -1),
                labels,
            )
        )
    return blocks


class WindowCache:
    """A prepared split: windows `video`/`audio` [W, N, D], `labels` [W, C], and the halves they came from."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.dir = Path(cache_dir)
        settings_path = self.dir / "settings.json"
        if not settings_path.is_file():
            raise UserError(f"{self.dir}: no window cache here: run once with --formatdataset 1")
        self.settings = read_json(settings_path)
        self.halves: list[dict[str, Any]] = self.settings["halves"]
        self.bad_games: list[dict[str, str]] = self.settings.get("bad_games", [])
        self.feature_files: dict[str, str] = self.settings.get("feature_files", {})
        self.feature_recipe: dict[str, str] | None = self.settings.get("feature_recipe")  # None: older caches
        self.labels = np.load(self.dir / "labels.npy").astype(np.float32)
        self.n_windows = int(self.labels.shape[0])

    def check(self, list_path: str | Path, config: DataConfig) -> WindowCache:
        """Fail unless the cache was made from this list with these settings."""
        games = read_game_list(list_path, config.dataset_root)
        wanted = config.settings(list_path, games)
        diff = [k for k in wanted if self.settings.get(k) != wanted[k]]
        if diff:
            shown = ", ".join(f"{k}: {_short(self.settings.get(k))} in cache vs {_short(wanted[k])}" for k in diff)
            raise UserError(
                f"{self.dir}: window cache made with other settings ({shown}): rerun with --formatdataset 1"
            )
        return self

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of windows [start, stop); the memory maps are closed again on return."""
        return self._copy_rows(slice(start, stop))

    def _copy_rows(self, rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Video and audio copies of `rows` (a slice, or indices: fancy indexing already copies, once), read
        through memory maps closed again on return."""
        video = np.load(self.dir / "video.npy", mmap_mode="r")
        audio = np.load(self.dir / "audio.npy", mmap_mode="r")
        copy = np.array if isinstance(rows, slice) else np.asarray
        out = copy(video[rows]), copy(audio[rows])
        del video, audio
        return out

    @property
    def window_shape(self) -> tuple[int, int]:
        video = np.load(self.dir / "video.npy", mmap_mode="r")
        return int(video.shape[1]), int(video.shape[2])

    def eval_batches(self, batch_windows: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(video, audio, labels) in file order, `batch_windows` at a time."""
        for start in range(0, self.n_windows, batch_windows):
            stop = min(start + batch_windows, self.n_windows)
            video, audio = self.read(start, stop)
            yield video, audio, self.labels[start:stop]

    def read_rows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(video, audio, labels) of the windows `idx` (any order), returned in ascending window order (rows and
        labels stay aligned; a micro-batch's loss is a sum, so its order does not matter), read through memory
        maps closed on return: only these rows are copied, so memory follows the micro-batch, not the step."""
        idx = np.sort(np.asarray(idx, dtype=np.int64))
        return (*self._copy_rows(idx), self.labels[idx])

    def step_indices(
        self,
        rng: np.random.Generator,
        batch_halves: int | None = None,
        batch_windows: int | None = None,
        group_bytes: int = 64 << 20,
    ) -> Iterator[np.ndarray]:
        """Window indices of each optimiser step of one epoch, in a shuffled order. `batch_halves`: a step is
        every window of that many halves (the original `--batch_size`), in random order within the step.
        `batch_windows`: halves (in random order) are taken in groups of about `group_bytes` of features,
        shuffled within the group and cut into steps of that many windows (reads stay local)."""
        order = rng.permutation(len(self.halves))
        ranges = [np.arange(self.halves[j]["start"], self.halves[j]["start"] + self.halves[j]["count"]) for j in order]
        if batch_halves:
            for i in range(0, len(ranges), batch_halves):
                yield rng.permutation(np.concatenate(ranges[i : i + batch_halves]))
            return
        n, d = self.window_shape
        step = batch_windows or 256
        group_windows = max(step, group_bytes // (2 * n * d * 4))
        pending: list[np.ndarray] = []
        for k, r in enumerate(ranges):
            pending.append(r)
            if sum(map(len, pending)) >= group_windows or k == len(ranges) - 1:
                perm = rng.permutation(np.concatenate(pending))
                yield from (perm[s : s + step] for s in range(0, len(perm), step))
                pending = []


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def open_split(
    list_path: str | Path, cache_root: str | Path, config: DataConfig, prepare: bool, progress: bool = True
) -> WindowCache:
    """`prepare` (formatdataset 1): build the cache; else read it and check its settings."""
    cache_dir = cache_dir_for(cache_root, list_path)
    if prepare:
        return prepare_cache(list_path, cache_dir, config, progress=progress)
    return WindowCache(cache_dir).check(list_path, config)
