"""Weight files: the Keras cache folder, download-once-or-explain, and seeded random weights for smoke tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from soccer_highlights.common.errors import UserError


def keras_home() -> Path:
    """$KERAS_HOME or ~/.keras (read at call time, so tests and users can point it elsewhere)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def download_or_fail(fname: str, url: str, *, what: str, flag: str, file_hash: str | None = None) -> Path:
    """`<keras_home>/models/<fname>`, downloaded once from `url` if absent; offline -> one clear UserError."""
    target = keras_home() / "models" / fname
    if target.exists():
        return target
    import keras

    try:
        got = keras.utils.get_file(fname, url, cache_subdir="models", cache_dir=str(keras_home()), file_hash=file_hash)
    except Exception as exc:  # keras wraps network errors in a bare Exception
        raise UserError(
            f"{what} not available ({str(exc).splitlines()[0][:160]}): download {url} and place it "
            f"at {target}, or pass {flag} FILE"
        ) from exc
    return Path(got)


def assign_random(model, seed: int) -> None:
    """Give every kernel Glorot-uniform values from a NumPy generator seeded with `seed` (other weights keep
    their constant initialisers): identical weights in every process without touching global RNG state."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        shape = tuple(kernel.shape)
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        limit = np.sqrt(6.0 / (shape[-2] * receptive + shape[-1] * receptive))
        kernel.assign(rng.uniform(-limit, limit, shape).astype(np.float32))
