"""Checked reads of user-given arrays: one .npy reader that never unpickles and says what is wrong in one line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from soccer_highlights.common.errors import UserError

_NPY_MAGIC = b"\x93NUMPY"


def _what_it_is(head: bytes) -> str:
    if not head:
        return "the file is empty"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "no NumPy header"
    if text.isprintable() or all(c.isprintable() or c.isspace() for c in text):
        return f"it is text ({text[:20].splitlines()[0]!r}...): a text file named .npy?"
    return "no NumPy header"


def open_npy(path: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
    """The array of a .npy file (memory-mapped unless `mmap` is False). Never unpickles: a file that is not
    a .npy array, or holds Python objects, is a one-line UserError naming it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a .npy file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not head.startswith(_NPY_MAGIC):
        raise UserError(f"{path}: not a .npy array file ({_what_it_is(head)})")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise UserError(
                f"{path}: holds Python objects, not plain numbers or strings "
                "(save it with a fixed dtype, e.g. np.array(values, dtype=str))"
            ) from exc
        raise UserError(f"{path}: not a readable .npy array ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise UserError(f"{path}: truncated or unreadable .npy array ({exc})") from exc


def check_finite(arr: np.ndarray, what: str, chunk: int = 8192) -> None:
    """UserError naming `what` and the first row holding NaN or infinity (read `chunk` rows at a time)."""
    for i in range(0, arr.shape[0], chunk):
        bad = ~np.isfinite(arr[i : i + chunk])
        if bad.any():
            raise UserError(f"{what}: NaN or infinite value at row {i + int(np.argwhere(bad)[0][0])}")


# Video and audio features of one input may differ by a few tokens (truncated); more means other inputs.
MAX_LENGTH_GAP_SEC = 5.0


def check_length_gap(
    video: str | os.PathLike, n_video: int, audio: str | os.PathLike, n_audio: int, fps: float
) -> None:
    """The one rule for a pair of feature files: lengths more than MAX_LENGTH_GAP_SEC apart are features of
    different inputs (UserError naming both); a smaller gap is truncated by the caller."""
    if abs(n_video - n_audio) > MAX_LENGTH_GAP_SEC * fps:
        raise UserError(
            f"{video} has {n_video} rows ({n_video / fps:.1f} s) but {audio} has {n_audio} ({n_audio / fps:.1f} s): "
            f"features of different videos? (at most {MAX_LENGTH_GAP_SEC:g} s apart)"
        )


def check_finite_weights(model: Any, what: str) -> None:
    """UserError naming `what` and the first weight tensor of a Keras model holding NaN or infinity (a broken
    weights file would otherwise give NaN scores or features and exit 0)."""
    for weight in model.weights:
        values = np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight)
        if values.size and not np.isfinite(values).all():
            name = getattr(weight, "path", None) or getattr(weight, "name", "?")
            raise UserError(f"{what}: NaN or infinite value in weights {name}")


def load_features(path: str | os.PathLike, width: int | None = None, finite: bool = True) -> np.ndarray:
    """Memory-mapped float features [T, D] of a .npy file: dtype, shape (D = `width` when given) and, with
    `finite`, the absence of NaN / infinity checked before any work uses them."""
    arr = open_npy(path)
    expected = f"[T, {width}]" if width else "[T, D]"
    if arr.ndim != 2 or (width is not None and arr.shape[1] != width):
        raise UserError(f"{path}: expected shape {expected}, found {list(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise UserError(f"{path}: expected float features, found {arr.dtype}")
    if finite:
        check_finite(arr, str(path))
    return arr
