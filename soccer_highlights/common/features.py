"""What a folder of features was made with: its `extraction.json` record and the feature recipe in it.

The recipe names how the network inputs were made: `video` ("soccernet": SoccerNet's frame rule and channel
order; "rgb": this tool's original ImageNet-convention frames) and `audio` ("channel_mean": V&D's mean of the
channels; "ffmpeg_downmix": ffmpeg's `-ac 1`). A model records the recipe of its training features, and the
tools warn when they feed it features made another way (see docs/DESIGN.md, "Feature recipe").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from soccer_highlights.common.errors import UserError

log = logging.getLogger(__name__)

RECORD_NAME = "extraction.json"
# extraction.json files written before the recipe was recorded made their features this way.
LEGACY_RECIPE = {"video": "rgb", "audio": "ffmpeg_downmix"}
# Folders without extraction.json hold features made elsewhere: SoccerNet's release (video) and V&D's
# (audio), which is what the "soccernet" / "channel_mean" recipe reproduces.
SOCCERNET_RECIPE = {"video": "soccernet", "audio": "channel_mean"}
# Beside an int8 feature model (and copied into extraction.json): how far its features are from float32's.
FIDELITY_NAME = "fidelity.json"
# Int8 features feeding a model trained on float32 features: warn above this drift (the worst median per-token
# relative L2 of the features the model sees, measured by `calibrate` / `check_precision`).
DRIFT_WARN = 0.05


def read_record(folder: str | Path) -> dict | None:
    """The folder's extraction.json as a dict; None when it is missing or unreadable (never raises)."""
    path = Path(folder) / RECORD_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recipe_of(record: Mapping | None) -> dict:
    """{"video", "audio"} recipe of a record: its own, the legacy one for old records, the release's for none;
    plus "precision": "int8" for int8 features."""
    if record is None:
        return dict(SOCCERNET_RECIPE)
    recipe = record.get("recipe")
    if recipe is None:
        return dict(LEGACY_RECIPE)
    if not isinstance(recipe, Mapping) or not {"video", "audio"} <= recipe.keys():
        raise UserError(f'extraction.json: \'recipe\' must be {{"video": ..., "audio": ...}}, got {recipe!r}')
    out = {"video": str(recipe["video"]), "audio": str(recipe["audio"])}
    if record.get("compute_dtype") == "int8":  # recorded so a model trained on int8 features knows it
        out["precision"] = "int8"
    return out


def folder_recipe(folder: str | Path) -> dict:
    """The recipe of the features in `folder` (see `recipe_of`)."""
    return recipe_of(read_record(folder))


def random_weights(record: Mapping | None) -> bool:
    """True when the record says the features came from random (test-only) network weights."""
    return record is not None and record.get("weights") == "random"


def recipe_mismatch(model_recipe: Mapping | None, data_recipe: Mapping) -> str | None:
    """A one-line description of how the data's recipe differs from the model's, or None (also for no model recipe)."""
    if not model_recipe:
        return None
    diff = [
        f"{k} {data_recipe.get(k)!r} (model trained on {model_recipe.get(k)!r})"
        for k in ("video", "audio")
        if model_recipe.get(k) and model_recipe.get(k) != data_recipe.get(k)
    ]
    return ", ".join(diff) or None


def drift_problem(model_recipe: Mapping | None, record: Mapping | None) -> str | None:
    """A description when lower-precision features feed a model trained on other features and their recorded
    drift from float32 is above DRIFT_WARN, else None. int8 with no recorded drift is a problem too (its
    calibration always records one); bfloat16 without a `check_precision` report is not (its drift is ~4e-3)."""
    dtype = (record or {}).get("compute_dtype")
    if dtype not in ("int8", "bfloat16") or (model_recipe or {}).get("precision") == dtype:
        return None
    fidelity = record.get("fidelity") if record else None
    value = fidelity.get("drift") if isinstance(fidelity, Mapping) else None
    if not isinstance(value, (int, float)):
        return (
            None
            if dtype == "bfloat16"
            else ("int8 features with no recorded fidelity check (run `python -m extract_features check_precision`)")
        )
    if value > DRIFT_WARN:
        return f"{dtype} features drift {value:.3f} from float32 (above {DRIFT_WARN}; see check_precision)"
    return None


class RecipeCheck:
    """Warns once per process run (not once per game) when features were made with another recipe than the model's."""

    def __init__(self, model_recipe: Mapping | None, model_name: str) -> None:
        self.model_recipe = model_recipe
        self.model_name = model_name
        self.warned = False
        self.warned_drift = False

    def __call__(self, data_recipe: Mapping, what: str, record: Mapping | None = None) -> bool:
        """Check one input; return True when it matches (or the model records no recipe). With the input's
        extraction record, int8 features are also checked against the drift rule (`drift_problem`)."""
        drift = drift_problem(self.model_recipe, record)
        if drift and not self.warned_drift:
            log.warning("%s: %s; %s was trained on float32 features", what, drift, self.model_name)
            self.warned_drift = True
        problem = recipe_mismatch(self.model_recipe, data_recipe)
        if problem and not self.warned:
            log.warning(
                "%s: features made with another recipe than %s was trained on: %s; scores may be "
                "meaningless (re-extract with the model's recipe)",
                what,
                self.model_name,
                problem,
            )
            self.warned = True
        return problem is None


def tokens_per_second_of(record: Mapping | None) -> float | None:
    """The token rate an extraction record states (`tokens_per_second`; `frames_per_second` in older records)."""
    if not record:
        return None
    value = record.get("tokens_per_second", record.get("frames_per_second"))
    return None if value is None else float(value)


def frame_rate_problem(record: Mapping | None, model_tokens_per_second: float) -> str | None:
    """A description when the record's token rate differs from the model's, else None."""
    rate = tokens_per_second_of(record)
    if rate is None or abs(rate - float(model_tokens_per_second)) < 1e-9:
        return None
    return f"features are {rate:g} tokens/s but the model expects {float(model_tokens_per_second):g}"
