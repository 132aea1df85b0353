"""A run's files under `--tflog`: the per-epoch resume state, the best epoch's snapshot, the best model, and the
claim on an earlier run's outputs (refused unless `--resume` or `--overwrite`; a file of the user's with an
output's name is never replaced: refused, or kept as NAME.old-N.EXT with `--keep_old`)."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from soccer_highlights.archis import names
from soccer_highlights.common.atomic import (
    KEEP_OLD_FLAG,
    atomic_path,
    foreign,
    keep_aside,
    read_json,
    record_files,
    record_folder,
    write_json,
)
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.lock import Lock
from soccer_highlights.training.config import TrainConfig
from soccer_highlights.training.schedule import ScheduleState

STATE_VERSION = 3  # 3: the settings hold the batch-norm, L2-floor, loss, class-weight and label choices


@dataclass
class LoopState:
    """What the epoch loop carries from one epoch to the next, and `state.json` holds (its JSON form): the schedule,
    one history row per epoch, whether and why training stopped, the settings a resumed run must share, the best
    epoch's validation metrics, and the files of the last checkpoint and of the best epoch (set by
    `Checkpointer.save`, in the checkpoint folder)."""

    schedule: ScheduleState
    settings: dict[str, Any]  # `model_settings`
    history: list[dict[str, Any]] = field(default_factory=list)
    finished_training: bool = False
    stopped: str | None = None  # plateau or max_epoch, once finished
    best_valid: dict[str, Any] | None = None  # validation metrics of the best epoch
    weights: str | None = None
    optimizer: str | None = None
    best_weights: str | None = None
    best_optimizer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "version": STATE_VERSION}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: Path) -> LoopState:
        """The state `to_json` wrote; UserError naming `where` when it is of another version or malformed."""
        if data.get("version") != STATE_VERSION:
            raise UserError(f"{where}: resume state of another version")
        try:
            known = {f.name: data[f.name] for f in fields(cls) if f.name in data}
            return cls(**{**known, "schedule": ScheduleState(**data["schedule"])})
        except (KeyError, TypeError) as exc:
            raise UserError(f"{where}: resume state unreadable ({exc!r})") from exc


class Checkpointer:
    """Per-epoch resume state under `<tflog>/<prefix>_resume/`: versioned weight files and a state file
    (optimizer variables and the model's random-generator states), then `state.json` written atomically
    last, then the files it no longer names are removed. The best epoch's weights and optimizer state are
    kept beside the last epoch's. A kill at any moment leaves the previous state.json and its files intact."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.state_path = folder / "state.json"

    def load(self) -> LoopState | None:
        if not self.state_path.is_file():
            return None
        return LoopState.from_json(read_json(self.state_path), self.state_path)

    def save(self, model, optimizer, state: LoopState, improved: bool) -> Snapshot | None:
        """Checkpoint the current weights, optimizer and generator states, recording their files in `state`;
        `improved`: they are the new best, and their snapshot is returned (None otherwise)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        epoch = state.schedule.epoch
        weights, extra = self.dir / f"epoch_{epoch:04d}.weights.h5", self.dir / f"epoch_{epoch:04d}.state.npz"
        with atomic_path(weights) as tmp:
            model.save_weights(tmp)
        with atomic_path(extra) as tmp:
            _savez_streaming(tmp, {"optimizer": optimizer.variables, "rng": generator_states(model)})
        state.weights, state.optimizer = weights.name, extra.name
        best = None
        if improved:
            best = Snapshot(
                _link(weights, self.dir / weights.name.replace("epoch_", "best_", 1)),
                _link(extra, self.dir / extra.name.replace("epoch_", "best_", 1)),
            )
            state.best_weights, state.best_optimizer = best.weights.name, best.optimizer.name
        write_json(self.state_path, state.to_json())
        keep = {"state.json", state.weights, state.optimizer, state.best_weights, state.best_optimizer}
        for p in self.dir.iterdir():
            if p.name not in keep and not p.name.startswith("."):
                p.unlink(missing_ok=True)
        return best

    def restore(self, model, optimizer, state: LoopState) -> Snapshot:
        """Load the checkpointed weights, optimizer and generator states; return the best epoch's snapshot (its
        files)."""
        weights, extra = state.weights, state.optimizer
        best_weights, best_extra = state.best_weights, state.best_optimizer
        if weights is None or extra is None or best_weights is None or best_extra is None:
            raise UserError(f"{self.state_path}: resume state names no checkpoint files")
        try:
            model.load_weights(self.dir / weights)
            with np.load(self.dir / extra) as saved:
                generators = generator_states(model)
                counts = [sum(k.startswith(p + "_") for k in saved.files) for p in ("optimizer", "rng")]
                if counts != [len(optimizer.variables), len(generators)]:
                    raise UserError(f"{self.dir}: optimizer or generator state does not match this model")
                for prefix, variables in (("optimizer", optimizer.variables), ("rng", generators)):
                    for i, var in enumerate(variables):  # one at a time: Adam's slots are GBs at VLAD-512
                        var.assign(saved[f"{prefix}_{i}"])
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"{self.dir}: resume files unreadable ({exc})") from exc
        return Snapshot(self.dir / best_weights, self.dir / best_extra)


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


def model_settings(cfg: TrainConfig) -> dict[str, Any]:
    """What a resumed run must share with the run it continues: the model, its batch-norm and L2 choices (an unset
    one as the architecture's), the loss, and how windows are read and labelled. A state saved before the choices
    were recorded is of an earlier `STATE_VERSION`, refused: what it trained with is not known."""
    arch = cfg.architecture
    data = cfg.data
    return {
        "architecture": arch,
        "network": cfg.network,
        "pooling_rule": cfg.pooling_rule,
        "VLAD_k": cfg.vlad_k,
        "dropout": cfg.dropout,
        "batch_norm": cfg.batch_norm or names.default_batch_norm(arch),
        "head_init": cfg.head_init or names.default_head_init(arch),
        "bn_eval": cfg.bn_eval or names.default_bn_eval(arch),
        "l2_floor": cfg.l2_floor or names.default_l2_floor(arch),
        "loss_reduction": cfg.loss_reduction,
        "class_weights": cfg.class_weighting,
        "WindowSize": data.window_seconds,
        "featurePerSec": data.tokens_per_second,
        "features": [data.features_video, data.features_audio, data.pca, data.feature_dim],
        "classes": data.class_map.classes,
        "label_to_class": data.class_map.label_to_index,
        "label_index": data.label_index,
        "labels": [data.labels, data.labels_only],
        "event_time": data.event_time,
        "background_label": data.background,
        "compute_dtype": cfg.compute_dtype,
        "batch_size": cfg.batch_size,
        "batch_windows": cfg.batch_windows,
        "seed": cfg.seed,
    }


def save_model(model, path: Path) -> None:
    """`model.save` to a temporary name, then renamed. Keras stages the weights through a file on disk
    (not a second in-memory copy) for any model over 512 MB unless `psutil` is installed: it is not a
    dependency, so a VLAD-512 save adds no gigabyte on top of training. The weights are then laid out on
    4096-byte boundaries (`common.modelfile.align_weights`), so that loading the model maps them in place."""
    from soccer_highlights.common.modelfile import align_weights  # deferred: h5py, only when a model is saved

    with atomic_path(path) as tmp:
        model.save(tmp)
        align_weights(tmp)
    record_files(path.parent, [path.name])  # a file of this project's: a later --overwrite may replace it


def run_outputs(cfg: TrainConfig) -> list[Path]:
    """What a training run writes under `--tflog`: best model, summary, resume state, TensorBoard folders."""
    return [cfg.out(s) for s in ("_best.keras", "_summary.json", "_resume", "_training", "_validation", "_testing")]


_LOCKS: dict[Path, Lock] = {}


def check_inputs_outside(cfg: TrainConfig) -> None:
    """UserError when an input of the run (a game list, the dataset root) is one of its outputs or lies inside
    one: the run would replace it, or --overwrite remove it."""
    for given in (cfg.training, cfg.validation, cfg.testing, cfg.data.dataset_root):
        if not given or not Path(given).exists():  # a SoccerNet split name, or missing (reported elsewhere)
            continue
        real = Path(given).resolve()
        for out in run_outputs(cfg):
            if real == out.resolve() or real.is_relative_to(out.resolve()):
                raise UserError(
                    f"{given}: an input of this run lies in its output {out} (the run would replace or remove "
                    "it); move it or choose another --tflog / --outputPrefix"
                )


def claim_outputs(cfg: TrainConfig) -> None:
    """Refuse to write over an earlier run's outputs unless `--resume` (continue it) or `--overwrite`
    (remove them first, TensorBoard events included, so no two runs mix), and while another training writes the
    same outputs: `<tflog>/.<prefix>.lock` is held until `release_outputs` (called by the chief only: the other
    workers of a multi-worker run write into their own folders).

    Only what a run of this project wrote in `--tflog` (its `.outputs.json`, `common.atomic`'s record) and that is
    unchanged since counts as an earlier run's: any other file or folder with an output's name (the user's) refuses
    the run before any work, `--overwrite` included, naming it and the ways out (another --tflog or
    --outputPrefix, or `--keep_old`: kept as NAME.old-N.EXT). Once claimed, the run's folders are recorded (the
    files as they are written: `save_model`, `release_outputs`)."""
    if cfg.resume and cfg.overwrite:
        raise UserError("--resume continues the earlier run and --overwrite replaces it: give one of them")
    check_inputs_outside(cfg)
    lock_outputs(cfg)
    if cfg.resume and Checkpointer(cfg.out("_resume")).state_path.is_file():
        _record_claim(cfg)
        return
    users = _users_files(cfg)
    ours = [p for p in run_outputs(cfg) if os.path.lexists(p) and p not in users]
    finished = [p for p in ours if p.suffix in (".keras", ".json")]
    if ours and not (cfg.resume and not finished) and not cfg.overwrite:
        hint = (
            "but left no resume state to continue; --overwrite replaces them"
            if cfg.resume
            else "--resume continues it, --overwrite replaces it, or choose another --outputPrefix"
        )
        raise UserError(f"{ours[0]}: an earlier run wrote {_names(ours)} in {cfg.tflog}; " + hint)
    if users:
        kept = [keep_aside(p) for p in users]
        print(f"{KEEP_OLD_FLAG}: kept {_names(users)} as {_names(kept)}", flush=True)
    if ours:
        _remove(ours)
        if cfg.overwrite:
            print(f"--overwrite: removed the earlier run's {_names(ours)}", flush=True)
        else:  # a run stopped before its first epoch ended (a requeued job): start it again
            print(f"--resume: the earlier run stopped before its first epoch ended; removed its {_names(ours)}")
    _record_claim(cfg)


# What each folder output holds (paths inside it): a folder of that name holding anything else is not a run's.
FOLDER_HOLDS = {
    "_resume": ("state.json", "epoch_*.weights.h5", "epoch_*.state.npz", "best_*.weights.h5", "best_*.state.npz"),
    "_training": ("events.out.tfevents.*",),
    "_validation": ("events.out.tfevents.*",),
    "_testing": ("events.out.tfevents.*",),
}
_CLAIMED: dict[Path, tuple[int, int, int] | None] = {}  # summary path -> its (inode, mtime, size) when claimed


def _record_claim(cfg: TrainConfig) -> None:
    """Record the run's folders in `--tflog`'s record (they are this run's from now on), and what the summary file
    was when claimed (`release_outputs` records it if this run wrote it)."""
    for suffix, holds in FOLDER_HOLDS.items():
        record_folder(cfg.tflog, cfg.out(suffix).name, holds)
    summary = cfg.out("_summary.json")
    _CLAIMED[summary] = _stat(summary)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _names(paths: list[Path]) -> str:
    return ", ".join(p.name for p in paths)


def _remove(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def lock_outputs(cfg: TrainConfig) -> None:
    """Take `<tflog>/.<prefix>.lock` (UserError while another training holds it), then refuse a file of the user's
    with an output's name (`_users_files`, unless --keep_old); idempotent. `claim_outputs` takes it too; the
    training loop takes it first, before building window caches, so both refusals come before any work."""
    path = Path(cfg.tflog) / f".{cfg.prefix}.lock"
    if path not in _LOCKS:
        _LOCKS[path] = Lock(path, f"a training writes {cfg.prefix}_* here (--tflog, --outputPrefix)")
        if not (cfg.resume and Checkpointer(cfg.out("_resume")).state_path.is_file()):
            _users_files(cfg)


def _users_files(cfg: TrainConfig) -> list[Path]:
    """The outputs in `--tflog` that no run of this project wrote (or that changed since); UserError naming them
    and the ways out unless --keep_old."""
    existing = [p for p in run_outputs(cfg) if os.path.lexists(p)]
    others = set(foreign(cfg.tflog, [p.name for p in existing]))
    users = [p for p in existing if p.name in others]
    if users and not cfg.keep_old:
        raise UserError(
            f"{cfg.tflog}: {_names(users)} {'was' if len(users) == 1 else 'were'} not written by this project (or "
            f"changed since), so this run would replace {'it' if len(users) == 1 else 'them'}: choose another "
            f"--tflog or --outputPrefix, or add {KEEP_OLD_FLAG} to keep the old copies as NAME.old-N.EXT"
        )
    return users


def release_outputs(cfg: TrainConfig) -> None:
    """Drop the lock `claim_outputs` took (nothing when it took none), having recorded the summary if this run
    wrote it."""
    summary = cfg.out("_summary.json")
    if summary in _CLAIMED and _stat(summary) not in (None, _CLAIMED.pop(summary)):  # this run wrote it
        record_files(cfg.tflog, [summary.name])
    lock = _LOCKS.pop(Path(cfg.tflog) / f".{cfg.prefix}.lock", None)
    if lock is not None:
        lock.release()
