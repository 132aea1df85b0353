"""Folder names made from input names: safe (never `.`, `..`, empty, hidden, or a name the run writes itself),
unique, and the same whatever order the inputs come in (a re-run writes into the same folders)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from soccer_highlights.common.errors import UserError

# characters that do not belong in a folder name on any common file system, and control characters
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')
_MAX_LEN = 120


def safe_name(name: str, reserved: Iterable[str] = ()) -> str:
    """`name` as one path component that stays inside its parent: unsafe characters become `_`, leading dots
    and spaces are dropped (no `.`, `..` or hidden name: hidden names are the staging area's), an empty result
    is `video`, and a name in `reserved` (compared without case) gets a trailing `_`."""
    cleaned = _UNSAFE.sub("_", name).strip().lstrip(". ").rstrip(". ")[:_MAX_LEN] or "video"
    taken = {r.lower() for r in reserved}
    while cleaned.lower() in taken:
        cleaned += "_"
    return cleaned


def check_prefix(value: str, flag: str) -> str:
    """A file name prefix given by a flag, refused (UserError) unless it is a safe name: no folder part, no
    leading dot, nothing that would put an output outside its folder."""

    if value and safe_name(value) != value:
        raise UserError(f"{flag} {value!r}: not a plain name (no /, \\, leading dots or control characters)")
    return value


def _path_key(path: Path) -> str:
    return hashlib.sha1(os.fsencode(Path(path).absolute()), usedforsecurity=False).hexdigest()[:8]


def unique_names(paths: Sequence[Path], reserved: Iterable[str] = ()) -> list[str]:
    """A safe folder name per path (its stem), unique without regard to case: when stems collide, each of them
    gets `-<8 hex digits of its absolute path>`, so a name depends only on the path and the set of inputs,
    never on their order."""
    reserved = tuple(reserved)
    base = [safe_name(Path(p).stem, reserved) for p in paths]
    counts: dict[str, int] = {}
    for b in base:
        counts[b.lower()] = counts.get(b.lower(), 0) + 1
    return [f"{b}-{_path_key(p)}" if counts[b.lower()] > 1 else b for b, p in zip(base, paths, strict=True)]
