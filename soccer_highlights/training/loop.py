"""The training loop: setup, one epoch, finish.

`train(config)`: weighted sigmoid cross-entropy (pos_weight = class weights of the training windows), Adam
(epsilon 1e-8 as in TF1; each step computed in micro-batches within a memory budget: `training.step`), validation
after every epoch, then the schedule (`training.schedule`): V&D's plateau counter by default, or `since_best`; at
most `max_epoch`. The best model is then tested on the test list. TensorBoard scalars and a confusion-matrix image
per epoch under `tflog`. Every epoch ends with an atomic checkpoint (weights, optimizer, generator states,
schedule) so `resume` continues after a kill as the uninterrupted run would, losing at most the epoch in progress.

TensorFlow is imported inside the functions that need it: data preparation and flag checks stay fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from soccer_highlights import archis  # light: its names load on first use
from soccer_highlights.archis.names import default_dropout
from soccer_highlights.common.atomic import write_json
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.modelfile import read_spec
from soccer_highlights.training import windows
from soccer_highlights.training.checkpoints import (
    Checkpointer,
    LoopState,
    Snapshot,
    claim_outputs,
    lock_outputs,
    model_settings,
    release_outputs,
    save_model,
)
from soccer_highlights.training.cluster import make_strategy, worker_role
from soccer_highlights.training.config import TrainConfig
from soccer_highlights.training.memory import MemoryPlan, plan_memory
from soccer_highlights.training.metrics import confusion_png, evaluate_scores, fmt, weighted_bce, write_summaries
from soccer_highlights.training.schedule import ScheduleState, schedule_step, selection_score
from soccer_highlights.training.step import AccumulatingStep, make_adam, merge_small_steps, train_epoch, warn_few_steps

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

ADAM_EPSILON = 1e-8  # tf.compat.v1.train.AdamOptimizer's default (Keras': 1e-7)


def open_caches(cfg: TrainConfig, splits: tuple[str, ...]) -> dict[str, windows.WindowCache]:
    """Prepare (`formatdataset 1`) or reopen the window cache of each named split."""
    caches = {}
    for split in splits:
        list_path = getattr(cfg, split)
        if list_path is None:
            raise UserError(f"--{split} is required in mode {cfg.mode}")
        caches[split] = windows.open_split(
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


@dataclass
class _Run:
    """Everything the epoch loop shares: data, model, optimizer, compiled steps, writers, checkpoint, state."""

    cfg: TrainConfig
    caches: dict[str, windows.WindowCache]
    weights: np.ndarray
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    strategy: tf.distribute.Strategy
    stepper: AccumulatingStep
    plan: MemoryPlan
    predict: Callable
    writers: dict[str, Any]
    ckpt: Checkpointer  # where this process writes its resume state (a non-chief worker: its temporary folder)
    state: LoopState
    best: Snapshot | None  # None until the first epoch, which always improves (scores are >= 0 > -1)
    out: TrainConfig  # where this process writes: `cfg`, or a non-chief worker's temporary folder
    warned: bool = False

    @property
    def classes(self) -> list[str]:
        return self.cfg.data.class_map.classes

    @property
    def schedule(self) -> ScheduleState:
        return self.state.schedule

    @property
    def best_snapshot(self) -> Snapshot:
        """The best epoch's snapshot: there is one once an epoch has run (the first always improves) or a run
        was resumed, which is whenever a plateau cut or the end of training asks for it."""
        assert self.best is not None, "no best epoch before the first epoch"
        return self.best


def _build(
    cfg: TrainConfig,
    window_shape: tuple[int, int],
    feature_names: dict[str, str] | None,
    feature_recipe: dict[str, str] | None = None,
):
    """Strategy, model and Adam (epsilon 1e-8, TF1's default; the fused kernel) built in the strategy's scope. The
    model records the class map and the feature recipe of the training data."""

    strategy = make_strategy()
    with strategy.scope():
        model = archis.build_model(
            cfg.architecture,
            class_names=cfg.data.class_map.classes,
            pooling=cfg.network,
            vlad_k=cfg.vlad_k,
            window_seconds=cfg.data.window_seconds,
            tokens_per_second=cfg.data.tokens_per_second,
            feature_dim=window_shape[1],
            feature_names=feature_names,
            compute_dtype=cfg.compute_dtype,
            dropout=cfg.dropout,
            seed=cfg.seed,
            class_map=cfg.data.class_map.to_json(),
            feature_recipe=feature_recipe,
            training=training_record(cfg),
            batch_norm=cfg.batch_norm,
            head_init=cfg.head_init,
            bn_eval=cfg.bn_eval,
            l2_floor=cfg.l2_floor,
            init_model=init_record(cfg) if cfg.init_model else None,
        )
        if cfg.init_model:
            print(init_weights(model, Path(cfg.init_model)), flush=True)
        optimizer = make_adam(cfg.lr, epsilon=ADAM_EPSILON)
        optimizer.build(model.trainable_variables)
    return strategy, model, optimizer


def _same_classes(a: Any, b: Any) -> bool:
    """Whether two model specs have the same classes, mapped from the same labels (the map's name aside)."""
    return _classes(a.class_names, a.class_map) == _classes(b.class_names, b.class_map)


def _classes(names: Any, class_map: Any) -> tuple[list[str], Any]:
    return list(names), (class_map or {}).get("labels")


def init_record(cfg: TrainConfig) -> dict[str, Any]:
    """What a fine-tuned model records of the model it started from (`--init_model`), its spec read without Keras."""
    path = Path(str(cfg.init_model))
    start = read_spec(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return {
        "file": path.name,
        "sha256": digest.hexdigest(),
        "architecture": start.architecture,
        "class_names": list(start.class_names),
        "head": "kept" if _keeps_head(cfg) else "re-initialised",
    }


def _keeps_head(cfg: TrainConfig) -> bool:
    """Whether fine-tuning from `cfg.init_model` keeps its classification head (same classes from the same labels)."""
    start = read_spec(str(cfg.init_model))
    ours = _classes(cfg.data.class_map.classes, cfg.data.class_map.to_json())
    return _classes(start.class_names, start.class_map) == ours


def init_weights(model: Any, path: Path) -> str:
    """Copy every weight of the trained model at `path` into `model` (just built with the same architecture, pooling,
    sizes and window); the classification head (the Dense layers named `*logits`) only when both have the same
    classes from the same labels, else it keeps its fresh initialisation. The one line to print; UserError naming
    `path` when a layer other than the head differs."""
    start = archis.load_model(path)
    same = _same_classes(archis.model_info(start), archis.model_info(model))
    theirs = {layer.name: layer for layer in start.layers}
    fresh = []
    for layer in model.layers:
        if not layer.weights:
            continue
        head = layer.name.endswith("logits")
        other = theirs.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if head and not same:
            fresh.append(layer.name)
            continue
        if other is None or [tuple(w.shape) for w in other.weights] != shapes:
            raise UserError(
                f"{path}: its layer {layer.name} differs from this run's model (fine-tuning keeps the architecture, "
                "pooling, VLAD_k, window and feature sizes of the model it starts from)"
            )
        layer.set_weights(other.get_weights())
    if fresh:
        return (
            f"init_model {path}: every weight but the classification head ({', '.join(fresh)}), re-initialised: "
            f"new class map ({', '.join(archis.model_info(model).class_names[1:])} instead of "
            f"{', '.join(archis.model_info(start).class_names[1:])})"
        )
    return f"init_model {path}: every weight (same class map)"


def _check_then_claim(cfg: TrainConfig, caches: dict[str, windows.WindowCache], chief: bool) -> None:
    """Every class has a positive training window (else UserError, and the caches this run just prepared are
    removed: the disk stays as it was); then the chief claims the output names."""
    try:
        windows.check_positives(caches["training"].labels, str(cfg.training), cfg.data)
    except UserError as exc:
        if cfg.init_model and _keeps_head(cfg):  # a few reviewed matches need not hold every class: the start knows it
            problem = str(exc).split(": choose")[0]
            print(f"warning: {problem}: fine-tuning keeps what {cfg.init_model} learnt of it", flush=True)
            if chief:
                claim_outputs(cfg)
            return
        for cache in caches.values():
            if cache.built_now:  # only what this run built: a cache it reused stays
                shutil.rmtree(cache.dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                cfg.cache_root.rmdir()  # only if empty
        raise
    if chief:
        claim_outputs(cfg)


def _setup(cfg: TrainConfig) -> _Run:
    """Outputs claimed, caches opened, class weights, model and optimizer built, memory planned, resume state loaded.

    Under TF_CONFIG only the chief writes into `tflog`; the other workers read its resume state and write
    their copies into `<tflog>/workertemp_*`, removed at the end (TensorFlow's convention)."""
    chief, temp_name = worker_role()
    out = cfg if chief else replace(cfg, tflog=str(Path(cfg.tflog) / temp_name), resume=False, overwrite=True)
    if not chief and cfg.formatdataset == 1:  # no two workers writing one cache
        cfg = replace(cfg, cache_dir=str(Path(out.tflog) / "cache"))
    if chief:
        lock_outputs(cfg)  # before any cache is built: a second run of these outputs stops at once
    caches = open_caches(cfg, ("training", "validation", "testing"))
    train_cache, classes = caches["training"], cfg.data.class_map.classes
    _check_then_claim(cfg, caches, chief)
    weights = windows.class_weights(train_cache.labels, cfg.class_weighting, classes)
    print(
        f"class weights (pos_weight, {cfg.class_weighting}): "
        + ", ".join(f"{c} {w:.4f}" for c, w in zip(classes, weights, strict=True)),
        flush=True,
    )
    ckpt = Checkpointer(cfg.out("_resume"))
    state = _saved_state(cfg, ckpt)

    import tensorflow as tf

    strategy, model, optimizer = _build(
        cfg, train_cache.window_shape, train_cache.feature_files or None, train_cache.feature_recipe
    )
    stepper = AccumulatingStep(
        model, optimizer, weights, strategy, train_cache.window_shape, loss_reduction=cfg.loss_reduction
    )
    plan = plan_memory(
        model, *train_cache.window_shape, cfg.memory_budget_gb, cfg.micro_batch_windows, step_windows=cfg.batch_windows
    )
    print(plan.describe(), flush=True)
    writers = {s: tf.summary.create_file_writer(str(out.out(f"_{s}"))) for s in ("training", "validation", "testing")}
    state, best = _start_state(cfg, ckpt, state, model, optimizer)
    return _Run(
        cfg,
        caches,
        weights,
        model,
        optimizer,
        strategy,
        stepper,
        plan,
        archis.set_predictor(model),
        writers,
        ckpt if chief else Checkpointer(out.out("_resume")),
        state,
        best,
        out,
    )


def _saved_state(cfg: TrainConfig, ckpt: Checkpointer) -> LoopState | None:
    """The state of the run to resume (--resume), checked to share this run's settings; None to start afresh."""
    state = ckpt.load() if cfg.resume else None
    if cfg.resume and state is None:
        print(f"--resume: no state in {ckpt.dir}, starting from epoch 1", flush=True)
    if state is None:
        return None
    saved, now = dict(state.settings), model_settings(cfg)
    if "dropout" in saved and saved["dropout"] is None:
        # saved before the command filled --dropout from the preset: None was the architecture's original rate

        saved["dropout"] = default_dropout(cfg.architecture)
    if saved != now:
        diff = [k for k, v in now.items() if saved.get(k) != v]
        raise UserError(f"{ckpt.state_path}: the run to resume used other settings ({', '.join(diff)})")
    state.settings = now
    return state


def _start_state(
    cfg: TrainConfig, ckpt: Checkpointer, state: LoopState | None, model: Any, optimizer: Any
) -> tuple[LoopState, Snapshot | None]:
    """A fresh run's state (and no best model yet), or the resumed one with its weights, Adam state and LR."""
    if state is None:
        return LoopState(schedule=ScheduleState(lr=cfg.lr), settings=model_settings(cfg)), None
    best = ckpt.restore(model, optimizer, state)
    sched = state.schedule
    optimizer.learning_rate.assign(sched.lr)
    print(
        f"resumed after epoch {sched.epoch} (best epoch {sched.best_epoch}, score {sched.best_score:.4f}, "
        f"LR {sched.lr:g})",
        flush=True,
    )
    return state, best


def _evaluate(run: _Run, cache: windows.WindowCache) -> dict[str, Any]:
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

    cfg, cache = run.cfg, run.caches["training"]
    rng = seed_epoch(cfg.seed, epoch)
    halves = None if cfg.batch_windows else cfg.batch_size
    steps = list(
        merge_small_steps(
            cache.step_indices(rng, batch_halves=halves, batch_windows=cfg.batch_windows), run.stepper.replicas
        )
    )
    if not run.warned:
        warn_few_steps(len(steps), cache.n_windows, cfg.batch_size, cfg.batch_windows)
        run.warned = True
    t0 = time.perf_counter()
    bar = tqdm(desc=f"epoch {epoch}", total=len(steps), unit="step", disable=not cfg.progress, leave=False)
    logits, labels, wait = train_epoch(run.stepper, cache, steps, run.plan.micro_windows, bar.update)
    bar.close()
    metrics = {**evaluate_scores(logits, labels, run.classes), "loss": weighted_bce(logits, labels, run.weights)}
    return metrics, time.perf_counter() - t0, wait


def _epoch(run: _Run) -> None:
    """Train one epoch, validate, apply the schedule, checkpoint, report."""
    cfg, before = run.cfg, run.schedule
    epoch = before.epoch + 1
    train_metrics, seconds, wait = _train_epoch(run, epoch)
    if archis.model_info(run.model).bn_eval == "population":  # --bn_eval population: the training windows' moments
        train, batch = run.caches["training"], run.cfg.eval_batch or run.plan.eval_windows
        archis.population_statistics(
            run.model,
            lambda: (train.read(i, min(i + batch, train.n_windows)) for i in range(0, train.n_windows, batch)),
        )
    valid = _evaluate(run, run.caches["validation"])
    _log_metrics(run, "training", epoch, train_metrics, before.lr)
    _log_metrics(run, "validation", epoch, valid, before.lr)
    step = schedule_step(before, selection_score(valid, cfg.selection_metric), cfg.schedule_policy)
    note = ""
    if step.improved:
        run.state.best_valid = valid
        save_model(run.model, run.out.out("_best.keras"))
    if step.cut_lr:
        if step.improved:  # (`since_best`, patience 0) the best state is the current one
            run.optimizer.learning_rate.assign(step.state.lr)
        else:
            run.best_snapshot.restore(run.model, run.optimizer, with_optimizer=step.restore_optimizer, lr=step.state.lr)
        note = (
            f"; plateau: LR -> {step.state.lr:g}, best weights{' and optimizer state' * step.restore_optimizer} "
            f"of epoch {step.state.best_epoch} restored"
        )
    run.state.history.append(
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
    run.state.schedule, run.state.finished_training, run.state.stopped = step.state, step.stop is not None, step.stop
    best = run.ckpt.save(run.model, run.optimizer, run.state, step.improved)
    if best is not None:  # the checkpoint's best_* files are the snapshot: no second copy of the same state
        run.best = best
    print(
        f"epoch {epoch}: train loss {train_metrics['loss']:.4f} mAP {fmt(train_metrics['mAP'])} | "
        f"valid loss {valid['loss']:.4f} mAP {fmt(valid['mAP'])}{' (best)' if step.improved else ''} | "
        f"{seconds:.1f}s (input wait {wait:.2f}s){note}",
        flush=True,
    )


def _finish(run: _Run) -> dict[str, Any]:
    """Best weights back, best model saved, test list evaluated, summary written."""

    cfg, sched = run.cfg, run.schedule
    best_path = run.out.out("_best.keras")
    run.model.load_weights(run.best_snapshot.weights)
    save_model(run.model, best_path)  # also covers a kill between the checkpoint and the best-model save
    test = _evaluate(run, run.caches["testing"])
    _log_metrics(run, "testing", sched.best_epoch, test, sched.lr)
    for w in run.writers.values():
        w.close()
    valid = run.state.best_valid or _evaluate(run, run.caches["validation"])
    summary: dict[str, Any] = {
        "classes": run.classes,
        "class_weights": [float(w) for w in run.weights],
        "best_epoch": sched.best_epoch,
        "epochs": sched.epoch,
        "stopped": run.state.stopped,
        "valid": valid,
        "test": test,
        "model": str(best_path),
        "architecture": archis.model_info(run.model).to_json(),
        "config": config_json(cfg),
        "skipped_games": {s: c.bad_games for s, c in run.caches.items() if c.bad_games},
        "history": run.state.history,
    }
    write_json(run.out.out("_summary.json"), summary)
    print(
        f"best epoch {sched.best_epoch}: valid mAP {fmt(valid['mAP'])}, test mAP {fmt(test['mAP'])} "
        f"({', '.join(f'{k} {fmt(v)}' for k, v in test['AP'].items())})",
        flush=True,
    )
    if run.out is not cfg:
        shutil.rmtree(run.out.tflog, ignore_errors=True)
        return summary
    print(f"model: {best_path}\nsummary: {cfg.out('_summary.json')}", flush=True)
    return summary


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train, select by validation score, test the best model; returns (and writes) the summary."""
    try:
        run = _setup(cfg)
        while not run.state.finished_training:
            _epoch(run)
        return _finish(run)
    finally:
        release_outputs(cfg)


def predict_cache(cache: windows.WindowCache, predict, batch: int, c: int) -> np.ndarray:
    """Logits [W, C] of every window of a cache, in file order; `predict` from `archis.predict_function`, or an
    `archis.set_predictor`, which scores the cache half by half (batch-norm evaluated with batch statistics: those
    of the half, V&D's evaluation batch, whatever `batch`)."""
    if isinstance(predict, archis.SetPredictor):
        out = []
        for h in cache.halves:
            start, stop = int(h["start"]), int(h["start"]) + int(h["count"])

            def chunks(start=start, stop=stop):
                return (cache.read(i, min(i + batch, stop)) for i in range(start, stop, batch))

            out.append(predict(chunks))
        return np.concatenate(out) if out else np.zeros((0, c), np.float32)
    data = _tf_dataset(lambda: cache.eval_batches(batch), *cache.window_shape, c)
    out = [predict(video, audio).numpy() for video, audio, _ in data]
    return np.concatenate(out) if out else np.zeros((0, c), np.float32)


def training_record(cfg: TrainConfig) -> dict[str, Any]:
    """How the model was trained, as its file records it: the choices that follow the original of the architecture."""
    return {
        "class_weights": cfg.class_weighting,
        "loss_reduction": cfg.loss_reduction,
        "batch_size": cfg.batch_size,
        "batch_windows": cfg.batch_windows,
        "label_index": cfg.data.label_index,
        "preset": cfg.preset,
        "labels": cfg.data.labels,
        "event_time": cfg.data.event_time,
        "background_label": cfg.data.background,
        "schedule": cfg.schedule,
        "plateau_restore": cfg.plateau_restore,
        "pooling_rule": cfg.pooling_rule,
        "lr": cfg.lr,
        "seed": cfg.seed,
    }


def config_json(cfg: TrainConfig) -> dict[str, Any]:
    out = asdict(cfg)
    out["data"] = {k: v for k, v in out["data"].items() if k != "class_map"} | {"class_map": cfg.data.class_map.name}
    return out
