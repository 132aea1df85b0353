"""What a training, prediction or ensemble run is told: `TrainConfig`, filled by `ClassificationMinuteBased.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from soccer_highlights.training.schedule import SchedulePolicy
from soccer_highlights.training.windows import DataConfig

PREDICT_OUTPUTS = ("logits", "probabilities", "labels")


ENSEMBLE_METHODS = ("mean_logits", "product")


@dataclass
class TrainConfig:
    """Everything `ClassificationMinuteBased.py` passes down (original flag names in comments)."""

    architecture: str = "concat"  # --architecture
    training: str | None = None  # --training
    validation: str | None = None  # --validation
    testing: str | None = None  # --testing
    data: DataConfig = field(default_factory=DataConfig)
    network: str = "RVLAD"  # --network, after --pooling_rule (the pooling the model gets)
    pooling_rule: str = "original"  # --pooling_rule (recorded in the model)
    batch_norm: str | None = None  # --batch_norm; None: the original's (archis.registry.default_batch_norm)
    head_init: str | None = None  # --head_init; None: the original's
    plateau_restore: str = "weights_and_optimizer"  # --plateau_restore: V&D's; the seed's restores weights only
    class_weighting: str = "inverse_frequency"  # --class_weights: unit (V&D) or inverse_frequency (the seed)
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
    def schedule_policy(self) -> SchedulePolicy:
        """The schedule the flags describe (UserError for an unknown --schedule)."""
        return SchedulePolicy(
            self.schedule,
            self.patience_lr,
            self.patience_stop,
            self.min_lr,
            self.max_epoch,
            restore_optimizer=self.plateau_restore == "weights_and_optimizer",
        )

    @property
    def prefix(self) -> str:
        return self.output_prefix or self.architecture

    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir or f"Windows_size_{self.data.window_seconds:g}_sec")

    def out(self, suffix: str) -> Path:
        return Path(self.tflog) / f"{self.prefix}{suffix}"
