"""Training windows: non-overlapping windows of a half with multi-hot labels, written once to a cache on disk
(`--formatdataset 1`) and streamed from memory maps (`--formatdataset 0` reuses the cache). Nothing holds more
than one batch (or one shuffle group) of windows in memory, so memory does not grow with the number of games.
Importing this module does not import TensorFlow. The SoccerNet files themselves are read by `dataset`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soccer_highlights.common.atomic import atomic_path, read_json, write_json
from soccer_highlights.common.constants import FEATURE_DIM, TOKENS_PER_SECOND
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.features import folder_recipe
from soccer_highlights.dataset import (
    SOCCERNET_SPLITS,
    ClassMap,
    Event,
    find_feature_file,
    labels_path,
    load_class_map,
    load_half,
    read_game_list,
    read_labels,
    usable_events,
    warn_unseen_labels,
)

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


LABEL_INDEX_RULES = ("original", "floor")


def label_window(position_ms: int, window_seconds: float, rule: str = "original") -> int:
    """Window of an event: `original` is V&D's and the seed's int(60/W * minute + int(second / W)) on the game
    clock's whole minutes and seconds; `floor` is floor(t / W). They differ only when W does not divide 60."""
    if rule == "floor":
        return int(math.floor(position_ms / 1000.0 / window_seconds))
    minute, second = divmod(int(position_ms) // 1000, 60)
    return int(60 / window_seconds * minute + int(second / window_seconds))


def window_labels(
    events: Sequence[Event],
    half: int,
    n_windows: int,
    window_seconds: float,
    class_map: ClassMap,
    rule: str = "original",
) -> np.ndarray:
    """Multi-hot [n_windows, C]: class c is 1 in the window of each event of c (`label_window`, clamped to the
    last window); background is 1 only where no other class is."""
    labels = np.zeros((n_windows, len(class_map.classes)), dtype=np.uint8)
    for ev in events:
        cls = class_map.label_to_index.get(ev.label, 0)
        if ev.half != half or cls == 0 or n_windows == 0:
            continue
        idx = min(max(label_window(ev.position_ms, window_seconds, rule), 0), n_windows - 1)
        labels[idx, cls] = 1
    labels[:, 0] = labels[:, 1:].max(axis=1, initial=0) == 0
    return labels


def window_frames(window_seconds: float, tokens_per_second: float) -> int:
    n = window_seconds * tokens_per_second
    if n < 1 or abs(n - round(n)) > 1e-6:
        raise UserError(
            f"WindowSize {window_seconds} x featurePerSec {tokens_per_second} must be a whole number of frames"
        )
    return int(round(n))


CLASS_WEIGHTINGS = ("unit", "inverse_frequency")


def class_weights(labels: np.ndarray, mode: str = "inverse_frequency") -> np.ndarray:
    """Per-class `pos_weight`: `unit` is 1 for every class (V&D's datasets); `inverse_frequency` is the inverse
    class frequency over windows normalised to sum 1 (the seed's dataset), a class never seen counting once."""
    if mode == "unit":
        return np.ones(labels.shape[1], np.float32)
    if mode != "inverse_frequency":
        raise UserError(f"unknown class weighting {mode!r}; valid: {', '.join(CLASS_WEIGHTINGS)}")
    inv = 1.0 / np.maximum(labels.sum(axis=0).astype(np.float64), 1.0)
    return (inv / inv.sum()).astype(np.float32)


FEW_POSITIVES = 5  # fewer positive training windows than this for a class: one warning with the counts


def check_positives(labels: np.ndarray, list_path: str | Path, config: DataConfig) -> None:
    """UserError (before any epoch) when a class has no positive training window, naming the class, the label
    files of the list and the class map; one warning with the counts when some class has very few."""
    class_map = config.class_map
    classes, counts = class_map.classes, labels.sum(axis=0).astype(np.int64)
    empty = [c for c, n in zip(classes[1:], counts[1:], strict=True) if n == 0]
    if empty:
        games: list[Path] = []
        with contextlib.suppress(UserError, ImportError):
            games = read_game_list(list_path, config.dataset_root)
        files = sorted({p.name for p in map(labels_path, games) if p is not None}) or ["(none found)"]
        maps = "; ".join(f"{c}: {', '.join(class_map.to_json()['labels'][c])}" for c in empty)
        raise UserError(
            f"{list_path}: {'class' if len(empty) == 1 else 'classes'} {', '.join(empty)} "
            f"{'has' if len(empty) == 1 else 'have'} no positive training window (label files "
            f"{', '.join(files)}; class map {class_map.name} looks for {maps}): choose the --class_map of this data"
        )
    few = [f"{c} {n}" for c, n in zip(classes[1:], counts[1:], strict=True) if n < FEW_POSITIVES]
    if few:
        log.warning("%s: few positive training windows: %s (of %d windows)", list_path, ", ".join(few), len(labels))


@dataclass(frozen=True)
class DataConfig:
    """What selects and shapes the windows; recorded in the cache and compared on reuse."""

    features_video: str = "ResNET"
    features_audio: str = "VGGish"
    pca: bool = False
    window_seconds: float = 60.0
    tokens_per_second: float = TOKENS_PER_SECOND
    feature_dim: int = FEATURE_DIM
    dataset_root: str | None = None
    skip_bad_games: bool = False
    class_map: ClassMap = field(default_factory=lambda: load_class_map("highlight"))
    label_index: str = "original"  # see `label_window`

    @property
    def window_frames(self) -> int:
        return window_frames(self.window_seconds, self.tokens_per_second)

    def settings(self, list_path: str | Path, games: Sequence[Path]) -> dict[str, Any]:
        return {
            "format": CACHE_FORMAT,
            "list": str(list_path) if str(list_path) in SOCCERNET_SPLITS else str(Path(list_path).resolve()),
            "games": [str(g) for g in games],
            "featuresVideo": self.features_video,
            "featuresAudio": self.features_audio,
            "PCA": self.pca,
            "WindowSize": self.window_seconds,
            "featurePerSec": self.tokens_per_second,
            "feature_dim": self.feature_dim,
            "skip_bad_games": self.skip_bad_games,
            "class_map": self.class_map.to_json(),
            # recorded only where the rules differ, so caches made before the rule existed stay valid
            **({"label_index": self.label_index} if 60 % self.window_seconds else {}),
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
                feature_files, recipe = _feature_files(game, config), folder_recipe(game)
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


def _feature_files(game: Path, config: DataConfig) -> dict[str, str]:
    """The feature names the flags matched in `game` (e.g. ResNET_TF2_PCA512), recorded in the model."""
    return {
        k: find_feature_file(game, 1, *spec).name[2:-4]
        for k, spec in (("video", (config.features_video, config.pca)), ("audio", (config.features_audio, None)))
    }


def _game_windows(
    game: Path, config: DataConfig, seen: set[str]
) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Windows of both halves of one game, read and validated before any of it is written; adds the game's
    label names to `seen`."""
    if not game.is_dir():
        raise UserError(f"{game}: game folder not found")
    label_file = labels_path(game)
    if label_file is None:
        raise UserError(f"{game}: no Labels-v2.json or Labels.json")
    events = read_labels(game)
    n = config.window_frames
    features = {
        half: load_half(game, half, config.features_video, config.features_audio, config.pca, config.feature_dim)
        for half in (1, 2)
    }
    events = usable_events(
        events,
        label_file,
        config.class_map,
        {half: len(video) / config.tokens_per_second for half, (video, _) in features.items()},
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
        labels = window_labels(events, half, count, config.window_seconds, config.class_map, config.label_index)
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
