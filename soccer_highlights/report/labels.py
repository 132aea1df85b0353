"""A match's identity, and the reviewed labels that report.html's review mode downloads (`Labels-v2.json`).

The identity names what the scores were computed from, so that labels reviewed on one match are never applied to
another: every input file of the match (the video, or the feature files it was scored from) with its size and its
SHA-256 (streamed over the whole file, 1 MiB at a time), the model file and its classes, and the class map. The
report embeds it; `spans.json` records it; the download carries it; `soccer-trainset` compares it.

The download is SoccerNet's `Labels-v2.json` (`annotations`: `gameTime` "half - mm:ss", `label`, `position` in ms as
a string, `team` and `visibility` when known) plus `identity` and `review` (how many items were reviewed and left).
A class is written as its first SoccerNet label in the model's class map (a custom map's own label names), or its
own name when the model has no map. `labels_document` writes the same object in Python (the benchmark's simulated
review); `read_reviewed` reads and checks one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soccer_highlights.common.atomic import read_json
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.timefmt import game_time
from soccer_highlights.dataset import find_feature_file

if TYPE_CHECKING:
    from soccer_highlights.core.match import Result

HASH = "sha256"
FORMAT = "soccer_highlights review 1"


def file_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def file_record(role: str, path: str | os.PathLike) -> dict[str, Any]:
    """One input file of a match as its identity names it: role, file name, size in bytes, SHA-256."""
    path = Path(path)
    try:
        return {"role": role, "name": path.name, "size": path.stat().st_size, HASH: file_digest(path)}
    except FileNotFoundError:  # a Result built in code for files that are gone: labels of it can never be applied
        return {"role": role, "name": path.name, "size": None, HASH: None}
    except OSError as exc:
        raise UserError(f"{path}: cannot read it to record the match's identity ({exc.strerror})") from exc


def match_files(result: Result) -> list[tuple[str, Path]]:
    """(role, path) of every file the match's scores were computed from: its video, its feature files, and for a
    SoccerNet game folder each half's feature files."""
    match, files = result.match, []
    if match.video_file is not None:
        files.append(("video", match.video_file))
    if match.features_video is not None and match.features_audio is not None:
        files += [("features_video", match.features_video), ("features_audio", match.features_audio)]
    if match.game_dir is not None:
        names = result.spec.feature_names
        for h in result.halves:
            for role in ("video", "audio"):
                try:
                    found = find_feature_file(match.game_dir, h.number, names[role], None)
                except UserError:  # not there (a Result built in code): the identity cannot name it
                    found = match.game_dir / f"{h.number}_{names[role]}.npy"
                files.append((f"half{h.number}_features_{role}", found))
    return files


def class_labels_by_name(result: Result) -> dict[str, str]:
    """Class name -> the label written for it: the first SoccerNet label of the class in the model's map, or the
    class name itself when the model has none."""
    names = list(result.spec.class_names)
    if result.cmap is None:
        return {n: n for n in names}
    return {n: result.cmap.index_to_label.get(i, n) for i, n in enumerate(names)}


def match_identity(result: Result) -> dict[str, Any]:
    """What a review's labels belong to: the match's input files (size, SHA-256), the model, the class map."""
    spec = result.spec
    files = [file_record(role, path) for role, path in match_files(result)]
    key = hashlib.sha256("".join(f"{f[HASH]}{f['name']}" for f in files).encode()).hexdigest()[:16]
    return {
        "match": result.match.source.name,
        "files": files,
        "halves": [h.number for h in result.halves],
        "hash": HASH,
        "key": key,
        "model": {
            "file": Path(result.model).name,
            "architecture": spec.architecture,
            "class_names": list(spec.class_names),
        },
        "class_map": result.cmap.to_json() if result.cmap is not None else None,
        "labels": class_labels_by_name(result),
    }


def same_files(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> bool:
    """Whether two identities name the same files (role, size and hash; the names may differ after a rename)."""
    strip = lambda files: sorted((f.get("role"), f.get("size"), f.get(HASH)) for f in files)  # noqa: E731
    return strip(a) == strip(b)


@dataclass(frozen=True)
class Reviewed:
    """One reviewed event: half, seconds since the half started, class name; team and visibility when known."""

    half: int
    seconds: float
    cls: str
    team: str | None = None
    visibility: str | None = None


def labels_document(
    identity: Mapping[str, Any], events: Iterable[Reviewed], *, reviewed: int | None = None, left: int = 0
) -> dict[str, Any]:
    """The `Labels-v2.json` review mode downloads, for `events` of the match `identity` names."""
    labels = identity.get("labels") or {}
    ordered = sorted(events, key=lambda e: (e.half, e.seconds))
    annotations = []
    for e in ordered:
        ann: dict[str, Any] = {
            "gameTime": game_time(e.half, e.seconds),
            "label": labels.get(e.cls, e.cls),
            "position": str(round(e.seconds * 1000)),
        }
        if e.team:
            ann["team"] = e.team
        if e.visibility:
            ann["visibility"] = e.visibility
        annotations.append(ann)
    return {
        "UrlLocal": identity.get("match", ""),
        "annotations": annotations,
        "identity": dict(identity),
        "review": {"format": FORMAT, "reviewed": len(annotations) if reviewed is None else reviewed, "left": left},
    }


def read_reviewed(path: str | os.PathLike) -> dict[str, Any]:
    """A downloaded review: its object, checked to hold annotations and an identity (else one line naming it)."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise UserError(f"{path}: not a Labels-v2.json (no 'annotations' list)")
    identity = data.get("identity")
    if not isinstance(identity, dict) or not isinstance(identity.get("files"), list) or not identity["files"]:
        raise UserError(
            f"{path}: no match identity (not downloaded from a report's review mode, so it cannot be checked "
            "against a match)"
        )
    if identity.get("hash") != HASH:
        raise UserError(f"{path}: identity hashed with {identity.get('hash')!r}, expected {HASH}")
    return data
