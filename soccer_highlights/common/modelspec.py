"""`ModelSpec`: what a model is (architecture, sizes, token rate, classes, class map, feature names and recipe).

The spec is written into every `.keras` file (`config.json`, as `to_json()`) and read back with `from_json`, which
also reads the files of earlier versions (older key names, fields they did not have yet). It lives in `common`, with
no TensorFlow import, so tools that only read a model file's facts (`common/modelfile.py`) stay light;
`archis.make_spec` turns original names into canonical ones and fills the originals' defaults.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from soccer_highlights.common.constants import BACKGROUND, FEATURE_DIM, FEATURE_NAMES, TOKENS_PER_SECOND
from soccer_highlights.common.errors import UserError

DEFAULT_CLASSES = (BACKGROUND, "kick", "subs", "card", "goal")
COMPUTE_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "mixed_bfloat16": "bfloat16"}

# The range of each size a spec may hold (a model file is untrusted: a window of 1e9 s would ask for terabytes).
# Generous: V&D's windows are 5-60 s at 2 tokens/s, K up to 512, D 512 (2048 without PCA), 4-18 classes.
RANGES: dict[str, tuple[float, float]] = {
    "window_seconds": (0.0, 3600.0),
    "tokens_per_second": (0.0, 100.0),
    "vlad_k": (1, 8192),
    "feature_dim": (1, 16384),
    "classes": (1, 1000),
}
MAX_WINDOW_FRAMES = 20_000

# Keys of earlier files -> the field that holds them now.
RENAMED_KEYS = {"frames_per_second": "tokens_per_second"}
DERIVED_KEYS = ("window_frames",)  # written for readers of config.json, recomputed on load


@dataclass(frozen=True)
class ModelSpec:
    """One model's spec. Adding a field is one line here, `name: type = value_old_files_mean`: `from_json` fills a
    key that older files lack from that default, `to_json` writes the new key, `archis.make_spec` and
    `build_model` accept it as a keyword, and the readers use `spec.name`. (Where new models need another default
    than old files mean, default to None and resolve it in `archis.make_spec`, as `dropout` is; `context_gating`
    also has an old-file rule in `from_json`.) A renamed key goes into RENAMED_KEYS.

    `dropout` / `context_gating` None: the original's for the architecture (`archis.make_spec` fills them in).
    `class_map` ({"name", "classes", "labels": {class: [SoccerNet labels]}}) and `feature_recipe` ({"video",
    "audio"}, see common/features.py) record what the model was trained on, `training` how (class weighting,
    batch size, schedule: the choices that follow the original of the architecture); None when unknown.
    `batch_norm` / `head_init` None: the original's for the architecture (batch-norm constants and classifier
    initialisation, filled in by `archis.make_spec`); files saved before they existed mean Keras' and Glorot.
    `bn_eval` / `l2_floor` None: the original's (batch-norm statistics at evaluation, `archis.names.BN_EVALS`;
    the VLAD normalisation floor, `archis.names.L2_FLOORS`); files saved before they existed mean `moving` and
    `squared`.
    `init_model`: the model a fine-tuned model started from (`--init_model`: its file name and SHA-256, its
    architecture and classes, and whether the classification head was kept or re-initialised); None otherwise.
    """

    architecture: str
    class_names: tuple[str, ...] = DEFAULT_CLASSES
    pooling: str = "NetVLAD"
    vlad_k: int = 512
    window_seconds: float = 60.0
    tokens_per_second: float = TOKENS_PER_SECOND
    feature_dim: int = FEATURE_DIM
    feature_names: Mapping[str, str] = field(default_factory=lambda: dict(FEATURE_NAMES))
    dropout: float | None = None
    compute_dtype: str = "float32"
    context_gating: bool | None = None
    class_map: Mapping[str, Any] | None = None
    feature_recipe: Mapping[str, str] | None = None
    training: Mapping[str, Any] | None = None
    batch_norm: str | None = None
    head_init: str | None = None
    bn_eval: str | None = None
    l2_floor: str | None = None
    init_model: Mapping[str, Any] | None = None  # fine-tuned from: {file, sha256, architecture, classes, head}

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen: normalise in place
        fix("class_names", tuple(str(c) for c in self.class_names))
        fix("vlad_k", int(self.vlad_k))
        fix("window_seconds", float(self.window_seconds))
        fix("tokens_per_second", float(self.tokens_per_second))
        fix("feature_dim", int(self.feature_dim))
        fix("feature_names", dict(self.feature_names or FEATURE_NAMES))
        for name in ("class_map", "feature_recipe", "training", "init_model"):  # plain JSON copies, as saved
            value = getattr(self, name)
            fix(name, json.loads(json.dumps(dict(value))) if value else None)
        if self.dropout is not None:
            fix("dropout", float(self.dropout))
        if self.context_gating is not None:
            fix("context_gating", bool(self.context_gating))
        fix("compute_dtype", COMPUTE_DTYPES.get(self.compute_dtype, self.compute_dtype))
        self._check()

    def _check(self) -> None:
        for name, (lo, hi) in RANGES.items():  # NaN fails every comparison, so it is out of range too
            value = len(self.class_names) if name == "classes" else getattr(self, name)
            if not lo <= value <= hi:
                raise UserError(f"{name} must be in [{lo:g}, {hi:g}], got {value:g}")
        if self.window_frames < 1:
            raise UserError(
                f"a window of {self.window_seconds:g} s at {self.tokens_per_second:g} tokens/s has no frames"
            )
        if self.window_frames > MAX_WINDOW_FRAMES:
            raise UserError(
                f"a window of {self.window_seconds:g} s at {self.tokens_per_second:g} tokens/s has "
                f"{self.window_frames} tokens, more than {MAX_WINDOW_FRAMES}"
            )
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.compute_dtype not in COMPUTE_DTYPES.values():
            raise UserError(f"unknown compute_dtype {self.compute_dtype!r}; valid: float32, bfloat16")
        if self.class_map is not None and list(self.class_map.get("classes", [])) != list(self.class_names):
            raise UserError(
                f"class map classes {self.class_map.get('classes')} differ from the class names {list(self.class_names)}"
            )

    @property
    def window_frames(self) -> int:
        """Tokens in one window (`window_seconds` x `tokens_per_second`)."""
        return round(self.window_seconds * self.tokens_per_second)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with `changes` (checked like a new spec)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The JSON form written into the model file: every field (tuples as lists; unknown ones, None, left out),
        plus `window_frames` for whoever reads config.json."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        data["class_names"] = list(self.class_names)
        data["window_frames"] = self.window_frames
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "model spec") -> ModelSpec:
        """A spec from `to_json()`'s form or from a file of an earlier version (renamed keys, absent fields)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("architecture"), str):
            raise UserError(f"{where}: not a model spec (no architecture)")
        values = {RENAMED_KEYS.get(k, k): v for k, v in data.items() if k not in DERIVED_KEYS}
        if "context_gating" not in values:  # saved before the spec named it: every pooling gated but GMU's and CMGA's
            values["context_gating"] = values["architecture"] not in ("gmu", "cmga")
        if "batch_norm" not in values:  # saved before the spec named them: Keras' constants, Glorot heads, and
            values.update(batch_norm="keras", head_init="glorot")  # NetVLAD++ meant V&D's NetVLAD on each half
            if values.get("pooling") in ("NetVLAD++", "netvlad++"):
                values["pooling"] = "NetVLAD++vd"
        values.setdefault("bn_eval", "moving")  # saved before the spec named them: what those files were
        values.setdefault("l2_floor", "squared")  # evaluated with, and tf.nn.l2_normalize's floor
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UserError(f"{where}: unknown spec fields {', '.join(unknown)} (written by a newer version?)")
        try:
            return cls(**values)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from exc
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise UserError(f"{where}: malformed model spec ({exc})") from exc
