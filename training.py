"""Training, prediction and ensembles over window caches (SPEC §6).

`train(config)`: weighted sigmoid cross-entropy (pos_weight = class weights of the training windows),
Adam, validation mAP after every epoch, plateau schedule (LR / 10 and best weights restored after
`patience_lr` epochs without gain while LR > `min_lr`), early stop after `patience_stop` epochs without
gain or at `max_epoch`, then the best model on the test list. TensorBoard scalars and a confusion-matrix
image per epoch under `tflog`. Every epoch ends with an atomic checkpoint (weights, optimizer, counters)
so `resume` continues after a kill, losing at most the epoch in progress.

TensorFlow is imported inside the functions that need it: data preparation and flag checks stay fast.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import dataset as ds
from common.atomic import atomic_path, read_json, write_json
from common.errors import UserError

STATE_VERSION = 1
PREDICT_OUTPUTS = ("logits", "probabilities", "labels")
ENSEMBLE_METHODS = ("mean_logits", "product")


@dataclass
class TrainConfig:
    """Everything `ClassificationMinuteBased.py` passes down (original flag names in comments)."""

    architecture: str = "concat"  # --architecture
    training: str | None = None  # --training
    validation: str | None = None  # --validation
    testing: str | None = None  # --testing
    data: ds.DataConfig = field(default_factory=ds.DataConfig)
    network: str = "RVLAD"  # --network
    vlad_k: int = 64  # --VLAD_k
    lr: float = 0.01  # --LR
    max_epoch: int = 200  # --max_epoch
    batch_size: int = 60  # --batch_size: halves of games per batch
    batch_windows: int | None = None  # windows per batch instead (shuffled across halves)
    eval_batch: int = 256
    tflog: str = "Model"  # --tflog
    output_prefix: str = ""  # --outputPrefix
    mode: str = "train"  # --mode: train | predict | ensemble
    outputs: tuple[str, ...] = PREDICT_OUTPUTS  # --config in predict mode
    formatdataset: int = 0  # --formatdataset
    cache_dir: str | None = None
    model_path: str | None = None
    ensemble: tuple[str, ...] = ()
    ensemble_method: str = "mean_logits"
    seed: int = 0
    resume: bool = False
    compute_dtype: str = "float32"
    patience_lr: int = 10
    patience_stop: int = 30
    min_lr: float = 1e-4
    progress: bool = True

    @property
    def prefix(self) -> str:
        return self.output_prefix or self.architecture

    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir or f"Windows_size_{self.data.window_seconds:g}_sec")

    def out(self, suffix: str) -> Path:
        return Path(self.tflog) / f"{self.prefix}{suffix}"


# --------------------------------------------------------------------------------------------
# Metrics (NumPy, so predictions, ensembles and training share them)


def weighted_bce(logits: np.ndarray, labels: np.ndarray, pos_weight: np.ndarray) -> float:
    """Mean over windows of the class-summed `tf.nn.weighted_cross_entropy_with_logits`."""
    x, z = logits.astype(np.float64), labels.astype(np.float64)
    per = (1 - z) * x + (1 + (pos_weight - 1) * z) * np.logaddexp(0.0, -x)
    return float(per.sum(axis=1).mean()) if len(per) else 0.0


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """AP per class (None where a class has no positive window), mAP over the non-background classes
    that have one, top-1 accuracy (argmax is one of the window's classes), argmax confusion matrix."""
    from sklearn.metrics import average_precision_score

    ap: dict[str, float | None] = {}
    for c, name in enumerate(classes):
        ap[name] = float(average_precision_score(labels[:, c], scores[:, c])) if labels[:, c].any() else None
    present = [v for name, v in ap.items() if name != classes[0] and v is not None]
    pred = scores.argmax(axis=1)
    true = labels.argmax(axis=1)
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    return {
        "mAP": float(np.mean(present)) if present else None,
        "AP": ap,
        "accuracy": float(labels[np.arange(len(pred)), pred].mean()) if len(pred) else None,
        "confusion_matrix": cm.tolist(),
        "windows": int(len(labels)),
    }


def confusion_png(cm: list[list[int]], classes: list[str], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm_arr = np.asarray(cm, dtype=float)
    norm = cm_arr / np.maximum(cm_arr.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.5 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=80)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted (argmax)")
    ax.set_ylabel("true (first class)")
    ax.set_title(title)
    if len(classes) <= 8:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, int(cm_arr[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_summaries(writer, step: int, scalars: dict[str, float | None], images: dict[str, bytes]) -> None:
    """TensorBoard scalars and PNG images through core `tf.summary.write` with the plugins' metadata, so
    logging needs no `tensorboard` package (viewing does)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    def meta(plugin: str, data_class: int) -> summary_pb2.SummaryMetadata:
        m = summary_pb2.SummaryMetadata(data_class=data_class)
        m.plugin_data.plugin_name = plugin
        return m

    with writer.as_default(step=step):
        for tag, value in scalars.items():
            if value is not None:
                tf.summary.write(tag, tf.constant(float(value), tf.float32),
                                 metadata=meta("scalars", summary_pb2.DATA_CLASS_SCALAR))
        for tag, png in images.items():
            shape = tf.shape(tf.image.decode_png(png))
            tensor = tf.stack([tf.strings.as_string(shape[1]), tf.strings.as_string(shape[0]), tf.constant(png)])
            tf.summary.write(tag, tensor, metadata=meta("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE))
    writer.flush()


def _fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------------------------
# Data


def open_caches(cfg: TrainConfig, splits: tuple[str, ...]) -> dict[str, ds.WindowCache]:
    """Prepare (`formatdataset 1`) or reopen the window cache of each named split."""
    caches = {}
    for split in splits:
        list_path = getattr(cfg, split)
        if list_path is None:
            raise UserError(f"--{split} is required in mode {cfg.mode}")
        caches[split] = ds.open_split(list_path, cfg.cache_root, cfg.data, prepare=cfg.formatdataset == 1,
                                      progress=cfg.progress)
    return caches


def _tf_dataset(make_iter, n: int, d: int, c: int):
    """A prefetching tf.data pipeline over a Python generator of (video, audio, labels) batches."""
    import tensorflow as tf

    spec = (tf.TensorSpec((None, n, d), tf.float32), tf.TensorSpec((None, n, d), tf.float32),
            tf.TensorSpec((None, c), tf.float32))
    data = tf.data.Dataset.from_generator(make_iter, output_signature=spec).prefetch(2)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options)


# --------------------------------------------------------------------------------------------
# Model, strategy, checkpoints


def make_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG is set, MirroredStrategy with several GPUs, else the default."""
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


class Checkpointer:
    """Per-epoch resume state under `<tflog>/<prefix>_resume/`: versioned weight and optimizer files,
    then `state.json` written atomically last, then the files it no longer names are removed. A kill at
    any moment leaves the previous state.json and the files it names intact."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.state_path = folder / "state.json"

    def load(self) -> dict[str, Any] | None:
        if not self.state_path.is_file():
            return None
        state = read_json(self.state_path)
        if state.get("version") != STATE_VERSION:
            raise UserError(f"{self.state_path}: resume state of another version")
        return state

    def save(self, model, optimizer, state: dict[str, Any], improved: bool) -> None:
        """Checkpoint the current weights and optimizer; `improved`: they are also the new best."""
        self.dir.mkdir(parents=True, exist_ok=True)
        epoch = state["epoch"]
        weights, opt = self.dir / f"epoch_{epoch:04d}.weights.h5", self.dir / f"epoch_{epoch:04d}.optimizer.npz"
        with atomic_path(weights) as tmp:
            model.save_weights(tmp)
        with atomic_path(opt) as tmp:
            np.savez(tmp, *[v.numpy() for v in optimizer.variables])
        state.update(version=STATE_VERSION, weights=weights.name, optimizer=opt.name)
        if improved:
            best = self.dir / f"best_{epoch:04d}.weights.h5"
            best.unlink(missing_ok=True)
            try:
                os.link(weights, best)
            except OSError:
                shutil.copyfile(weights, best)
            state["best_weights"] = best.name
        write_json(self.state_path, state)
        keep = {"state.json", state["weights"], state["optimizer"], state.get("best_weights")}
        for p in self.dir.iterdir():
            if p.name not in keep and not p.name.startswith("."):
                p.unlink(missing_ok=True)

    def restore(self, model, optimizer, state: dict[str, Any]) -> list[np.ndarray]:
        """Load the checkpointed weights and optimizer; return the best weights."""
        try:
            model.load_weights(self.dir / state["best_weights"])
            best = model.get_weights()
            model.load_weights(self.dir / state["weights"])
            with np.load(self.dir / state["optimizer"]) as saved:
                values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"{self.dir}: resume files unreadable ({exc})") from exc
        if len(values) != len(optimizer.variables):
            raise UserError(f"{self.dir}: optimizer state does not match this model")
        for var, value in zip(optimizer.variables, values, strict=True):
            var.assign(value)
        return best


def _model_settings(cfg: TrainConfig) -> dict[str, Any]:
    """What a resumed run must share with the run it continues."""
    return {"architecture": cfg.architecture, "network": cfg.network, "VLAD_k": cfg.vlad_k,
            "WindowSize": cfg.data.window_seconds, "featurePerSec": cfg.data.frames_per_second,
            "classes": cfg.data.class_map.classes, "compute_dtype": cfg.compute_dtype,
            "batch_size": cfg.batch_size, "batch_windows": cfg.batch_windows, "seed": cfg.seed}


def _save_model(model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


# --------------------------------------------------------------------------------------------
# Training


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, select by validation mAP, test the best model; returns (and writes) the summary."""
    caches = open_caches(cfg, ("training", "validation", "testing"))
    train_cache = caches["training"]
    classes = cfg.data.class_map.classes
    weights = ds.class_weights(train_cache.labels, classes)
    print("class weights (pos_weight): " + ", ".join(f"{c} {w:.4f}" for c, w in zip(classes, weights, strict=True)),
          flush=True)
    ckpt = Checkpointer(cfg.out("_resume"))
    state = ckpt.load() if cfg.resume else None
    if cfg.resume and state is None:
        print(f"--resume: no state in {ckpt.dir}, starting from epoch 1", flush=True)
    if state is not None and state["settings"] != _model_settings(cfg):
        diff = [k for k, v in _model_settings(cfg).items() if state["settings"].get(k) != v]
        raise UserError(f"{ckpt.state_path}: the run to resume used other settings ({', '.join(diff)})")

    import keras
    import tensorflow as tf

    import archis

    strategy = make_strategy()
    n, d = train_cache.window_shape
    with strategy.scope():
        model = archis.build_model(
            cfg.architecture, class_names=classes, pooling=cfg.network, vlad_k=cfg.vlad_k,
            window_seconds=cfg.data.window_seconds, frames_per_second=cfg.data.frames_per_second,
            feature_dim=d, feature_names=train_cache.feature_files or None, compute_dtype=cfg.compute_dtype,
            seed=cfg.seed)
        optimizer = keras.optimizers.Adam(learning_rate=cfg.lr)
        optimizer.build(model.trainable_variables)
    pos_weight = tf.constant(weights, tf.float32)

    def replica_step(video, audio, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model({"video": video, "audio": audio}, training=True), tf.float32)
            per_window = tf.reduce_sum(tf.nn.weighted_cross_entropy_with_logits(labels, logits, pos_weight), axis=1)
            loss = tf.nn.compute_average_loss(per_window)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return logits

    @tf.function(reduce_retracing=True)
    def train_step(batch):
        logits = strategy.run(replica_step, args=batch)
        return strategy.gather(logits, axis=0)

    @tf.function(reduce_retracing=True)
    def predict_step(video, audio):
        return tf.cast(model({"video": video, "audio": audio}, training=False), tf.float32)

    def evaluate(cache: ds.WindowCache) -> dict[str, Any]:
        logits = predict_cache(cache, predict_step, cfg.eval_batch, n, d, len(classes))
        metrics = evaluate_scores(logits, cache.labels, classes)
        metrics["loss"] = weighted_bce(logits, cache.labels, weights)
        return metrics

    writers = {s: tf.summary.create_file_writer(str(cfg.out(f"_{s}"))) for s in ("training", "validation", "testing")}

    def log_metrics(split: str, epoch: int, metrics: dict[str, Any], lr: float) -> None:
        scalars = {"loss": metrics["loss"], "learning_rate": lr, "mAP": metrics["mAP"], "accuracy": metrics["accuracy"]}
        scalars |= {f"AP/{i}_{name}": ap for i, (name, ap) in enumerate(metrics["AP"].items())}
        png = confusion_png(metrics["confusion_matrix"], classes, f"{split} epoch {epoch}")
        write_summaries(writers[split], epoch, scalars, {"confusion_matrix": png})

    if state is None:
        state = {"epoch": 0, "lr": cfg.lr, "best_map": -1.0, "best_epoch": 0, "since_best": 0, "since_reduce": 0,
                 "history": [], "finished_training": False, "settings": _model_settings(cfg)}
        best_weights = model.get_weights()
    else:
        best_weights = ckpt.restore(model, optimizer, state)
        optimizer.learning_rate.assign(state["lr"])
        print(f"resumed after epoch {state['epoch']} (best epoch {state['best_epoch']}, "
              f"mAP {state['best_map']:.4f}, LR {state['lr']:g})", flush=True)
    best_path = cfg.out("_best.keras")

    from tqdm import tqdm

    while not state["finished_training"]:
        epoch = state["epoch"] + 1
        rng = np.random.default_rng([cfg.seed, epoch])  # the epoch's order does not depend on resumes
        data = _tf_dataset(lambda rng=rng: train_cache.train_batches(rng, batch_halves=None if cfg.batch_windows else cfg.batch_size,
                                                                    batch_windows=cfg.batch_windows),
                           n, d, len(classes))
        data = strategy.experimental_distribute_dataset(data)
        t0, wait = time.perf_counter(), 0.0
        seen_logits, seen_labels = [], []
        it = iter(data)
        bar = tqdm(desc=f"epoch {epoch}", unit="batch", disable=not cfg.progress, leave=False)
        while True:
            t_wait = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            wait += time.perf_counter() - t_wait
            seen_logits.append(train_step(batch).numpy())
            seen_labels.append(np.concatenate([t.numpy() for t in strategy.experimental_local_results(batch[2])]))
            bar.update()
        bar.close()
        train_time = time.perf_counter() - t0
        logits, labels = np.concatenate(seen_logits), np.concatenate(seen_labels)
        train_metrics = {**evaluate_scores(logits, labels, classes), "loss": weighted_bce(logits, labels, weights)}
        valid = evaluate(caches["validation"])
        lr = float(state["lr"])
        log_metrics("training", epoch, train_metrics, lr)
        log_metrics("validation", epoch, valid, lr)
        score = valid["mAP"] if valid["mAP"] is not None else 0.0
        improved = score > state["best_map"]
        if improved:
            state.update(best_map=score, best_epoch=epoch, since_best=0, since_reduce=0, best_valid=valid)
            best_weights = model.get_weights()
            _save_model(model, best_path)
        else:
            state.update(since_best=state["since_best"] + 1, since_reduce=state["since_reduce"] + 1)
        note = ""
        if state["since_reduce"] >= cfg.patience_lr and lr > cfg.min_lr:
            lr /= 10
            optimizer.learning_rate.assign(lr)
            model.set_weights(best_weights)
            state.update(lr=lr, since_reduce=0)
            note = f"; plateau: LR -> {lr:g}, best weights of epoch {state['best_epoch']} restored"
        stop = state["since_best"] >= cfg.patience_stop or epoch >= cfg.max_epoch
        state["history"].append({"epoch": epoch, "lr": float(optimizer.learning_rate.numpy()),
                                 "train_loss": train_metrics["loss"], "train_mAP": train_metrics["mAP"],
                                 "valid_loss": valid["loss"], "valid_mAP": valid["mAP"],
                                 "train_seconds": round(train_time, 3), "input_wait_seconds": round(wait, 3)})
        state.update(epoch=epoch, finished_training=stop,
                     stopped=("plateau" if state["since_best"] >= cfg.patience_stop else "max_epoch") if stop else None)
        ckpt.save(model, optimizer, state, improved)
        print(f"epoch {epoch}: train loss {train_metrics['loss']:.4f} mAP {_fmt(train_metrics['mAP'])} | "
              f"valid loss {valid['loss']:.4f} mAP {_fmt(valid['mAP'])}{' (best)' if improved else ''} | "
              f"{train_time:.1f}s (input wait {wait:.2f}s){note}", flush=True)

    model.set_weights(best_weights)
    _save_model(model, best_path)  # also covers a kill between the checkpoint and the best-model save
    test = evaluate(caches["testing"])
    log_metrics("testing", state["best_epoch"], test, float(state["lr"]))
    for w in writers.values():
        w.close()
    summary = {
        "classes": classes,
        "class_weights": [float(w) for w in weights],
        "best_epoch": state["best_epoch"],
        "epochs": state["epoch"],
        "stopped": state["stopped"],
        "valid": state.get("best_valid") or evaluate(caches["validation"]),
        "test": test,
        "model": str(best_path),
        "architecture": archis.model_info(model),
        "config": _config_json(cfg),
        "skipped_games": {s: c.bad_games for s, c in caches.items() if c.bad_games},
        "history": state["history"],
    }
    write_json(cfg.out("_summary.json"), summary)
    print(f"best epoch {state['best_epoch']}: valid mAP {_fmt(summary['valid']['mAP'])}, test mAP {_fmt(test['mAP'])} "
          f"({', '.join(f'{k} {_fmt(v)}' for k, v in test['AP'].items())})", flush=True)
    print(f"model: {best_path}\nsummary: {cfg.out('_summary.json')}", flush=True)
    return summary


def predict_cache(cache: ds.WindowCache, predict_step, batch: int, n: int, d: int, c: int) -> np.ndarray:
    """Logits [W, C] of every window of a cache, in file order."""
    data = _tf_dataset(lambda: cache.eval_batches(batch), n, d, c)
    out = [predict_step(video, audio).numpy() for video, audio, _ in data]
    return np.concatenate(out) if out else np.zeros((0, c), np.float32)


def _config_json(cfg: TrainConfig) -> dict[str, Any]:
    out = asdict(cfg)
    out["data"] = {k: v for k, v in out["data"].items() if k != "class_map"} | {"class_map": cfg.data.class_map.name}
    return out


# --------------------------------------------------------------------------------------------
# Prediction and ensembles


def predict(cfg: TrainConfig) -> Path:
    """Per-window outputs of a model on the `testing` list, saved as `<tflog>/<prefix>_predictions_<list>.npz`."""
    model_path = Path(cfg.model_path or cfg.out("_best.keras"))
    if not model_path.is_file():
        raise UserError(f"{model_path}: no trained model (train first, or give --model)")
    cache = open_caches(cfg, ("testing",))["testing"]
    import tensorflow as tf

    import archis

    model = archis.load_model(model_path)
    info = archis.model_info(model)
    n, d = cache.window_shape
    if (info["window_frames"], info["feature_dim"]) != (n, d) or info["class_names"] != cfg.data.class_map.classes:
        raise UserError(f"{model_path}: made for windows of {info['window_frames']} x {info['feature_dim']} and classes "
                        f"{info['class_names']}, the data has {n} x {d} and {cfg.data.class_map.classes}")

    @tf.function(reduce_retracing=True)
    def predict_step(video, audio):
        return tf.cast(model({"video": video, "audio": audio}, training=False), tf.float32)

    logits = predict_cache(cache, predict_step, cfg.eval_batch, n, d, len(info["class_names"]))
    metrics = evaluate_scores(logits, cache.labels, info["class_names"])
    arrays = {"logits": logits, "probabilities": 1 / (1 + np.exp(-logits)), "labels": cache.labels}
    out = cfg.out(f"_predictions_{Path(str(cfg.testing)).stem}.npz")
    with atomic_path(out) as tmp:
        np.savez(tmp, classes=np.array(info["class_names"]), halves=np.array(_halves_table(cache)),
                 **{k: arrays[k] for k in cfg.outputs})
    print(f"{cache.n_windows} windows, mAP {_fmt(metrics['mAP'])} "
          f"({', '.join(f'{k} {_fmt(v)}' for k, v in metrics['AP'].items())})\npredictions: {out}", flush=True)
    return out


def _halves_table(cache: ds.WindowCache) -> list[list[str]]:
    return [[h["game"], str(h["half"]), str(h["start"]), str(h["count"])] for h in cache.halves]


def ensemble(cfg: TrainConfig) -> dict[str, Any]:
    """Combine two saved predictions (V&D Archi3/12: mean of logits; Archi9/18: product of sigmoids)."""
    if len(cfg.ensemble) != 2:
        raise UserError("--mode ensemble needs --ensemble A.npz B.npz (two predict-mode outputs)")
    if cfg.ensemble_method not in ENSEMBLE_METHODS:
        raise UserError(f"unknown --ensemble_method {cfg.ensemble_method!r}; valid: {', '.join(ENSEMBLE_METHODS)}")
    loaded = []
    for path in map(Path, cfg.ensemble):
        try:
            with np.load(path) as f:
                loaded.append({k: f[k] for k in ("logits", "labels", "classes", "halves")})
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: not a predict-mode output with logits and labels ({exc})") from exc
    a, b = loaded
    if a["logits"].shape != b["logits"].shape or not np.array_equal(a["halves"], b["halves"]):
        raise UserError(f"{cfg.ensemble[0]} and {cfg.ensemble[1]} are predictions of different windows")
    if not np.array_equal(a["labels"], b["labels"]) or not np.array_equal(a["classes"], b["classes"]):
        raise UserError(f"{cfg.ensemble[0]} and {cfg.ensemble[1]} use different labels or classes")
    classes = [str(c) for c in a["classes"]]
    if cfg.ensemble_method == "mean_logits":
        scores = (a["logits"] + b["logits"]) / 2
    else:
        scores = 1 / (1 + np.exp(-a["logits"])) / (1 + np.exp(-b["logits"]))
    result = {name: evaluate_scores(x, a["labels"], classes)
              for name, x in (("A", a["logits"]), ("B", b["logits"]), ("ensemble", scores))}
    result["method"], result["inputs"] = cfg.ensemble_method, list(cfg.ensemble)
    out = cfg.out(f"_ensemble_{cfg.ensemble_method}")
    with atomic_path(out.with_suffix(".npz")) as tmp:
        np.savez(tmp, scores=scores, labels=a["labels"], classes=a["classes"], halves=a["halves"])
    write_json(out.with_suffix(".json"), result)
    for name in ("A", "B", "ensemble"):
        print(f"{name:9s} mAP {_fmt(result[name]['mAP'])}", flush=True)
    print(f"ensemble: {out.with_suffix('.npz')}", flush=True)
    return result


def run(cfg: TrainConfig) -> Any:
    """Dispatch on `cfg.mode`."""
    modes = {"train": train, "predict": predict, "ensemble": ensemble}
    if cfg.mode not in modes:
        raise UserError(f"unknown --mode {cfg.mode!r}; valid: {', '.join(modes)}")
    if not math.isfinite(cfg.lr) or cfg.lr <= 0:
        raise UserError(f"--LR must be positive, got {cfg.lr}")
    return modes[cfg.mode](cfg)
