"""`build_model` / `load_model` / `model_info`: a Keras model that carries its own spec.

`ArchiModel` is a functional model whose config is just the spec (architecture, pooling, sizes,
class and feature names); `from_config` rebuilds the same graph through the registry, and Keras then
restores the weights. So a `.keras` file records what it is and loads with plain
`keras.models.load_model` once `archis` is imported.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras

from archis.pooling import canonical_pooling, no_random_init
from archis.registry import ARCHITECTURES, Blocks, canonical_architecture, default_dropout, default_gating
from common.constants import BACKGROUND, FEATURE_DIM, FEATURE_NAMES, TOKENS_PER_SECOND
from common.errors import UserError
from common.inputs import check_finite_weights

DEFAULT_CLASSES = (BACKGROUND, "kick", "subs", "card", "goal")
DEFAULT_FEATURES = FEATURE_NAMES
_DTYPES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "mixed_bfloat16": "mixed_bfloat16"}
SPEC_FIELDS = (
    "architecture",
    "pooling",
    "vlad_k",
    "window_seconds",
    "frames_per_second",
    "window_frames",
    "feature_dim",
    "class_names",
    "feature_names",
    "compute_dtype",
    "dropout",
    "context_gating",
    "class_map",
    "feature_recipe",
)


def make_spec(
    architecture: str,
    *,
    class_names: Sequence[str] = DEFAULT_CLASSES,
    pooling: str = "NetVLAD",
    vlad_k: int = 512,
    window_seconds: float = 60.0,
    frames_per_second: float = TOKENS_PER_SECOND,
    feature_dim: int = FEATURE_DIM,
    feature_names: Mapping[str, str] | None = None,
    dropout: float | None = None,
    compute_dtype: str = "float32",
    context_gating: bool | None = None,
    class_map: Mapping | None = None,
    feature_recipe: Mapping | None = None,
) -> dict:
    """Validate the arguments of `build_model` and return the canonical, JSON-serialisable spec.

    `dropout` / `context_gating` None: the original's for the architecture (V&D: 0.4 and gated poolings; the
    seed's fusion models: 0.5, 0.6 for the transformer, and no gating). `class_map` ({"name", "classes",
    "labels": {class: [SoccerNet labels]}}) and `feature_recipe` ({"video", "audio"}, see common/features.py)
    record what the model was trained on; None when unknown (left out of the spec; older files load with None).
    """
    if dropout is None:
        dropout = default_dropout(architecture)
    if context_gating is None:
        context_gating = default_gating(architecture)
    frames = round(float(window_seconds) * float(frames_per_second))
    if frames < 1:
        raise UserError(f"a window of {window_seconds} s at {frames_per_second} fps has no frames")
    if int(vlad_k) < 1 or int(feature_dim) < 1:
        raise UserError(f"VLAD_k and feature_dim must be positive, got {vlad_k} and {feature_dim}")
    if len(class_names) < 1:
        raise UserError("at least one class name is needed")
    if not 0.0 <= float(dropout) < 1.0:
        raise UserError(f"dropout must be in [0, 1), got {dropout}")
    if compute_dtype not in _DTYPES:
        raise UserError(f"unknown compute_dtype {compute_dtype!r}; valid: float32, bfloat16")
    if class_map is not None and list(class_map.get("classes", [])) != [str(c) for c in class_names]:
        raise UserError(f"class map classes {class_map.get('classes')} differ from the class names {list(class_names)}")
    recorded = {k: _plain(v) for k, v in (("class_map", class_map), ("feature_recipe", feature_recipe)) if v}
    return {
        "architecture": canonical_architecture(architecture),
        "pooling": canonical_pooling(pooling),
        "vlad_k": int(vlad_k),
        "window_seconds": float(window_seconds),
        "frames_per_second": float(frames_per_second),
        "window_frames": int(frames),
        "feature_dim": int(feature_dim),
        "class_names": [str(c) for c in class_names],
        "feature_names": dict(feature_names or DEFAULT_FEATURES),
        "compute_dtype": "bfloat16" if _DTYPES[compute_dtype] == "mixed_bfloat16" else "float32",
        "dropout": float(dropout),
        "context_gating": bool(context_gating),
        **recorded,  # left out when unknown, so such files stay readable by versions without them
    }


def _plain(value: Mapping) -> dict:
    """A JSON round-trip copy (plain dicts and lists, as the saved config will hold)."""
    return json.loads(json.dumps(dict(value)))


@keras.saving.register_keras_serializable(package="archis")
class ArchiModel(keras.Model):
    """Functional model built from a spec dict; `get_config()` is that spec, so saving and loading round-trip."""

    def __init__(self, spec: Mapping, name: str | None = None, **kwargs):
        spec = make_spec(**{k: v for k, v in spec.items() if k not in ("window_frames",)})
        shape = (spec["window_frames"], spec["feature_dim"])
        inputs = {m: keras.Input(shape, dtype="float32", name=m) for m in ("video", "audio")}
        blocks = Blocks(spec, _DTYPES[spec["compute_dtype"]])
        logits = ARCHITECTURES[spec["architecture"]](blocks, inputs["video"], inputs["audio"])
        super().__init__(inputs=inputs, outputs=logits, name=name or spec["architecture"], **kwargs)
        self.spec = spec

    def get_config(self) -> dict:
        return {"spec": dict(self.spec), "name": self.name}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> ArchiModel:
        spec = dict(config["spec"])
        if "context_gating" not in spec:  # saved before the spec named it: every pooling gated but GMU's and CMGA's
            spec["context_gating"] = canonical_architecture(spec["architecture"]) not in ("gmu", "cmga")
        return cls(spec=spec, name=config.get("name"))


def build_model(
    architecture: str,
    *,
    class_names: Sequence[str] = DEFAULT_CLASSES,
    pooling: str = "NetVLAD",
    vlad_k: int = 512,
    window_seconds: float = 60.0,
    frames_per_second: float = TOKENS_PER_SECOND,
    feature_dim: int = FEATURE_DIM,
    feature_names: Mapping[str, str] | None = None,
    dropout: float | None = None,
    compute_dtype: str = "float32",
    context_gating: bool | None = None,
    class_map: Mapping | None = None,
    feature_recipe: Mapping | None = None,
    seed: int | None = None,
) -> ArchiModel:
    """Build an architecture by canonical or original name. Inputs {"video", "audio"}: [B, N, D]; output logits [B, C].

    `seed` makes the initial weights reproducible (it seeds Keras' global generator).
    """
    spec = make_spec(
        architecture,
        class_names=class_names,
        pooling=pooling,
        vlad_k=vlad_k,
        window_seconds=window_seconds,
        frames_per_second=frames_per_second,
        feature_dim=feature_dim,
        feature_names=feature_names,
        dropout=dropout,
        compute_dtype=compute_dtype,
        context_gating=context_gating,
        class_map=class_map,
        feature_recipe=feature_recipe,
    )
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    return ArchiModel(spec)


def model_info(model: keras.Model) -> dict:
    """The spec a model was built from (architecture, pooling, vlad_k, window and feature sizes, names, dtype)."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, Mapping):
        raise UserError(f"model {getattr(model, 'name', model)!r} was not built by archis (no spec)")
    return {k: spec.get(k) for k in SPEC_FIELDS}


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a `.keras` file written by `model.save`; UserError if it is missing or not a Keras model."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file")
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
