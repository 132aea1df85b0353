"""The originals' training recipes, one typed `Preset` each, and which architecture trains with which.

Two codes trained the architectures of this port, each with its own recipe: V&D's minute-based classifier (its
`ClassificationMinuteBased.py`, whose flags the command keeps) and the seed's fusion models (its `trainer.py`). An
architecture trains with the recipe of the code it comes from (`preset_for`, by `archis.names.origin`); a flag
given on the command line wins over the preset's value (`commands.train`). `TrainConfig`'s own defaults are
`DEFAULT_PRESET`'s, V&D's, as its default architecture is V&D's.

The values are the ones the command has always chosen. Where both presets agree, the value is V&D's flag default
(the seed's code has no such flag, or this port never gave it another value): `--LR 0.01`, `--max_epoch 200`,
`--VLAD_k 64`, `--WindowSize 60`, two features a second, the plateau schedule, events at their `gameTime`. Selection by the mean AP of the
classes with a positive window is this port's choice for both (`--selection_metric tf1_pr_auc` is V&D's).

V&D's second-based script (`ClassificationSecondBased.py`) trains nothing: it spots with a minute-based model, so
it has no preset; its NMS values are the spotting flags' defaults (`common.cli.add_spotting_flags`).

Pure: no TensorFlow, except `preset_for` and `Preset.dropout_for`, which ask the architecture registry.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from soccer_highlights.archis.names import canonical_architecture, origin
from soccer_highlights.common.errors import UserError


@dataclass(frozen=True)
class Preset:
    """Every hyper-parameter a recipe fixes. Field names are `TrainConfig`'s (and `DataConfig`'s for the data)."""

    name: str  # key: vd_minute, seed
    title: str  # in the help and logs: "V&D minute-based", "seed"
    origin: str  # `archis.names.origin` of the architectures that train with it
    # optimisation
    lr: float
    max_epoch: int
    batch_size: int  # halves of games per optimiser step
    class_weighting: str  # pos_weight of the loss: unit, inverse_frequency or seed_counts (`windows.class_weights`)
    loss_reduction: str  # sum_classes (V&D) or mean_classes (the seed's BCEWithLogitsLoss), `step.AccumulatingStep`
    schedule: str  # `schedule.SCHEDULES`
    patience_lr: int
    patience_stop: int
    min_lr: float
    plateau_restore: str  # what an LR cut restores: weights_and_optimizer or weights
    selection_metric: str  # `schedule.SELECTION_METRICS`
    # model
    network: str  # --network, before --pooling_rule
    pooling_rule: str  # `archis.names.POOLING_RULES`
    vlad_k: int
    dropout: float  # before the classifier
    batch_norm: str  # constants of the batch-norm layers (`archis.names.BATCH_NORMS`)
    head_init: str  # classifier initialisation (`archis.names.HEAD_INITS`)
    bn_eval: str  # batch-norm statistics at evaluation (`archis.names.BN_EVALS`)
    l2_floor: str  # floor of the VLAD L2 normalisations (`archis.names.L2_FLOORS`)
    # data
    window_seconds: int
    tokens_per_second: int
    label_index: str  # `windows.LABEL_INDEX_RULES`
    class_map: str  # on games with Labels-v2.json (games with only Labels.json get v1 under both)
    labels: str  # the label file read first: v1 (Labels.json) or v2 (Labels-v2.json), `dataset.LABEL_VERSIONS`
    event_time: str  # an event's time: gametime or position (`dataset.EVENT_TIMES`)
    background_label: str  # background of a window with an event: exclusive or original (`windows.BACKGROUND_RULES`)
    # an architecture of the recipe whose original set another dropout: (canonical name, rate)
    dropout_exceptions: tuple[tuple[str, float], ...] = ()

    def dropout_for(self, architecture: str) -> float:
        """The dropout of `architecture` (canonical or original name; "" for none) under this recipe."""
        if not self.dropout_exceptions or not architecture:
            return self.dropout

        return dict(self.dropout_exceptions).get(canonical_architecture(architecture), self.dropout)


VD_MINUTE = Preset(
    name="vd_minute",
    title="V&D minute-based",
    origin="vd",
    lr=0.01,
    max_epoch=200,
    batch_size=60,
    class_weighting="unit",
    loss_reduction="sum_classes",
    schedule="original",
    patience_lr=10,
    patience_stop=30,
    min_lr=1e-4,
    plateau_restore="weights_and_optimizer",
    selection_metric="ap",
    network="RVLAD",
    pooling_rule="original",
    vlad_k=64,
    dropout=0.4,  # keep_prob 0.6
    batch_norm="tf1_slim",
    head_init="glorot",
    bn_eval="batch",  # networks.py: every NetVLAD built with is_training=True
    l2_floor="squared",  # tf.nn.l2_normalize
    window_seconds=60,
    tokens_per_second=2,
    label_index="original",
    class_map="vd_v2",
    labels="v1",  # dataset.py reads Labels.json
    event_time="gametime",  # dataset.py reads gameTime
    background_label="exclusive",  # its loop is the seed's, but on Labels.json every label has a class: the same
)

SEED = replace(
    VD_MINUTE,
    name="seed",
    title="seed",
    origin="seed",
    batch_size=2,
    class_weighting="seed_counts",  # dataset.py: fixed SoccerNet-v2 counts
    plateau_restore="weights",
    dropout=0.5,  # nn.Dropout(0.5)
    dropout_exceptions=(("transformer", 0.6),),  # LateFusionArchi's cls_dropout
    batch_norm="pytorch",
    head_init="torch",
    bn_eval="moving",  # model.eval(): BatchNorm1d's running averages
    l2_floor="norm",  # F.normalize
    loss_reduction="mean_classes",  # trainer.py: nn.BCEWithLogitsLoss's default reduction, 'mean'
    class_map="highlight",
    labels="v2",  # dataset.py reads Labels-v2.json
    background_label="original",  # dataset.py's loop: an unmapped event sets background back to 1
)

PRESETS: dict[str, Preset] = {p.origin: p for p in (VD_MINUTE, SEED)}  # by `archis.names.origin`
PRESET_NAMES: dict[str, Preset] = {p.name: p for p in (VD_MINUTE, SEED)}  # `--preset`
DEFAULT_PRESET = VD_MINUTE  # no architecture named: V&D's, whose flags the command has

# The fields that say what a preset is rather than a value it fixes.
_IDENTITY = ("name", "title", "origin", "dropout_exceptions")
RECIPE_FIELDS = tuple(f.name for f in fields(Preset) if f.name not in _IDENTITY)


def preset_for(architecture: str | None, name: str | None = None) -> Preset:
    """The preset `name` (`--preset`), else the preset of the code `architecture` (canonical or original name) comes
    from; V&D's when none is named. UserError for an unknown name.

    `AudioVideoArchi5` (`concat`) is in both originals: V&D's, trained with V&D's recipe, and the model the seed's
    `inference.py` deploys, which the seed trained with its own (`ClassificationMinuteBased.py` over its
    `dataset.py` and `trainer.py`): `--preset seed` trains that one."""
    if name is not None:
        if name not in PRESET_NAMES:
            raise UserError(f"unknown --preset {name!r}; valid: {', '.join(PRESET_NAMES)}")
        if architecture:
            origin(architecture)  # an unknown architecture is refused all the same
        return PRESET_NAMES[name]
    if not architecture:
        return DEFAULT_PRESET

    return PRESETS[origin(architecture)]


@dataclass(frozen=True)
class FineTune:
    """The recipe of a run that starts from a trained model (`--init_model`), where it differs from the model's
    preset: a tenth of the learning rate (the weights are already near a solution; the preset's rate would undo
    them on a handful of reviewed matches) and fewer epochs. Not an original's recipe: neither original fine-tuned.
    A flag given on the command line wins, as over any preset."""

    lr: float = 0.001
    max_epoch: int = 30


FINETUNE = FineTune()
