"""Read what a `.keras` model file says about itself without importing TensorFlow or Keras.

A model saved by `archis` keeps its spec (architecture, sizes, class names, class map, feature recipe) in
the archive's `config.json`; tools that only need those facts (evaluate.py, early input checks) read them here.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from soccer_highlights.common.errors import UserError
from soccer_highlights.common.modelspec import ModelSpec


def read_spec(path: str | os.PathLike) -> ModelSpec:
    """The archis spec stored in a `.keras` file; UserError if it is missing or not an archis model."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise UserError(f"{path}: not a Keras model ({exc})") from exc
    spec = config.get("config", {}).get("spec") if isinstance(config, dict) else None
    if not isinstance(spec, dict):
        raise UserError(f"{path}: not a model built by archis (no spec in config.json)")
    return ModelSpec.from_json(spec, str(path))
