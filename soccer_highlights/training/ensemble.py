"""Prediction mode (logits, probabilities and labels of a window list) and V&D's prediction-level ensembles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from soccer_highlights import archis  # light: its names load on first use
from soccer_highlights.archis.names import ENSEMBLE_ALIASES, ENSEMBLES
from soccer_highlights.common.atomic import atomic_path, write_json
from soccer_highlights.common.errors import UserError
from soccer_highlights.training import windows
from soccer_highlights.training.config import ENSEMBLE_METHODS, TrainConfig
from soccer_highlights.training.loop import open_caches, predict_cache
from soccer_highlights.training.memory import inference_windows
from soccer_highlights.training.metrics import evaluate_scores, fmt, sigmoid

# V&D's ensembles (`networks.py`) and the predictions each combines (its `video_input_file`, `audio_input_file`:
# `Model/Archi1/logits_video.npy` and `Model/Archi2/logits_audio.npy`, or Archi10's and Archi11's), as the
# canonical architectures of those members: Archi1 is VideoNetwork (`video`), Archi2 AudioNetwork (`audio`),
# Archi10 and Archi11 V&D's other video-only and audio-only networks (`video`, `audio` here too).
ENSEMBLE_MEMBERS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "Archi3Prediction": (("Archi1", "video"), ("Archi2", "audio")),
    "Archi9Prediction": (("Archi1", "video"), ("Archi2", "audio")),
    "Archi12Prediction": (("Archi10", "video"), ("Archi11", "audio")),
    "Archi18Prediction": (("Archi10", "video"), ("Archi11", "audio")),
}


def vd_ensemble_name(name: str | None) -> str | None:
    """V&D's name of the ensemble `name` stands for (its own spelling or an accepted alias, any case), else None."""
    key = str(name or "").strip().lower()
    names = {n.lower(): n for n in ENSEMBLES} | {a.lower(): c for a, c in ENSEMBLE_ALIASES.items()}
    return names.get(key)


def predict(cfg: TrainConfig) -> Path:
    """Per-window outputs of a model on the `testing` list, saved as `<tflog>/<prefix>_predictions_<list>.npz`."""
    model_path = Path(cfg.model_path or cfg.out("_best.keras"))
    if not model_path.is_file():
        raise UserError(f"{model_path}: no trained model (train first, or give --model)")
    cache = open_caches(cfg, ("testing",))["testing"]

    model = archis.load_model(model_path)
    spec = archis.model_info(model)
    n, d = cache.window_shape
    classes = list(spec.class_names)
    if (spec.window_frames, spec.feature_dim) != (n, d) or classes != cfg.data.class_map.classes:
        raise UserError(
            f"{model_path}: made for windows of {spec.window_frames} x {spec.feature_dim} and classes "
            f"{classes}, the data has {n} x {d} and {cfg.data.class_map.classes}"
        )

    batch = cfg.eval_batch or inference_windows(model, n, d, cfg.memory_budget_gb)
    logits = predict_cache(cache, archis.set_predictor(model), batch, len(classes))
    metrics = evaluate_scores(logits, cache.labels, classes)
    arrays = {"logits": logits, "probabilities": sigmoid(logits), "labels": cache.labels}
    out = cfg.out(f"_predictions_{Path(str(cfg.testing)).stem}.npz")
    with atomic_path(out) as tmp:
        np.savez(
            tmp,
            classes=np.array(classes),
            halves=np.array(_halves_table(cache)),
            architecture=np.array(spec.architecture),  # checked by V&D's named ensembles
            **{k: arrays[k] for k in ("logits", "labels", *cfg.outputs)},  # ensemble mode reads logits and labels
        )
    print(
        f"{cache.n_windows} windows, mAP {fmt(metrics['mAP'])} "
        f"({', '.join(f'{k} {fmt(v)}' for k, v in metrics['AP'].items())})\npredictions: {out}",
        flush=True,
    )
    return out


def _check_members(cfg: TrainConfig, loaded: list[dict[str, Any]]) -> None:
    """UserError naming the file unless the predictions are of the members of V&D's ensemble `cfg.ensemble_of`
    (in either order: both methods are symmetric); nothing to check for an ensemble V&D did not name."""
    name = vd_ensemble_name(cfg.ensemble_of)
    if name is None:
        return
    members = ENSEMBLE_MEMBERS[name]
    wanted = " and ".join(f"{m} ({arch})" for m, arch in members)
    found = [one["architecture"] for one in loaded]
    for path, arch in zip(cfg.ensemble, found, strict=True):
        if arch is None:
            raise UserError(
                f"{path}: predictions made before they recorded their model's architecture; {name} combines "
                f"{wanted}: predict again with this version"
            )
    if sorted(found) != sorted(arch for _, arch in members):
        shown = ", ".join(f"{p}: {arch}" for p, arch in zip(cfg.ensemble, found, strict=True))
        raise UserError(f"{name} combines V&D's {wanted} predictions; given {shown}")


def _halves_table(cache: windows.WindowCache) -> list[list[str]]:
    return [[h["game"], str(h["half"]), str(h["start"]), str(h["count"])] for h in cache.halves]


def ensemble(cfg: TrainConfig) -> dict[str, Any]:
    """Combine two saved predictions (V&D Archi3/12: mean of logits; Archi9/18: product of sigmoids). Named by V&D's
    ensemble (`cfg.ensemble_of`), the two must be the predictions of its members (`ENSEMBLE_MEMBERS`)."""
    if len(cfg.ensemble) != 2:
        raise UserError("--mode ensemble needs --ensemble A.npz B.npz (two predict-mode outputs)")
    if cfg.ensemble_method not in ENSEMBLE_METHODS:
        raise UserError(f"unknown --ensemble_method {cfg.ensemble_method!r}; valid: {', '.join(ENSEMBLE_METHODS)}")
    loaded = []
    for path in map(Path, cfg.ensemble):
        try:
            with np.load(path) as f:
                one = {k: f[k] for k in ("logits", "labels", "classes", "halves")}
                one["architecture"] = str(f["architecture"]) if "architecture" in f.files else None
                loaded.append(one)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: not a predict-mode output with logits and labels ({exc})") from exc
    _check_members(cfg, loaded)
    a, b = loaded
    if a["logits"].shape != b["logits"].shape or not np.array_equal(a["halves"], b["halves"]):
        raise UserError(f"{cfg.ensemble[0]} and {cfg.ensemble[1]} are predictions of different windows")
    if not np.array_equal(a["labels"], b["labels"]) or not np.array_equal(a["classes"], b["classes"]):
        raise UserError(f"{cfg.ensemble[0]} and {cfg.ensemble[1]} use different labels or classes")
    classes = [str(c) for c in a["classes"]]
    if cfg.ensemble_method == "mean_logits":
        scores = (a["logits"] + b["logits"]) / 2
    else:
        scores = sigmoid(a["logits"]) * sigmoid(b["logits"])
    result: dict[str, Any] = {
        name: evaluate_scores(x, a["labels"], classes)
        for name, x in (("A", a["logits"]), ("B", b["logits"]), ("ensemble", scores))
    }
    result["method"], result["inputs"] = cfg.ensemble_method, list(cfg.ensemble)
    out = cfg.out(f"_ensemble_{cfg.ensemble_method}")
    with atomic_path(out.with_suffix(".npz")) as tmp:
        np.savez(tmp, scores=scores, labels=a["labels"], classes=a["classes"], halves=a["halves"])
    write_json(out.with_suffix(".json"), result)
    for name in ("A", "B", "ensemble"):
        print(f"{name:9s} mAP {fmt(result[name]['mAP'])}", flush=True)
    print(f"ensemble: {out.with_suffix('.npz')}", flush=True)
    return result
