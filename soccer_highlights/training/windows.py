"""Training windows: non-overlapping windows of a half with multi-hot labels, written once to a cache on disk
(`--formatdataset 1`) and streamed from memory maps (`--formatdataset 0` reuses the cache). Nothing holds more
than one batch (or one shuffle group) of windows in memory, so memory does not grow with the number of games.
Importing this module does not import TensorFlow. The SoccerNet files themselves are read by `dataset`.

A cache belongs to the data it was made from: its folder, `<cache root>/<list name>-<key>`, is named by a hash of
the settings, the list's games and the size and modification time of each game's label and feature files
(`cache_key`). It is built in a temporary folder under a lock and renamed into place complete, never changed
afterwards, so a running training never sees it rebuilt, two runs on the same data share it, two on different data
use two folders, and a run that fails leaves every complete cache as it was. A new cache of a list removes the
list's older caches that no running training holds (each open `WindowCache` holds a shared lock on its
`settings.json`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from soccer_highlights.common.atomic import atomic_path, read_json, write_json
from soccer_highlights.common.constants import FEATURE_DIM, TOKENS_PER_SECOND
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.features import folder_recipe
from soccer_highlights.dataset import (
    EVENT_TIMES,
    LABEL_FILES,
    LABEL_VERSIONS,
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

CACHE_FORMAT = 2  # 2: content-keyed folders; labels, event time and background rule in the settings


LABEL_INDEX_RULES = ("original", "floor")


def label_window(position_ms: int, window_seconds: float, rule: str = "original") -> int:
    """Window of an event: `original` is V&D's and the seed's int(60/W * minute + int(second / W)) on the game
    clock's whole minutes and seconds; `floor` is floor(t / W). They differ only when W does not divide 60."""
    if rule == "floor":
        return int(math.floor(position_ms / 1000.0 / window_seconds))
    minute, second = divmod(int(position_ms) // 1000, 60)
    return int(60 / window_seconds * minute + int(second / window_seconds))


# Background of a window (`--background_label`). `exclusive`: 1 only where no other class is. `original`: both
# originals' `dataset.py` (`prepare_normal`): background starts at 1 on every window; each event of the half, in the
# label file's order, clears it in its window and then sets its class there, an event of no class setting class 0
# (background) back to 1, so a window holding a class event followed by an unmapped one (a throw-in after a corner)
# ends with background 1 and that class. On V&D's Labels.json every label has a class and the two rules agree.
BACKGROUND_RULES = ("exclusive", "original")


def window_labels(
    events: Sequence[Event],
    half: int,
    n_windows: int,
    window_seconds: float,
    class_map: ClassMap,
    rule: str = "original",
    background: str = "exclusive",
) -> np.ndarray:
    """Multi-hot [n_windows, C]: class c is 1 in the window of each event of c (`label_window`, clamped to the
    last window); background by `background` (`BACKGROUND_RULES`)."""
    if background not in BACKGROUND_RULES:
        raise UserError(f"unknown background rule {background!r}; valid: {', '.join(BACKGROUND_RULES)}")
    labels = np.zeros((n_windows, len(class_map.classes)), dtype=np.uint8)
    if background == "original":
        labels[:, 0] = 1
    for ev in events:
        cls = class_map.label_to_index.get(ev.label, 0)
        if ev.half != half or n_windows == 0 or (cls == 0 and background == "exclusive"):
            continue
        idx = min(max(label_window(ev.position_ms, window_seconds, rule), 0), n_windows - 1)
        labels[idx, 0] = 0
        labels[idx, cls] = 1
    if background == "exclusive":
        labels[:, 0] = labels[:, 1:].max(axis=1, initial=0) == 0
    return labels


def window_frames(window_seconds: float, tokens_per_second: float) -> int:
    n = window_seconds * tokens_per_second
    if n < 1 or abs(n - round(n)) > 1e-6:
        raise UserError(
            f"WindowSize {window_seconds} x featurePerSec {tokens_per_second} must be a whole number of frames"
        )
    return int(round(n))


CLASS_WEIGHTINGS = ("unit", "inverse_frequency", "seed_counts")

# The seed's `dataset.py` (`Dataset.__init__`): window counts of its five classes on SoccerNet-v2, hard-coded; its
# `pos_weight` is their inverse normalised to sum 1, the same on any data.
SEED_CLASS_COUNTS = {"background": 80218, "kick": 17730, "subs": 2839, "card": 2148, "goal": 7523}


def class_weights(labels: np.ndarray, mode: str = "inverse_frequency", classes: Sequence[str] = ()) -> np.ndarray:
    """Per-class `pos_weight`: `unit` is 1 for every class (V&D's `dataset.py`); `inverse_frequency` is the inverse
    class frequency over these windows normalised to sum 1, a class never seen counting once (computed from the data,
    which neither original did); `seed_counts` is the seed's: the inverse of its fixed SoccerNet-v2 counts
    (`SEED_CLASS_COUNTS`) normalised to sum 1, for its classes only (`classes`)."""
    if mode == "unit":
        return np.ones(labels.shape[1], np.float32)
    if mode == "seed_counts":
        if list(classes) != list(SEED_CLASS_COUNTS):
            raise UserError(
                f"--class_weights seed_counts holds the seed's counts of {', '.join(SEED_CLASS_COUNTS)}; the classes "
                f"here are {', '.join(classes) or 'unknown'}: use --class_weights inverse_frequency or unit"
            )
        inv = 1.0 / np.array(list(SEED_CLASS_COUNTS.values()), np.float64)
        return (inv / inv.sum()).astype(np.float32)
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
        found = (config.label_file(g) for g in games)
        files = sorted({p.name for p in found if p is not None}) or ["(none found)"]
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
    labels: str = "v2"  # the label file read first (`dataset.LABEL_VERSIONS`)
    labels_only: bool = False  # True: only that file (`--labels` given); False: the other version where it is missing
    event_time: str = "gametime"  # `dataset.EVENT_TIMES`
    background: str = "exclusive"  # `BACKGROUND_RULES`

    def __post_init__(self) -> None:
        for value, valid, what in (
            (self.labels, tuple(LABEL_VERSIONS), "labels version"),
            (self.event_time, EVENT_TIMES, "event time"),
            (self.background, BACKGROUND_RULES, "background rule"),
        ):
            if value not in valid:
                raise UserError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")

    @property
    def window_frames(self) -> int:
        return window_frames(self.window_seconds, self.tokens_per_second)

    def label_file(self, game: str | Path) -> Path | None:
        """The label file these settings read in a game folder (None: none)."""
        return labels_path(game, self.labels, self.labels_only)

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
            "labels": self.labels,
            "labels_only": self.labels_only,
            "event_time": self.event_time,
            "background": self.background,
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


def cache_key(list_path: str | Path, config: DataConfig) -> str:
    """16 hex digits naming what a cache is made from: the settings (`DataConfig.settings`, the games included) and,
    for every game, the size and modification time of each label and feature file of its folder."""
    games = read_game_list(list_path, config.dataset_root)
    files: dict[str, Any] = {}
    for game in games:
        try:
            names = sorted(p.name for p in Path(game).iterdir())
        except OSError:
            files[str(game)] = None  # missing or unreadable: the build says so (or skips it)
            continue
        stats = {}
        for name in names:
            if name in LABEL_FILES or (name.endswith(".npy") and name[:2] in ("1_", "2_")):
                with contextlib.suppress(OSError):
                    st = (Path(game) / name).stat()
                    stats[name] = [st.st_size, st.st_mtime_ns]
        files[str(game)] = stats
    text = json.dumps({"settings": config.settings(list_path, games), "files": files}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir_for(cache_root: str | Path, list_path: str | Path, config: DataConfig) -> Path:
    """The folder of the cache of this list made from its files as they are now, with these settings."""
    return Path(cache_root) / f"{Path(str(list_path)).stem}-{cache_key(list_path, config)}"


def prepare_cache(
    list_path: str | Path, cache_dir: str | Path, config: DataConfig, progress: bool = True
) -> WindowCache:
    """Cut every half of a game list into windows + labels and write them to `cache_dir`, a folder of its own
    (`open_split` builds in a temporary one and renames it into place)."""
    from tqdm import tqdm

    games = read_game_list(list_path, config.dataset_root)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "settings.json").unlink(missing_ok=True)  # the cache is invalid until it is complete
    n, d, c = config.window_frames, config.feature_dim, len(config.class_map.classes)
    halves: list[dict[str, Any]] = []
    bad: list[dict[str, str]] = []
    feature_files: dict[str, str] = {}
    label_files: dict[str, int] = {}
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
                label_file, blocks = _game_windows(game, config, seen)
            except UserError as exc:
                if not config.skip_bad_games:
                    raise
                log.warning("skipping game %s: %s", game, exc)
                bad.append({"game": str(game), "error": str(exc)})
                continue
            label_files[label_file.name] = label_files.get(label_file.name, 0) + 1
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
            "label_files": label_files,
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
) -> tuple[Path, list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]]:
    """The label file read and the windows of both halves of one game, read and validated before any of it is
    written; adds the game's label names to `seen`."""
    if not game.is_dir():
        raise UserError(f"{game}: game folder not found")
    label_file = config.label_file(game)
    if label_file is None:
        wanted = LABEL_VERSIONS[config.labels] if config.labels_only else "Labels-v2.json or Labels.json"
        raise UserError(f"{game}: no {wanted}")
    events = read_labels(game, config.labels, config.labels_only, config.event_time)
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
        labels = window_labels(
            events, half, count, config.window_seconds, config.class_map, config.label_index, config.background
        )
        blocks.append(
            (
                half,
                np.asarray(video[: count * n], np.float32).reshape(count, n, -1),
                np.asarray(audio[: count * n], np.float32).reshape(count, n, -1),
                labels,
            )
        )
    return label_file, blocks


class WindowCache:
    """A prepared split: windows `video`/`audio` [W, N, D], `labels` [W, C], and the halves they came from."""

    def __init__(self, cache_dir: str | Path) -> None:
        self.dir = Path(cache_dir)
        settings_path = self.dir / "settings.json"
        if not settings_path.is_file():
            raise UserError(f"{self.dir}: no window cache here: run once with --formatdataset 1")
        self._hold = open(settings_path, "rb")  # noqa: SIM115 - held for the life of the object: "in use"
        fcntl.flock(self._hold.fileno(), fcntl.LOCK_SH)  # waits while a newer cache removes this one
        if not settings_path.is_file():
            raise UserError(f"{self.dir}: the window cache was removed meanwhile: run again with --formatdataset 1")
        self.built_now = False  # True when `open_split` built it in this run
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
    """The cache of the list made from its files as they are now with these settings (`cache_dir_for`).
    `prepare` (formatdataset 1): built when there is none (reused when there is); else it must exist. One line
    says which label files the windows were read from."""
    cache_root = Path(cache_root)
    final = cache_dir_for(cache_root, list_path, config)
    if (final / "settings.json").is_file():
        cache = WindowCache(final).check(list_path, config)
        if prepare:
            print(f"{list_path}: window cache {final} already made from these files and settings: reused", flush=True)
    elif not prepare:
        _refuse_missing(list_path, cache_root, config)
    else:
        cache = _build(list_path, cache_root, final, config, progress)
    _say_label_files(list_path, cache)
    return cache


def _build(list_path: str | Path, cache_root: Path, final: Path, config: DataConfig, progress: bool) -> WindowCache:
    """Build `final` under its lock, in a temporary folder renamed into place; then remove the list's other
    caches that no training holds."""
    try:
        cache_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{cache_root}: cannot write the window cache here ({exc.strerror or exc})") from exc
    with _build_lock(cache_root / f".{final.name}.lock", list_path):
        if (final / "settings.json").is_file():  # another run built it while this one waited
            return WindowCache(final).check(list_path, config)
        for stale in cache_root.glob(f".{final.name}.tmp*"):  # a build that was killed (it held this lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = cache_root / f".{final.name}.tmp{os.getpid()}"
        try:
            prepare_cache(list_path, tmp, config, progress=progress)
            if final.exists():  # an incomplete folder (a complete one was reused above, under this lock)
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _remove_unused(cache_root, Path(str(list_path)).stem, keep=final)
    cache = WindowCache(final)
    cache.built_now = True
    return cache


@contextlib.contextmanager
def _build_lock(path: Path, list_path: str | Path) -> Iterator[None]:
    """An exclusive lock of `path` for building one cache: a second run of the same data waits, then reuses it.
    The holder removes the file when done; a run that locked a file removed meanwhile locks the new one."""
    said = False
    while True:
        fh = open(path, "a+b")  # noqa: SIM115 - closed below, after the lock is dropped
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not said:
                print(f"{list_path}: another run is building this window cache; waiting for it", flush=True)
                said = True
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            if os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino:
                break
        except OSError:
            pass  # removed by the holder we waited for
        fh.close()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        fh.close()


def _siblings(cache_root: Path, stem: str) -> list[Path]:
    """The complete caches of a list (this version's `<stem>-<key>` folders and an earlier version's `<stem>`)."""
    found = [p for p in cache_root.glob(f"{glob_escape(stem)}-*") if p.name[len(stem) + 1 :].isalnum()]
    return [p for p in [cache_root / stem, *found] if (p / "settings.json").is_file()]


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _remove_unused(cache_root: Path, stem: str, keep: Path) -> None:
    """Remove the list's other content-keyed caches that no open `WindowCache` holds (they describe files as they
    were); an earlier version's `<stem>` folder is left alone (its runs took no lock)."""
    for old in _siblings(cache_root, stem):
        if old == keep or old.name == stem:
            continue
        try:
            with open(old / "settings.json", "rb") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                (old / "settings.json").unlink()  # incomplete from now: no run opens it
            shutil.rmtree(old, ignore_errors=True)
        except (BlockingIOError, OSError):
            continue  # in use by a running training (or gone): left as it is


def _refuse_missing(list_path: str | Path, cache_root: Path, config: DataConfig) -> NoReturn:
    """UserError for `--formatdataset 0` without a cache of these files and settings, saying what differs from
    the list's newest cache."""
    found = sorted(_siblings(cache_root, Path(str(list_path)).stem), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"{cache_root}: no window cache of {list_path} here: run once with --formatdataset 1")
    newest = read_json(found[-1] / "settings.json")
    wanted = config.settings(list_path, read_game_list(list_path, config.dataset_root))
    diff = [k for k in wanted if newest.get(k) != wanted[k]]
    if diff:
        shown = ", ".join(f"{k}: {_short(newest.get(k))} in cache vs {_short(wanted[k])}" for k in diff)
        raise UserError(f"{found[-1]}: window cache made with other settings ({shown}): rerun with --formatdataset 1")
    raise UserError(
        f"{found[-1]}: window cache made from other files (a label or feature file of {list_path} changed since): "
        "rerun with --formatdataset 1"
    )


def _say_label_files(list_path: str | Path, cache: WindowCache) -> None:
    files = cache.settings.get("label_files") or {}
    shown = ", ".join(
        f"{name} ({'v1' if name == 'Labels.json' else 'v2'}) in {n} game{'s' * (n != 1)}"
        for name, n in sorted(files.items())
    )
    print(f"{list_path}: labels read from {shown or 'unknown files'}", flush=True)
