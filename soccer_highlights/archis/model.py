"""`build_model` / `load_model` / `model_info`: a Keras model that carries its own spec.

`ArchiModel` is a functional model whose config is just the spec (architecture, pooling, sizes,
class and feature names); `from_config` rebuilds the same graph through the registry, and Keras then
restores the weights. So a `.keras` file records what it is and loads with plain
`keras.models.load_model` once `archis` is imported.
"""

from __future__ import annotations

import logging
import os
import weakref
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from soccer_highlights.archis.loading import assign_weights
from soccer_highlights.archis.names import (
    BATCH_NORMS,
    BN_EVALS,
    HEAD_INITS,
    L2_FLOORS,
    canonical_architecture,
    default_batch_norm,
    default_bn_eval,
    default_dropout,
    default_gating,
    default_head_init,
    default_l2_floor,
)
from soccer_highlights.archis.pooling import canonical_pooling, no_random_init
from soccer_highlights.archis.registry import ARCHITECTURES, Blocks
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.inputs import check_finite_weights
from soccer_highlights.common.modelfile import ModelArchive, open_model
from soccer_highlights.common.modelspec import ModelSpec

_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def make_spec(architecture: str | ModelSpec, **fields: Any) -> ModelSpec:
    """The canonical spec: `architecture` (a name, or a ModelSpec to copy), with `fields` of `ModelSpec` changed;
    original names made canonical, and dropout, context gating, batch-norm constants and classifier init None made
    the original's for the architecture (V&D: 0.4, gated poolings, TF1 slim's batch-norm evaluated with batch
    statistics, Glorot, TF's L2 floor; the seed's fusion models: 0.5, 0.6 for the transformer, no gating, PyTorch's
    batch-norm evaluated with running averages, nn.Linear init, F.normalize's floor)."""
    spec = architecture.replace(**fields) if isinstance(architecture, ModelSpec) else ModelSpec(architecture, **fields)
    name = canonical_architecture(spec.architecture)
    spec = spec.replace(
        architecture=name,
        pooling=canonical_pooling(spec.pooling),
        dropout=default_dropout(name) if spec.dropout is None else spec.dropout,
        context_gating=default_gating(name) if spec.context_gating is None else spec.context_gating,
        batch_norm=spec.batch_norm or default_batch_norm(name),
        head_init=spec.head_init or default_head_init(name),
        bn_eval=spec.bn_eval or default_bn_eval(name),
        l2_floor=spec.l2_floor or default_l2_floor(name),
    )
    if spec.batch_norm not in BATCH_NORMS or spec.head_init not in HEAD_INITS:
        raise UserError(
            f"batch_norm must be one of {', '.join(BATCH_NORMS)} and head_init one of {', '.join(HEAD_INITS)}, "
            f"got {spec.batch_norm} and {spec.head_init}"
        )
    if spec.bn_eval not in BN_EVALS or spec.l2_floor not in L2_FLOORS:
        raise UserError(
            f"bn_eval must be one of {', '.join(BN_EVALS)} and l2_floor one of {', '.join(L2_FLOORS)}, "
            f"got {spec.bn_eval} and {spec.l2_floor}"
        )
    return spec


@keras.saving.register_keras_serializable(package="archis")
class ArchiModel(keras.Model):
    """Functional model built from a ModelSpec; `get_config()` is that spec's JSON, so saving and loading round-trip."""

    def __init__(self, spec: ModelSpec | Mapping, name: str | None = None, **kwargs):
        spec = make_spec(spec if isinstance(spec, ModelSpec) else ModelSpec.from_json(spec))
        shape = (spec.window_frames, spec.feature_dim)
        inputs = {m: keras.Input(shape, dtype="float32", name=m) for m in ("video", "audio")}
        blocks = Blocks(spec, _POLICIES[spec.compute_dtype])
        logits = ARCHITECTURES[spec.architecture](blocks, inputs["video"], inputs["audio"])
        super().__init__(inputs=inputs, outputs=logits, name=name or spec.architecture, **kwargs)
        self.spec = spec

    def get_config(self) -> dict:
        return {"spec": self.spec.to_json(), "name": self.name}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> ArchiModel:
        return cls(spec=ModelSpec.from_json(config["spec"]), name=config.get("name"))


def build_model(architecture: str | ModelSpec, *, seed: int | None = None, **fields: Any) -> ArchiModel:
    """Build a ModelSpec, or `make_spec(architecture, **fields)` (canonical or original architecture name).
    Inputs {"video", "audio"}: [B, N, D]; output logits [B, C]. `seed` makes the initial weights reproducible (it
    seeds Keras' global generator)."""
    spec = make_spec(architecture, **fields)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    return ArchiModel(spec)


def model_info(model: keras.Model) -> ModelSpec:
    """The spec a model was built from (architecture, pooling, vlad_k, window and feature sizes, names, dtype)."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise UserError(f"model {getattr(model, 'name', model)!r} was not built by archis (no spec)")
    return spec


_SHARED: weakref.WeakValueDictionary[tuple, keras.Model] = weakref.WeakValueDictionary()


def load_model(path: str | os.PathLike, *, shared: bool = False) -> keras.Model:
    """Load a `.keras` file written by `model.save`; UserError if it is missing, not a Keras model, over a size
    cap, or its spec is out of range or disagrees with its weights (`common.modelfile.open_model`).

    A model built by archis is built from its spec and its weights are read once, straight into the variables
    (`archis.loading`); anything else goes through `keras.models.load_model`. `shared`: one object per file in
    the process for every caller that only scores with it (the file's identity, size and time are the key)."""
    path = Path(path)
    archive = open_model(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if shared and key in _SHARED:
        return _SHARED[key]
    model = _load_archis(archive) if archive.spec is not None else None
    if model is None:
        model = _load_with_keras(path)
    if shared:
        _SHARED[key] = model
    return model


def _load_archis(archive: ModelArchive) -> keras.Model | None:
    """The archis model of `archive`, its weights mapped from the file; None if the file is not laid out as
    `archis.loading` expects (compressed, another Keras version's layout): then Keras' loader reads it."""
    config = archive.config
    if config.get("registered_name", config.get("class_name")) not in ("archis>ArchiModel", "ArchiModel"):
        return None
    assert archive.spec is not None
    with no_random_init():  # NetVLAD's variables on untouched zero pages: the file's weights replace them
        model = ArchiModel(archive.spec, name=config.get("config", {}).get("name"))
    try:
        assign_weights(model, archive)
    except (ValueError, KeyError, AttributeError, OSError) as exc:
        logging.getLogger(__name__).debug("%s: read by Keras' loader (%s)", archive.path, exc)
        return None
    return model


def _load_with_keras(path: Path) -> keras.Model:
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a Keras model (not a .keras zip archive)")
    try:
        with no_random_init():  # every weight is about to be read from the file
            model = keras.models.load_model(path)
    except (ValueError, KeyError, OSError, TypeError, zipfile.BadZipFile) as exc:
        text = " ".join(str(exc).split())
        if "Lambda" in text and "safe_mode" in text:
            raise UserError(
                f"{path}: a Keras model with a Lambda layer (Python code in the file), which is never loaded: "
                "code in a model file could do anything; rebuild the model with archis"
            ) from exc
        first = text.split(". ")[0]  # whole sentences only
        raise UserError(f"{path}: not a Keras model ({first[:300]})") from exc
    check_finite_weights(model, str(path))
    return model
