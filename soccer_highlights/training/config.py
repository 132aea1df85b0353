"""What a training, prediction or ensemble run is told: `TrainConfig`, filled by `ClassificationMinuteBased.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from soccer_highlights.dataset import load_class_map
from soccer_highlights.training.presets import DEFAULT_PRESET
from soccer_highlights.training.schedule import SchedulePolicy
from soccer_highlights.training.windows import DataConfig

PREDICT_OUTPUTS = ("logits", "probabilities", "labels")


ENSEMBLE_METHODS = ("mean_logits", "product")


def _default_data() -> DataConfig:
    """The windows of the default preset: its window size, token rate, label index, (Labels-v2.json) class map,
    label file, event time and background rule."""
    return DataConfig(
        window_seconds=DEFAULT_PRESET.window_seconds,
        tokens_per_second=DEFAULT_PRESET.tokens_per_second,
        label_index=DEFAULT_PRESET.label_index,
        class_map=load_class_map(DEFAULT_PRESET.class_map),
        labels=DEFAULT_PRESET.labels,
        event_time=DEFAULT_PRESET.event_time,
        background=DEFAULT_PRESET.background_label,
    )


@dataclass
class TrainConfig:
    """Everything `ClassificationMinuteBased.py` passes down (original flag names in comments). The defaults of the
    recipe's fields are `presets.DEFAULT_PRESET`'s (V&D minute-based, as the default architecture is V&D's); the
    command fills them from the preset of the architecture (`presets.preset_for`) unless a flag is given."""

    architecture: str = "concat"  # --architecture
    preset: str = DEFAULT_PRESET.name  # --preset (default: the architecture's)
    training: str | None = None  # --training
    validation: str | None = None  # --validation
    testing: str | None = None  # --testing
    data: DataConfig = field(default_factory=_default_data)
    network: str = DEFAULT_PRESET.network  # --network, after --pooling_rule (the pooling the model gets)
    pooling_rule: str = DEFAULT_PRESET.pooling_rule  # --pooling_rule (recorded in the model)
    batch_norm: str | None = DEFAULT_PRESET.batch_norm  # --batch_norm; None: the architecture's (archis.registry)
    head_init: str | None = DEFAULT_PRESET.head_init  # --head_init; None: the architecture's
    bn_eval: str | None = DEFAULT_PRESET.bn_eval  # --bn_eval; None: the architecture's
    l2_floor: str | None = DEFAULT_PRESET.l2_floor  # --l2_floor; None: the architecture's
    loss_reduction: str = DEFAULT_PRESET.loss_reduction  # --loss_reduction
    plateau_restore: str = DEFAULT_PRESET.plateau_restore  # --plateau_restore
    class_weighting: str = DEFAULT_PRESET.class_weighting  # --class_weights
    vlad_k: int = DEFAULT_PRESET.vlad_k  # --VLAD_k
    dropout: float | None = DEFAULT_PRESET.dropout  # --dropout; None: the architecture's (archis.registry)
    lr: float = DEFAULT_PRESET.lr  # --LR
    max_epoch: int = DEFAULT_PRESET.max_epoch  # --max_epoch
    batch_size: int = DEFAULT_PRESET.batch_size  # --batch_size: halves of games per batch
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
    init_model: str | None = None  # --init_model: a trained model whose weights this run starts from
    ensemble: tuple[str, ...] = ()
    ensemble_method: str = "mean_logits"
    ensemble_of: str | None = None  # V&D's ensemble named by --architecture (Archi3Prediction ...): members checked
    seed: int = 0
    resume: bool = False
    compute_dtype: str = "float32"
    schedule: str = DEFAULT_PRESET.schedule  # see SchedulePolicy
    patience_lr: int = DEFAULT_PRESET.patience_lr
    patience_stop: int = DEFAULT_PRESET.patience_stop
    min_lr: float = DEFAULT_PRESET.min_lr
    selection_metric: str = DEFAULT_PRESET.selection_metric
    overwrite: bool = False
    keep_old: bool = False  # --keep_old: a file of the user's with an output's name kept as NAME.old-N.EXT
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
