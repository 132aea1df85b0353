"""Training, prediction and ensembles over window caches.

`train(config)`: weighted sigmoid cross-entropy (pos_weight = class weights of the training windows), Adam
(epsilon 1e-8 as in TF1; each step computed in micro-batches within a memory budget: `train_step.py`), validation after every epoch, then the schedule (`schedule_step`, a pure
function): V&D's plateau counter by default (LR / 10 with the best weights and optimizer state restored
when it passes `patience_lr`, stop when it passes `patience_stop`), or `since_best`; at most `max_epoch`.
The best model is then tested on the test list. TensorBoard scalars and a confusion-matrix image per
epoch under `tflog`. Every epoch ends with an atomic checkpoint (weights, optimizer, generator states,
schedule) so `resume` continues after a kill as the uninterrupted run would, losing at most the epoch in
progress. A new run refuses to write over an earlier run's outputs unless `overwrite`.

TensorFlow is imported inside the functions that need it: data preparation and flag checks stay fast.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

import dataset as ds
from common.atomic import atomic_path, read_json, write_json
from common.errors import UserError

STATE_VERSION = 2
SCHEDULES = ("original", "since_best")
SELECTION_METRICS = ("ap", "tf1_pr_auc")
ADAM_EPSILON = 1e-8  # tf.compat.v1.train.AdamOptimizer's default (Keras': 1e-7)
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
    dropout: float | None = None  # --dropout; None: the original's rate for the architecture
    lr: float = 0.01  # --LR
    max_epoch: int = 200  # --max_epoch
    batch_size: int = 60  # --batch_size: halves of games per batch
    batch_windows: int | None = None  # windows per batch instead (shuffled across halves)
    eval_batch: int | None = None  # windows per evaluation call (default: from the memory budget)
    memory_budget_gb: float | None = None  # training's memory budget (default: a share of the machine or GPU)
    micro_batch_windows: int | None = None  # windows per micro-batch instead of the budget's choice
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
    schedule: str = "original"  # see SchedulePolicy
    patience_lr: int = 10
    patience_stop: int = 30
    min_lr: float = 1e-4
    selection_metric: str = "ap"
    overwrite: bool = False
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


def tf1_pr_auc(probabilities: np.ndarray, labels: np.ndarray, num_thresholds: int = 200) -> float:
    """Area under the precision-recall curve as `tf.compat.v1.metrics.auc(curve="PR")` computes it (V&D's
    validation metric): counts at `num_thresholds` evenly spaced thresholds, trapezoidal sum, 1e-6
    smoothing. A class with no positive window scores 0."""
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    thresholds = np.array([-1e-7, *inner, 1 + 1e-7], np.float32)
    p = probabilities.astype(np.float32)
    pos, neg = np.sort(p[labels > 0]), np.sort(p[labels <= 0])
    tp = (len(pos) - np.searchsorted(pos, thresholds, side="right")).astype(np.float64)
    fp = (len(neg) - np.searchsorted(neg, thresholds, side="right")).astype(np.float64)
    eps = 1e-6
    recall, precision = (tp + eps) / (len(pos) + eps), (tp + eps) / (tp + fp + eps)
    return float(np.sum((recall[:-1] - recall[1:]) * (precision[:-1] + precision[1:]) / 2))


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """AP per class (None where a class has no positive window), mAP over the non-background classes
    that have one, top-1 accuracy (argmax is one of the window's classes), argmax confusion matrix.
    `mAP_tf1_pr_auc`: V&D's number instead (`tf1_pr_auc` of the sigmoids, mean over every non-background
    class, 0 for a class with no positive)."""
    from sklearn.metrics import average_precision_score

    ap: dict[str, float | None] = {}
    for c, name in enumerate(classes):
        ap[name] = float(average_precision_score(labels[:, c], scores[:, c])) if labels[:, c].any() else None
    present = [v for name, v in ap.items() if name != classes[0] and v is not None]
    pred = scores.argmax(axis=1)
    true = labels.argmax(axis=1)
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    probs = 1 / (1 + np.exp(-scores.astype(np.float64)))
    pr_auc = [tf1_pr_auc(probs[:, c], labels[:, c]) for c in range(1, len(classes))]
    return {
        "mAP": float(np.mean(present)) if present else None,
        "mAP_tf1_pr_auc": float(np.mean(pr_auc)) if pr_auc else None,
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
                ax.text(
                    j,
                    i,
                    int(cm_arr[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
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
                tf.summary.write(
                    tag, tf.constant(float(value), tf.float32), metadata=meta("scalars", summary_pb2.DATA_CLASS_SCALAR)
                )
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
        caches[split] = ds.open_split(
            list_path, cfg.cache_root, cfg.data, prepare=cfg.formatdataset == 1, progress=cfg.progress
        )
    return caches


def _tf_dataset(make_iter, n: int, d: int, c: int):
    """A prefetching tf.data pipeline over a Python generator of (video, audio, labels) batches."""
    import tensorflow as tf

    spec = (
        tf.TensorSpec((None, n, d), tf.float32),
        tf.TensorSpec((None, n, d), tf.float32),
        tf.TensorSpec((None, c), tf.float32),
    )
    return tf.data.Dataset.from_generator(make_iter, output_signature=spec).prefetch(1)


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
    """Per-epoch resume state under `<tflog>/<prefix>_resume/`: versioned weight files and a state file
    (optimizer variables and the model's random-generator states), then `state.json` written atomically
    last, then the files it no longer names are removed. The best epoch's weights and optimizer state are
    kept beside the last epoch's. A kill at any moment leaves the previous state.json and its files intact."""

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
        """Checkpoint the current weights, optimizer and generator states; `improved`: they are the new best."""
        self.dir.mkdir(parents=True, exist_ok=True)
        epoch = state["schedule"]["epoch"]
        weights, extra = self.dir / f"epoch_{epoch:04d}.weights.h5", self.dir / f"epoch_{epoch:04d}.state.npz"
        with atomic_path(weights) as tmp:
            model.save_weights(tmp)
        with atomic_path(extra) as tmp:
            _savez_streaming(tmp, {"optimizer": optimizer.variables, "rng": generator_states(model)})
        state.update(version=STATE_VERSION, weights=weights.name, optimizer=extra.name)
        if improved:
            for key, src in (("best_weights", weights), ("best_optimizer", extra)):
                state[key] = _link(src, self.dir / src.name.replace("epoch_", "best_", 1)).name
        write_json(self.state_path, state)
        keep = {
            "state.json",
            state["weights"],
            state["optimizer"],
            state.get("best_weights"),
            state.get("best_optimizer"),
        }
        for p in self.dir.iterdir():
            if p.name not in keep and not p.name.startswith("."):
                p.unlink(missing_ok=True)

    def restore(self, model, optimizer, state: dict[str, Any]) -> Snapshot:
        """Load the checkpointed weights, optimizer and generator states; return the best epoch's snapshot (its
        files)."""
        try:
            model.load_weights(self.dir / state["weights"])
            with np.load(self.dir / state["optimizer"]) as saved:
                generators = generator_states(model)
                counts = [sum(k.startswith(p + "_") for k in saved.files) for p in ("optimizer", "rng")]
                if counts != [len(optimizer.variables), len(generators)]:
                    raise UserError(f"{self.dir}: optimizer or generator state does not match this model")
                for prefix, variables in (("optimizer", optimizer.variables), ("rng", generators)):
                    for i, var in enumerate(variables):  # one at a time: Adam's slots are GBs at VLAD-512
                        var.assign(saved[f"{prefix}_{i}"])
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"{self.dir}: resume files unreadable ({exc})") from exc
        return Snapshot(self.dir / state["best_weights"], self.dir / state["best_optimizer"])


def _link(src: Path, dst: Path) -> Path:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def _savez_streaming(path: Path, groups: dict[str, Any]) -> None:
    """`np.savez(path, prefix_i=...)` holding one variable's copy at a time instead of all of them."""
    import zipfile

    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for prefix, variables in groups.items():
            for i, var in enumerate(variables):
                with zf.open(f"{prefix}_{i}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asarray(var.numpy()), allow_pickle=False)


def generator_states(model) -> list:
    """The model's variables that are not weights: the Keras seed-generator states (dropout masks). A weights
    file does not hold them, so a resumed run checkpoints them apart to draw the same masks."""
    weights = {id(v) for v in model.weights}
    return [v for v in model.variables if id(v) not in weights]


@dataclass
class Snapshot:
    """The best epoch's weights and optimizer variables for a plateau restore and the end of training: the
    checkpoint's `best_*` files, read back rather than kept in memory (three copies of the weights: GBs at
    VLAD-512)."""

    weights: Path
    optimizer: Path

    def restore(self, model, optimizer, *, with_optimizer: bool, lr: float) -> None:
        """Back to the snapshot's weights (and optimizer state, moments and step count), then learning rate `lr`."""
        model.load_weights(self.weights)
        if with_optimizer:
            with np.load(self.optimizer) as saved:
                for i, var in enumerate(optimizer.variables):
                    var.assign(saved[f"optimizer_{i}"])
        optimizer.learning_rate.assign(lr)


def _model_settings(cfg: TrainConfig) -> dict[str, Any]:
    """What a resumed run must share with the run it continues."""
    return {
        "architecture": cfg.architecture,
        "network": cfg.network,
        "VLAD_k": cfg.vlad_k,
        "dropout": cfg.dropout,
        "WindowSize": cfg.data.window_seconds,
        "featurePerSec": cfg.data.frames_per_second,
        "classes": cfg.data.class_map.classes,
        "compute_dtype": cfg.compute_dtype,
        "batch_size": cfg.batch_size,
        "batch_windows": cfg.batch_windows,
        "seed": cfg.seed,
    }


def _save_model(model, path: Path) -> None:
    """`model.save` to a temporary name, then renamed. Keras stages the weights through a file on disk
    (not a second in-memory copy) for any model over 512 MB unless `psutil` is installed: it is not a
    dependency, so a VLAD-512 save adds no gigabyte on top of training."""
    with atomic_path(path) as tmp:
        model.save(tmp)


# --------------------------------------------------------------------------------------------
# The schedule: plateau counter, LR cut, restore of the best epoch, early stop. Pure, so tests script it.


@dataclass(frozen=True)
class SchedulePolicy:
    """`original` (V&D): one counter of epochs without gain, reset by a gain and by each LR cut; when it
    passes `patience_lr` and LR > `min_lr`: LR / 10, best weights and optimizer state restored; when it
    passes `patience_stop` (so counted from the last cut): stop. `since_best` (this port's earlier rule):
    LR / 10 and best weights only restored `patience_lr` epochs after the best epoch or the last cut; stop
    `patience_stop` epochs after the best epoch. Both stop at `max_epoch`."""

    kind: str = "original"
    patience_lr: int = 10
    patience_stop: int = 30
    min_lr: float = 1e-4
    max_epoch: int = 200


@dataclass(frozen=True)
class ScheduleState:
    """Where the schedule stands after `epoch` epochs (JSON-able: the resume state stores it)."""

    lr: float
    epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = 0
    plateau: int = 0  # epochs without gain since the best epoch or the last LR cut
    since_best: int = 0  # epochs since the best epoch


@dataclass(frozen=True)
class ScheduleStep:
    """What to do after one epoch: the new state, whether it was the best so far, whether to cut the LR
    (restoring the best weights, and the optimizer state when `restore_optimizer`), why to stop (or None)."""

    state: ScheduleState
    improved: bool
    cut_lr: bool
    restore_optimizer: bool
    stop: str | None


def schedule_step(state: ScheduleState, score: float, policy: SchedulePolicy) -> ScheduleStep:
    """The decision after one more epoch whose validation score is `score` (higher is better)."""
    if policy.kind not in SCHEDULES:
        raise UserError(f"unknown --schedule {policy.kind!r}; valid: {', '.join(SCHEDULES)}")
    epoch = state.epoch + 1
    improved = score > state.best_score
    if improved:
        new = replace(state, epoch=epoch, best_score=score, best_epoch=epoch, plateau=0, since_best=0)
    else:
        new = replace(state, epoch=epoch, plateau=state.plateau + 1, since_best=state.since_best + 1)
    original = policy.kind == "original"
    due = new.plateau > policy.patience_lr if original else new.plateau >= policy.patience_lr
    cut = due and new.lr > policy.min_lr
    if cut:
        new = replace(new, lr=new.lr / 10, plateau=0)
    if original:
        plateau_stop = not cut and new.plateau > policy.patience_stop
    else:
        plateau_stop = new.since_best >= policy.patience_stop
    stop = "plateau" if plateau_stop else "max_epoch" if epoch >= policy.max_epoch else None
    return ScheduleStep(new, improved, cut, cut and original, stop)


def selection_score(metrics: dict[str, Any], selection: str) -> float:
    """The validation number the schedule maximises: `ap` (mAP, classes with a positive) or `tf1_pr_auc`."""
    value = metrics[{"ap": "mAP", "tf1_pr_auc": "mAP_tf1_pr_auc"}[selection]]
    return float(value) if value is not None else 0.0


# --------------------------------------------------------------------------------------------
# Training: setup, one epoch, finish


@dataclass
class _Run:
    """Everything the epoch loop shares: data, model, optimizer, compiled steps, writers, checkpoint, state."""

    cfg: TrainConfig
    caches: dict[str, ds.WindowCache]
    weights: np.ndarray
    model: Any
    optimizer: Any
    strategy: Any
    stepper: Any  # train_step.AccumulatingStep
    plan: Any  # train_step.MemoryPlan
    predict: Any
    writers: dict[str, Any]
    ckpt: Checkpointer  # where this process writes its resume state (a non-chief worker: its temporary folder)
    state: dict[str, Any]
    best: Snapshot | None  # None until the first epoch, which always improves (scores are >= 0 > -1)
    out: TrainConfig  # where this process writes: `cfg`, or a non-chief worker's temporary folder
    warned: bool = False

    @property
    def classes(self) -> list[str]:
        return self.cfg.data.class_map.classes

    @property
    def schedule(self) -> ScheduleState:
        return ScheduleState(**self.state["schedule"])


def run_outputs(cfg: TrainConfig) -> list[Path]:
    """What a training run writes under `--tflog`: best model, summary, resume state, TensorBoard folders."""
    return [cfg.out(s) for s in ("_best.keras", "_summary.json", "_resume", "_training", "_validation", "_testing")]


def claim_outputs(cfg: TrainConfig) -> None:
    """Refuse to write over an earlier run's outputs unless `--resume` (continue it) or `--overwrite`
    (remove them first, TensorBoard events included, so no two runs mix)."""
    if cfg.resume and cfg.overwrite:
        raise UserError("--resume continues the earlier run and --overwrite replaces it: give one of them")
    if cfg.resume and Checkpointer(cfg.out("_resume")).state_path.is_file():
        return
    existing = [p for p in run_outputs(cfg) if p.exists()]
    if not existing:
        return
    if not cfg.overwrite:
        hint = (
            "but left no resume state to continue; --overwrite replaces them"
            if cfg.resume
            else "--resume continues it, --overwrite replaces it, or choose another --outputPrefix"
        )
        raise UserError(
            f"{existing[0]}: an earlier run wrote {', '.join(p.name for p in existing)} in {cfg.tflog}; " + hint
        )
    for p in existing:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    print(f"--overwrite: removed the earlier run's {', '.join(p.name for p in existing)}", flush=True)


def _build(
    cfg: TrainConfig,
    window_shape: tuple[int, int],
    feature_names: dict[str, str] | None,
    feature_recipe: dict[str, str] | None = None,
):
    """Strategy, model and Adam (epsilon 1e-8, TF1's default; the fused kernel) built in the strategy's scope. The
    model records the class map and the feature recipe of the training data."""
    import archis
    import train_step

    strategy = make_strategy()
    with strategy.scope():
        model = archis.build_model(
            cfg.architecture,
            class_names=cfg.data.class_map.classes,
            pooling=cfg.network,
            vlad_k=cfg.vlad_k,
            window_seconds=cfg.data.window_seconds,
            frames_per_second=cfg.data.frames_per_second,
            feature_dim=window_shape[1],
            feature_names=feature_names,
            compute_dtype=cfg.compute_dtype,
            dropout=cfg.dropout,
            seed=cfg.seed,
            class_map=cfg.data.class_map.to_json(),
            feature_recipe=feature_recipe,
        )
        optimizer = train_step.make_adam(cfg.lr, epsilon=ADAM_EPSILON)
        optimizer.build(model.trainable_variables)
    return strategy, model, optimizer


def worker_role() -> tuple[bool, str]:
    """(is this process the chief, its temporary folder name) from TF_CONFIG: the `chief` task, else worker 0;
    without TF_CONFIG the one process is the chief."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return True, ""
    try:
        conf = json.loads(text)
        task_type, index = conf["task"]["type"], int(conf["task"]["index"])
        cluster = conf["cluster"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"TF_CONFIG: not a cluster description with a task type and index ({exc})") from exc
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)
    return chief, f"workertemp_{task_type}_{index}"


def _setup(cfg: TrainConfig) -> _Run:
    """Outputs claimed, caches opened, class weights, model and optimizer built, memory planned, resume state loaded.

    Under TF_CONFIG only the chief writes into `tflog`; the other workers read its resume state and write
    their copies into `<tflog>/workertemp_*`, removed at the end (TensorFlow's convention)."""
    chief, temp_name = worker_role()
    out = cfg if chief else replace(cfg, tflog=str(Path(cfg.tflog) / temp_name), resume=False, overwrite=True)
    if chief:
        claim_outputs(cfg)
    elif cfg.formatdataset == 1:  # no two workers writing one cache
        cfg = replace(cfg, cache_dir=str(Path(out.tflog) / "cache"))
    caches = open_caches(cfg, ("training", "validation", "testing"))
    train_cache, classes = caches["training"], cfg.data.class_map.classes
    weights = ds.class_weights(train_cache.labels, classes)
    print(
        "class weights (pos_weight): " + ", ".join(f"{c} {w:.4f}" for c, w in zip(classes, weights, strict=True)),
        flush=True,
    )
    ckpt = Checkpointer(cfg.out("_resume"))
    state = ckpt.load() if cfg.resume else None
    if cfg.resume and state is None:
        print(f"--resume: no state in {ckpt.dir}, starting from epoch 1", flush=True)
    if state is not None and state["settings"] != _model_settings(cfg):
        diff = [k for k, v in _model_settings(cfg).items() if state["settings"].get(k) != v]
        raise UserError(f"{ckpt.state_path}: the run to resume used other settings ({', '.join(diff)})")

    import tensorflow as tf

    import archis
    import train_step

    strategy, model, optimizer = _build(
        cfg, train_cache.window_shape, train_cache.feature_files or None, train_cache.feature_recipe
    )
    stepper = train_step.AccumulatingStep(model, optimizer, weights, strategy, train_cache.window_shape)
    plan = train_step.plan_memory(
        model, *train_cache.window_shape, cfg.memory_budget_gb, cfg.micro_batch_windows, step_windows=cfg.batch_windows
    )
    print(plan.describe(), flush=True)
    writers = {s: tf.summary.create_file_writer(str(out.out(f"_{s}"))) for s in ("training", "validation", "testing")}
    if state is None:
        state = {
            "schedule": asdict(ScheduleState(lr=cfg.lr)),
            "history": [],
            "finished_training": False,
            "stopped": None,
            "settings": _model_settings(cfg),
        }
        best = None
    else:
        best = ckpt.restore(model, optimizer, state)
        sched = ScheduleState(**state["schedule"])
        optimizer.learning_rate.assign(sched.lr)
        print(
            f"resumed after epoch {sched.epoch} (best epoch {sched.best_epoch}, score {sched.best_score:.4f}, "
            f"LR {sched.lr:g})",
            flush=True,
        )
    return _Run(
        cfg,
        caches,
        weights,
        model,
        optimizer,
        strategy,
        stepper,
        plan,
        archis.predict_function(model),
        writers,
        ckpt if chief else Checkpointer(out.out("_resume")),
        state,
        best,
        out,
    )


def _evaluate(run: _Run, cache: ds.WindowCache) -> dict[str, Any]:
    logits = predict_cache(cache, run.predict, run.cfg.eval_batch or run.plan.eval_windows, len(run.classes))
    return {
        **evaluate_scores(logits, cache.labels, run.classes),
        "loss": weighted_bce(logits, cache.labels, run.weights),
    }


def _log_metrics(run: _Run, split: str, epoch: int, metrics: dict[str, Any], lr: float) -> None:
    scalars = {"loss": metrics["loss"], "learning_rate": lr, "mAP": metrics["mAP"], "accuracy": metrics["accuracy"]}
    scalars |= {f"AP/{i}_{name}": ap for i, (name, ap) in enumerate(metrics["AP"].items())}
    png = confusion_png(metrics["confusion_matrix"], run.classes, f"{split} epoch {epoch}")
    write_summaries(run.writers[split], epoch, scalars, {"confusion_matrix": png})


def seed_epoch(seed: int, epoch: int) -> np.random.Generator:
    """The epoch's shuffling generator; also reseeds Python's, NumPy's and TensorFlow's global generators.
    Both depend on (seed, epoch) only, so a resumed epoch draws what the uninterrupted run drew."""
    import keras

    keras.utils.set_random_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    return np.random.default_rng([seed, epoch])


def _train_epoch(run: _Run, epoch: int) -> tuple[dict[str, Any], float, float]:
    """One pass over the training windows: (train metrics, seconds, seconds waiting for input)."""
    from tqdm import tqdm

    import train_step

    cfg, cache = run.cfg, run.caches["training"]
    rng = seed_epoch(cfg.seed, epoch)
    halves = None if cfg.batch_windows else cfg.batch_size
    steps = list(
        train_step.merge_small_steps(
            cache.step_indices(rng, batch_halves=halves, batch_windows=cfg.batch_windows), run.stepper.replicas
        )
    )
    if not run.warned:
        train_step.warn_few_steps(len(steps), cache.n_windows, cfg.batch_size, cfg.batch_windows)
        run.warned = True
    t0 = time.perf_counter()
    bar = tqdm(desc=f"epoch {epoch}", total=len(steps), unit="step", disable=not cfg.progress, leave=False)
    logits, labels, wait = train_step.train_epoch(run.stepper, cache, steps, run.plan.micro_windows, bar.update)
    bar.close()
    metrics = {**evaluate_scores(logits, labels, run.classes), "loss": weighted_bce(logits, labels, run.weights)}
    return metrics, time.perf_counter() - t0, wait


def _epoch(run: _Run) -> None:
    """Train one epoch, validate, apply the schedule, checkpoint, report."""
    cfg, before = run.cfg, run.schedule
    epoch = before.epoch + 1
    train_metrics, seconds, wait = _train_epoch(run, epoch)
    valid = _evaluate(run, run.caches["validation"])
    _log_metrics(run, "training", epoch, train_metrics, before.lr)
    _log_metrics(run, "validation", epoch, valid, before.lr)
    policy = SchedulePolicy(cfg.schedule, cfg.patience_lr, cfg.patience_stop, cfg.min_lr, cfg.max_epoch)
    step = schedule_step(before, selection_score(valid, cfg.selection_metric), policy)
    note = ""
    if step.improved:
        run.state["best_valid"] = valid
        _save_model(run.model, run.out.out("_best.keras"))
    if step.cut_lr:
        if step.improved:  # (`since_best`, patience 0) the best state is the current one
            run.optimizer.learning_rate.assign(step.state.lr)
        else:
            run.best.restore(run.model, run.optimizer, with_optimizer=step.restore_optimizer, lr=step.state.lr)
        note = (
            f"; plateau: LR -> {step.state.lr:g}, best weights{' and optimizer state' * step.restore_optimizer} "
            f"of epoch {step.state.best_epoch} restored"
        )
    run.state["history"].append(
        {
            "epoch": epoch,
            "lr": before.lr,
            "train_loss": train_metrics["loss"],
            "train_mAP": train_metrics["mAP"],
            "valid_loss": valid["loss"],
            "valid_mAP": valid["mAP"],
            "valid_mAP_tf1_pr_auc": valid["mAP_tf1_pr_auc"],
            "train_seconds": round(seconds, 3),
            "input_wait_seconds": round(wait, 3),
        }
    )
    run.state.update(schedule=asdict(step.state), finished_training=step.stop is not None, stopped=step.stop)
    run.ckpt.save(run.model, run.optimizer, run.state, step.improved)
    if step.improved:  # the checkpoint's best_* files are the snapshot: no second copy of the same state
        run.best = Snapshot(run.ckpt.dir / run.state["best_weights"], run.ckpt.dir / run.state["best_optimizer"])
    print(
        f"epoch {epoch}: train loss {train_metrics['loss']:.4f} mAP {_fmt(train_metrics['mAP'])} | "
        f"valid loss {valid['loss']:.4f} mAP {_fmt(valid['mAP'])}{' (best)' if step.improved else ''} | "
        f"{seconds:.1f}s (input wait {wait:.2f}s){note}",
        flush=True,
    )


def _finish(run: _Run) -> dict[str, Any]:
    """Best weights back, best model saved, test list evaluated, summary written."""
    import archis

    cfg, sched = run.cfg, run.schedule
    best_path = run.out.out("_best.keras")
    run.model.load_weights(run.best.weights)
    _save_model(run.model, best_path)  # also covers a kill between the checkpoint and the best-model save
    test = _evaluate(run, run.caches["testing"])
    _log_metrics(run, "testing", sched.best_epoch, test, sched.lr)
    for w in run.writers.values():
        w.close()
    summary = {
        "classes": run.classes,
        "class_weights": [float(w) for w in run.weights],
        "best_epoch": sched.best_epoch,
        "epochs": sched.epoch,
        "stopped": run.state["stopped"],
        "valid": run.state.get("best_valid") or _evaluate(run, run.caches["validation"]),
        "test": test,
        "model": str(best_path),
        "architecture": archis.model_info(run.model),
        "config": _config_json(cfg),
        "skipped_games": {s: c.bad_games for s, c in run.caches.items() if c.bad_games},
        "history": run.state["history"],
    }
    write_json(run.out.out("_summary.json"), summary)
    print(
        f"best epoch {sched.best_epoch}: valid mAP {_fmt(summary['valid']['mAP'])}, test mAP {_fmt(test['mAP'])} "
        f"({', '.join(f'{k} {_fmt(v)}' for k, v in test['AP'].items())})",
        flush=True,
    )
    if run.out is not cfg:
        shutil.rmtree(run.out.tflog, ignore_errors=True)
        return summary
    print(f"model: {best_path}\nsummary: {cfg.out('_summary.json')}", flush=True)
    return summary


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, select by validation score, test the best model; returns (and writes) the summary."""
    run = _setup(cfg)
    while not run.state["finished_training"]:
        _epoch(run)
    return _finish(run)


def predict_cache(cache: ds.WindowCache, predict, batch: int, c: int) -> np.ndarray:
    """Logits [W, C] of every window of a cache, in file order; `predict` from `archis.predict_function`."""
    data = _tf_dataset(lambda: cache.eval_batches(batch), *cache.window_shape, c)
    out = [predict(video, audio).numpy() for video, audio, _ in data]
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
    import archis

    model = archis.load_model(model_path)
    info = archis.model_info(model)
    n, d = cache.window_shape
    if (info["window_frames"], info["feature_dim"]) != (n, d) or info["class_names"] != cfg.data.class_map.classes:
        raise UserError(
            f"{model_path}: made for windows of {info['window_frames']} x {info['feature_dim']} and classes "
            f"{info['class_names']}, the data has {n} x {d} and {cfg.data.class_map.classes}"
        )

    import train_step

    batch = cfg.eval_batch or train_step.inference_windows(model, n, d, cfg.memory_budget_gb)
    logits = predict_cache(cache, archis.predict_function(model), batch, len(info["class_names"]))
    metrics = evaluate_scores(logits, cache.labels, info["class_names"])
    arrays = {"logits": logits, "probabilities": 1 / (1 + np.exp(-logits)), "labels": cache.labels}
    out = cfg.out(f"_predictions_{Path(str(cfg.testing)).stem}.npz")
    with atomic_path(out) as tmp:
        np.savez(
            tmp,
            classes=np.array(info["class_names"]),
            halves=np.array(_halves_table(cache)),
            **{k: arrays[k] for k in cfg.outputs},
        )
    print(
        f"{cache.n_windows} windows, mAP {_fmt(metrics['mAP'])} "
        f"({', '.join(f'{k} {_fmt(v)}' for k, v in metrics['AP'].items())})\npredictions: {out}",
        flush=True,
    )
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
    result = {
        name: evaluate_scores(x, a["labels"], classes)
        for name, x in (("A", a["logits"]), ("B", b["logits"]), ("ensemble", scores))
    }
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
    for flag, value, valid in (
        ("schedule", cfg.schedule, SCHEDULES),
        ("selection_metric", cfg.selection_metric, SELECTION_METRICS),
    ):
        if value not in valid:
            raise UserError(f"unknown --{flag} {value!r}; valid: {', '.join(valid)}")
    return modes[cfg.mode](cfg)
