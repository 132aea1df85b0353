"""The SoccerNet format: game lists, label files (v1 `Labels.json`, v2 `Labels-v2.json`), class maps and the
feature files of a half. Training windows and their cache live in `training.windows`. Importing this module
does not import TensorFlow.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soccer_highlights.common.atomic import read_json
from soccer_highlights.common.constants import BACKGROUND, FEATURE_DIM, LABEL_FILES
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.inputs import check_length_gap, load_features, open_npy

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
__all__ = [
    "ClassMap",
    "Event",
    "KNOWN_LABELS",
    "SOCCERNET_SPLITS",
    "check_game_lists",
    "class_map_from_json",
    "default_class_map",
    "find_feature_file",
    "LABEL_VERSIONS",
    "EVENT_TIMES",
    "labels_path",
    "labels_version",
    "load_class_map",
    "load_half",
    "parse_labels",
    "read_game_list",
    "read_labels",
    "report_ignored",
    "usable_events",
    "warn_unseen_labels",
]

SOCCERNET_SPLITS = ("train", "valid", "test", "challenge")

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
    # V&D's three classes (card, subs, goal) read from v2 label names
    "vd_v2": {
        "card": ["Yellow card", "Red card", "Yellow->red card"],
        "subs": ["Substitution"],
        "goal": ["Goal"],
    },
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


def default_class_map(games: Sequence[Path], vd: bool, prefer: str | None = None, only: bool = False) -> ClassMap:
    """The class map the originals used on the label files read in these games (`labels_path` with `prefer` and
    `only`): `v1` (V&D's card, subs, goal) when every one is `Labels.json`; otherwise (`Labels-v2.json`) `vd_v2` for
    V&D's architectures (`vd`), `highlight` (the seed's four classes) for the seed's."""
    files = {p.name for p in (labels_path(g, prefer, only) for g in games) if p is not None}
    if files == {"Labels.json"}:
        return load_class_map("v1")
    return load_class_map("vd_v2" if vd else "highlight")


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
    """One annotation of a label file; `visible` False for SoccerNet's `"visibility": "not shown"`."""

    half: int
    position_ms: int
    label: str
    visible: bool = True


_GAMETIME = re.compile(r"^\s*(\d+)\s*-\s*(\d+):(\d+)\s*$")


def check_game_lists(
    lists: Mapping[str, str | Path | None], dataset_root: str | Path | None, warn_shared: bool
) -> None:
    """Read each game list ({flag: path or None}) now, so that a missing or empty one fails fast; a game listed twice
    is refused (it would count twice); with `warn_shared`, games of another list also in "training" are one
    warning line (their scores say little about unseen games)."""
    games: dict[str, set[str]] = {}
    for name, path in lists.items():
        if path is None:
            continue
        seen: set[str] = set()
        for game in map(os.path.normpath, read_game_list(path, dataset_root)):
            if game in seen:
                raise UserError(f"{path}: game {game} is listed twice (--{name})")
            seen.add(game)
        games[name] = seen
    for name, seen in games.items():
        shared = games.get("training", set()) & seen if name != "training" else set()
        if warn_shared and shared:
            print(
                f"warning: {len(shared)} of {len(seen)} --{name} games are also --training games: their scores "
                "say little about unseen games",
                file=sys.stderr,
                flush=True,
            )


# `--labels`: the label file of each SoccerNet version. V&D's `dataset.py` (`prepare_normal`) reads `Labels.json`,
# the seed's `Labels-v2.json`.
LABEL_VERSIONS = {"v1": "Labels.json", "v2": "Labels-v2.json"}
# `--event_time`: where a training event's time comes from. Both originals' `dataset.py` (`prepare_normal`) read
# `gameTime` ("1 - 12:34", whole seconds); `position` (ms) is the more precise field of v2 files, which SoccerNet's
# evaluation prefers.
EVENT_TIMES = ("gametime", "position")


def labels_path(game_dir: str | Path, prefer: str | None = None, only: bool = False) -> Path | None:
    """The label file of a game folder: `prefer`'s (`v1` Labels.json, `v2` Labels-v2.json; None: v2) first, the
    other version when that one is missing unless `only`; None without one."""
    game_dir = Path(game_dir)
    first = LABEL_VERSIONS[prefer] if prefer is not None else LABEL_FILES[0]
    names = [first] if only else [first, *(n for n in LABEL_FILES if n != first)]
    return next((game_dir / n for n in names if (game_dir / n).is_file()), None)


def labels_version(label_names: Iterable[str]) -> str | None:
    """`v1` when every label name a class map knows is a v1 name (a model of V&D's `Labels.json` classes: that file
    is the one to read where a game has both), else None (`Labels-v2.json` first)."""
    names = set(label_names)
    return "v1" if names and names <= V1_LABELS else None


def read_labels(
    game_dir: str | Path, prefer: str | None = None, only: bool = False, event_time: str = "position"
) -> list[Event]:
    """Events of a game from its label file (`labels_path`), each at the time `event_time` says (`parse_labels`).
    Every event is returned; `usable_events` says which can be used."""
    game_dir = Path(game_dir)
    path = labels_path(game_dir, prefer, only)
    if path is None:
        wanted = LABEL_VERSIONS[prefer] if only and prefer is not None else "Labels-v2.json or Labels.json"
        raise UserError(f"{game_dir}: no {wanted}")
    return parse_labels(read_json(path), str(path), event_time)


def parse_labels(data: Any, source: str, event_time: str = "position") -> list[Event]:
    """Events of a Labels(-v2).json object, one per annotation in file order (the one parser of the format, for
    training, ground truth on timelines and evaluation). An event's time: with `event_time` "position" its
    `position` (ms) where the file has one, else its `gameTime`, as SoccerNet's evaluation (`label2vector`) reads
    it; with "gametime" its `gameTime` ("1 - 12:34", whole seconds), as both originals' `dataset.py` read it for
    training (the training data passes it by default). UserError naming `source` when malformed (a `gameTime` whose
    seconds pass 59 included: the originals would read "00:99" as 99 s)."""
    if event_time not in EVENT_TIMES:
        raise UserError(f"unknown event time {event_time!r}; valid: {', '.join(EVENT_TIMES)}")
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list):
        raise UserError(f"{source}: no 'annotations' list")
    events = []
    for i, ann in enumerate(annotations):
        m = _GAMETIME.match(str(ann.get("gameTime", ""))) if isinstance(ann, dict) else None
        if m is None or "label" not in ann:
            raise UserError(f"{source}: annotation {i} needs 'label' and 'gameTime' like '1 - 13:10'")
        half, minutes, seconds = (int(g) for g in m.groups())
        if seconds > 59:
            raise UserError(f"{source}: annotation {i} has gameTime {ann['gameTime']!r}: seconds must be 00 to 59")
        ms = (minutes * 60 + seconds) * 1000
        position = ann.get("position")
        if event_time == "position" and position not in (None, ""):
            try:
                ms = int(position)
            except (TypeError, ValueError) as exc:
                raise UserError(f"{source}: annotation {i} has a bad position {position!r}") from exc
        events.append(Event(half, ms, str(ann["label"]), ann.get("visibility") != "not shown"))
    return events


# Every label name SoccerNet uses (v2 and v1): a label outside these and outside the class map is a typo or
# foreign data, reported; a known label outside the class map is background by design, silently.
V1_LABELS = frozenset(label for labels in _BUILTIN_MAPS["v1"].values() for label in labels) | {"substitution-out"}
KNOWN_LABELS = frozenset(SOCCERNET_V2_LABELS) | V1_LABELS


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
    pca: bool | None = True,
    feature_dim: int = FEATURE_DIM,
    fps: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped (video [T, D], audio [T, D]) of one half, truncated to the shorter with one warning; with
    `fps`, lengths further apart than `common.inputs.MAX_LENGTH_GAP_SEC` are refused (features of other inputs)."""
    game_dir = Path(game_dir)
    vpath = find_feature_file(game_dir, half, features_video, pca)
    apath = find_feature_file(game_dir, half, features_audio, None)
    video, audio = load_features(vpath, feature_dim), load_features(apath, feature_dim)
    if fps is not None:
        check_length_gap(vpath, video.shape[0], apath, audio.shape[0], fps)
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
