"""Train (or predict with, or ensemble) a window classifier on SoccerNet-layout features.

V&D's flags keep their names (marked (V&D) in the help); a default that differs between the originals is the
preset of the architecture's original (`training.presets`), and a flag given wins over it.
Example (the original README's command):
  python ClassificationMinuteBased.py --architecture AudioVideoArchi5 --training listgame_Train_300.npy
    --validation listgame_Valid_100.npy --testing listgame_Test_100.npy --featuresVideo ResNET
    --featuresAudio VGGish --PCA --network VLAD --tflog Model --VLAD_k 512 --WindowSize 20
    --outputPrefix vlad-archi5-20sec --formatdataset 1
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from soccer_highlights import dataset as ds
from soccer_highlights import training
from soccer_highlights.archis.names import (
    ALIASES,
    ENSEMBLES,
    architecture_pooling,
    canonical_architecture,
    canonical_pooling,
    ensemble_method,
    list_architectures,
    origin,
)
from soccer_highlights.common.cli import (
    SYSTEM_HELP,
    HelpFormatter,
    Parser,
    add_keep_old_flag,
    add_progress_flags,
    parse_args,
    spelled,
    vd_none,
)
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.modelfile import read_spec
from soccer_highlights.common.names import check_prefix
from soccer_highlights.common.quiet import import_tensorflow
from soccer_highlights.training.memory import FIXED_MICRO
from soccer_highlights.training.presets import FINETUNE, PRESET_NAMES, PRESETS, Preset, preset_for
from soccer_highlights.training.schedule import SELECTION_METRICS, SchedulePolicy
from soccer_highlights.training.slurm import slurm_workers, stop_on_signals
from soccer_highlights.training.windows import (
    BACKGROUND_RULES,
    CLASS_WEIGHTINGS,
    LABEL_INDEX_RULES,
    SEED_CLASS_COUNTS,
    DataConfig,
)

VD = "(V&D) "  # marks V&D's own flags, with V&D's spelling

# The flags whose default is the preset's (`training.presets`): flag -> preset field. Their argparse default is None:
# a value given on the command line wins, `_apply_preset` fills the others from the architecture's preset.
PRESET_FLAGS: dict[str, str] = {
    "LR": "lr",
    "max_epoch": "max_epoch",
    "batch_size": "batch_size",
    "class_weights": "class_weighting",
    "schedule": "schedule",
    "patience_lr": "patience_lr",
    "patience_stop": "patience_stop",
    "min_lr": "min_lr",
    "plateau_restore": "plateau_restore",
    "selection_metric": "selection_metric",
    "network": "network",
    "pooling_rule": "pooling_rule",
    "VLAD_k": "vlad_k",
    "dropout": "dropout",
    "batch_norm": "batch_norm",
    "head_init": "head_init",
    "bn_eval": "bn_eval",
    "l2_floor": "l2_floor",
    "loss_reduction": "loss_reduction",
    "WindowSize": "window_seconds",
    "featurePerSec": "tokens_per_second",
    "label_index": "label_index",
    "labels": "labels",
    "event_time": "event_time",
    "background_label": "background_label",
}


def _preset_value(preset: Preset, field: str) -> str:
    value = getattr(preset, field)
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if field == "dropout":
        shown += "".join(f", {name} {rate:g}" for name, rate in preset.dropout_exceptions)
    return shown


def preset_default(field: str) -> str:
    """How the help says a preset's default: `(preset: V&D minute-based 60, seed 2)`, or one value for all."""
    values = {p.title: _preset_value(p, field) for p in PRESETS.values()}
    if len(set(values.values())) == 1:
        return f"(preset: {next(iter(values.values()))}, every preset)"
    return "(preset: " + ", ".join(f"{title} {value}" for title, value in values.items()) + ")"


def _preset_flag(group: argparse._ArgumentGroup, flag: str, text: str, **kwargs: Any) -> None:
    """A flag whose default is the preset's: None in argparse, its presets' values in the help."""
    group.add_argument(f"--{flag}", default=None, help=f"{text} {preset_default(PRESET_FLAGS[flag])}", **kwargs)


class _HelpFormatter(HelpFormatter):
    """The commands' formatter (each default said once); a preset flag says its presets' values instead, an empty
    pair (--ensemble) nothing. The description and the epilog keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default == () or "preset:" in (action.help or ""):
            return spelled(action.help or "")
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Each line filled on its own; an indented line's continuation is indented two more spaces."""
        filled = []
        for line in text.splitlines():
            lead = indent + line[: len(line) - len(line.lstrip())]
            more = lead + "  " if line[:1].isspace() else lead
            filled.append(textwrap.fill(line.strip(), width, initial_indent=lead, subsequent_indent=more))
        return "\n".join(filled)


class _Parser(Parser):
    """The commands' parser, whose help ends with the architecture names and the preset each trains with, read from the registry only when
    the help is printed (it loads TensorFlow)."""

    def format_help(self) -> str:
        if self.epilog is None:
            self.epilog = architectures_help()
        return super().format_help()


def architectures_help() -> str:
    """The architectures (canonical name, the originals' names), grouped by the preset they train with, and V&D's
    ensembles."""

    originals: dict[str, list[str]] = {}
    for alias, name in ALIASES.items():
        originals.setdefault(name, []).append(alias)
    lines = ["architectures (--architecture: the canonical name, or an original's name in brackets), by preset:"]
    for preset in PRESETS.values():
        names = [n + (f" ({', '.join(originals[n])})" if n in originals else "") for n in list_architectures()]
        mine = [shown for n, shown in zip(list_architectures(), names, strict=True) if origin(n) == preset.origin]
        lines.append(f"  {preset.title}: {', '.join(mine)}")
    methods: dict[str, list[str]] = {}
    for name, method in ENSEMBLES.items():
        methods.setdefault(method, []).append(name)
    lines.append(
        "  V&D's ensembles (--architecture with --mode ensemble, V&D's other, and --ensemble A.npz B.npz): "
        + "; ".join(f"{', '.join(names)} ({method})" for method, names in methods.items())
    )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The flags, grouped by task; V&D's own spellings are marked (V&D). A default that depends on the architecture
    is its preset's (`training.presets`), shown for each preset."""
    p = _Parser(command="soccer-train", description=__doc__.split("\n\n")[0], formatter_class=_HelpFormatter)
    p.add_argument("--loglevel", default="INFO", help=f"{VD}logging level")
    p.add_argument("--system", default="linux", choices=("linux", "windows"), help=f"{VD}{SYSTEM_HELP}")
    add_progress_flags(p)
    _mode_flags(p.add_argument_group("mode: train, predict (per-window outputs of --testing) or ensemble"))
    _data_flags(p.add_argument_group("data: game lists, features, windows and labels"))
    _model_flags(p.add_argument_group("model"))
    _optimisation_flags(p.add_argument_group("optimisation"))
    _output_flags(p.add_argument_group("outputs"))
    _machine_flags(
        p.add_argument_group(
            "machine, resume and cluster",
            "Under srun (Slurm) every task of the step is a worker of one multi-worker run: no flag needed.",
        )
    )
    return p


def _mode_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--mode", default="train", help=f"{VD}train, predict or ensemble (V&D's name: other)")
    g.add_argument(
        "--config",
        default="None",
        type=vd_none,
        help=f"{VD}predict mode: file listing the outputs to save (logits, probabilities, labels; one a line); "
        "default: all three",
    )
    g.add_argument(
        "--model", default=None, help="predict mode: model file (default: <tflog>/<outputPrefix>_best.keras)"
    )
    g.add_argument(
        "--ensemble", nargs=2, default=(), metavar=("A.npz", "B.npz"), help="ensemble mode: two predict outputs"
    )
    g.add_argument(
        "--ensemble_method",
        default=None,
        choices=("mean_logits", "product"),
        help="ensemble mode: mean of logits (V&D Archi3/12) or product of sigmoids (Archi9/18); default: the "
        "architecture's method, else mean_logits",
    )


def _data_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--training", default=None, help=f"{VD}game list of the training split (listgame_*.npy)")
    g.add_argument("--validation", default=None, help=f"{VD}game list of the validation split")
    g.add_argument("--testing", default=None, help=f"{VD}game list of the test split (also what predict mode reads)")
    g.add_argument(
        "--dataset_root",
        default=None,
        help="folder the game paths are relative to (default: the list's folder); "
        "with it, a list may be a SoccerNet split name (train, valid, test)",
    )
    g.add_argument(
        "--skip_bad_games",
        action="store_true",
        help="skip unreadable games (reported in the summary) instead of failing",
    )
    g.add_argument(
        "--featuresVideo",
        default="ResNET",
        help=f"{VD}video feature name (ResNET matches ResNET_PCA512 and ResNET_TF2_PCA512)",
    )
    g.add_argument("--featuresAudio", default="VGGish", help=f"{VD}audio feature name")
    g.add_argument("--PCA", action="store_true", help=f"{VD}use the PCA version of the video features")
    _preset_flag(g, "WindowSize", f"{VD}window length in seconds", type=int)
    _preset_flag(g, "featurePerSec", f"{VD}features per second", type=int)
    g.add_argument(
        "--class_map",
        default=None,
        help="highlight, v1, v2, vd_v2 or a JSON class map (default: v1 on games with only Labels.json; on "
        "Labels-v2.json the preset's: "
        + ", ".join(f"{p.title} {p.class_map}" for p in PRESETS.values())
        + "; predict mode: the model's)",
    )
    _preset_flag(
        g,
        "label_index",
        "window of an event: original (V&D's and the seed's int(60/W*minute + second//W)) or floor(t/W); "
        "they differ only when WindowSize does not divide 60",
        choices=LABEL_INDEX_RULES,
    )
    _preset_flag(
        g,
        "labels",
        "label file: v1 (Labels.json, V&D's) or v2 (Labels-v2.json, the seed's); given, only that file is read; "
        "not given, the preset's file and the other where it is missing",
        choices=tuple(ds.LABEL_VERSIONS),
    )
    _preset_flag(
        g,
        "event_time",
        "an event's time: gametime (the label's 'gameTime' mm:ss, as both originals) or position (its ms)",
        choices=ds.EVENT_TIMES,
    )
    _preset_flag(
        g,
        "background_label",
        "background of a window with an event: exclusive (0 wherever a class is) or original (the originals' "
        "loop: an event of no class after one of a class sets it back to 1)",
        choices=BACKGROUND_RULES,
    )
    g.add_argument(
        "--formatdataset", type=int, default=0, choices=(0, 1), help=f"{VD}1: prepare the window cache, 0: reuse it"
    )
    g.add_argument("--cache_dir", default=None, help="window cache folder (default: Windows_size_<WindowSize>_sec)")


def _model_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--architecture",
        default=None,
        help=f"{VD}canonical or original name (listed below); required to train; chooses the preset",
    )
    g.add_argument(
        "--preset",
        default=None,
        choices=tuple(PRESET_NAMES),
        help="train with this original's recipe instead of the architecture's: seed with AudioVideoArchi5 is the "
        "model the seed's inference.py deploys (default: the architecture's preset)",
    )
    _preset_flag(
        g,
        "network",
        f"{VD}pooling: NetVLAD (VLAD), NetRVLAD (RVLAD), MAX, AVERAGE, SoccerNet's NetVLAD++, NetRVLAD++, MAX++, "
        "AVG++, or NetVLAD++vd (V&D's NetVLAD on each half)",
    )
    _preset_flag(
        g,
        "pooling_rule",
        "original: V&D's AudioVideoArchi4/6/7/8 pool with NetRVLAD whatever --network says and Archi10/11 "
        "need RVLAD, as in V&D's code; network: every architecture pools with --network",
        choices=("original", "network"),
    )
    _preset_flag(g, "VLAD_k", f"{VD}number of clusters of the VLAD poolings", type=int)
    _preset_flag(g, "dropout", "dropout before the classifier (V&D's keep_prob 0.6 is 0.4)", type=float)
    _preset_flag(
        g,
        "batch_norm",
        "batch-norm constants, saved in the model: tf1_slim momentum 0.999 eps 1e-3, pytorch momentum 0.1 "
        "(Keras 0.9) eps 1e-5, keras 0.99 / 1e-3",
        choices=("tf1_slim", "pytorch", "keras"),
    )
    _preset_flag(
        g,
        "head_init",
        "classifier initialisation: glorot (TF1) or torch (PyTorch's nn.Linear)",
        choices=("glorot", "torch"),
    )
    _preset_flag(
        g,
        "bn_eval",
        "batch-norm statistics at evaluation and prediction, saved in the model: batch (V&D's is_training=True: "
        "each half's own windows), moving (the running averages), population (the training windows' moments, "
        "recomputed after each epoch), corrected (bias-corrected running averages)",
        choices=("batch", "moving", "population", "corrected"),
    )
    _preset_flag(
        g,
        "l2_floor",
        "floor of NetVLAD's L2 normalisations, saved in the model: squared (TF's l2_normalize, 1e-12 on the "
        "squared norm) or norm (PyTorch's F.normalize, 1e-12 on the norm)",
        choices=("squared", "norm"),
    )


def _optimisation_flags(g: argparse._ArgumentGroup) -> None:
    _preset_flag(g, "LR", f"{VD}learning rate", type=float)
    _preset_flag(g, "batch_size", f"{VD}batch size in halves of games", type=int)
    g.add_argument(
        "--batch_windows",
        type=int,
        default=None,
        help="batches of this many shuffled windows instead of --batch_size halves",
    )
    _preset_flag(g, "max_epoch", f"{VD}maximum number of epochs", type=int)
    _preset_flag(
        g,
        "class_weights",
        "pos_weight of the loss: unit (1 for every class), inverse_frequency (of the training windows, normalised "
        "to sum 1) or seed_counts (the seed's: of its fixed SoccerNet-v2 counts, for its five classes)",
        choices=CLASS_WEIGHTINGS,
    )
    _preset_flag(
        g,
        "loss_reduction",
        "the loss over a step's windows and classes: sum_classes (V&D: summed over classes, averaged over "
        "windows) or mean_classes (the seed's BCEWithLogitsLoss: averaged over both)",
        choices=("sum_classes", "mean_classes"),
    )
    _preset_flag(
        g,
        "schedule",
        "original (V&D's): LR / 10 with the best weights (and optimizer state: --plateau_restore) restored when the "
        "count of epochs without gain passes --patience_lr, the count restarting at each cut; stop when it passes "
        "--patience_stop. since_best: LR / 10 with the best weights restored after --patience_lr epochs "
        "without gain, stop --patience_stop epochs after the best epoch",
    )
    _preset_flag(g, "patience_lr", "plateau length before LR / 10 (see --schedule)", type=int)
    _preset_flag(g, "patience_stop", "plateau length before stopping (see --schedule)", type=int)
    _preset_flag(g, "min_lr", "no LR reduction at or below this", type=float)
    _preset_flag(
        g,
        "plateau_restore",
        "what an LR cut restores: weights_and_optimizer (the weights and Adam state) or weights",
        choices=("weights_and_optimizer", "weights"),
    )
    _preset_flag(
        g,
        "selection_metric",
        "validation number for model selection: ap (mean average precision over the classes with "
        "a positive window) or tf1_pr_auc (V&D's: TF1's 200-threshold PR-AUC, absent classes 0)",
        choices=SELECTION_METRICS,
    )
    g.add_argument("--seed", type=int, default=0, help="seeds the weights and the shuffling")


def _output_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--tflog", default="Model", help=f"{VD}folder for TensorBoard logs, models and summaries")
    g.add_argument(
        "--outputPrefix", default="", help=f"{VD}prefix of the output files (default: the architecture's name)"
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run's outputs under the same "
        "--tflog / --outputPrefix (refused without it; --resume continues one instead)",
    )
    add_keep_old_flag(g)


def _machine_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--init_model",
        default=None,
        help="fine-tune: start from this trained model's weights (its architecture, pooling, sizes and window are "
        f"kept; --LR {FINETUNE.lr:g} and --max_epoch {FINETUNE.max_epoch} unless given; its class map unless "
        "--class_map; a new class map re-initialises the classification head)",
    )
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    g.add_argument("--GPU", type=int, default=-1, help=f"{VD}ID of the GPU to use (-1: every visible GPU)")
    g.add_argument(
        "--memory_budget_gb",
        type=float,
        default=None,
        help="memory for training or prediction: checks the micro-batch, sizes evaluation batches "
        "(default: 40%% of RAM, 80%% of a GPU)",
    )
    g.add_argument(
        "--micro_batch_windows",
        type=int,
        default=None,
        help="windows per micro-batch (gradients accumulated over the --batch_size step; default: "
        f"{FIXED_MICRO} on every machine, so the same command gives the same weights anywhere); 0: the "
        "most that fit --memory_budget_gb (faster on large machines, but batch-norm statistics and dropout draws, "
        "so the weights, then depend on it)",
    )
    g.add_argument(
        "--compute_dtype", default="float32", choices=("float32", "bfloat16"), help="bfloat16: mixed precision"
    )


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UserError(f"--{name} must be positive, got {value}")


def _vd_ensemble(args: argparse.Namespace) -> None:
    """`--mode other` is V&D's name for the ensemble mode; its ensemble architectures (Archi3Prediction...)
    name the method."""

    if args.mode == "other":
        args.mode = "ensemble"
    method = ensemble_method(args.architecture)
    if method and args.mode == "ensemble":
        if args.ensemble_method not in (None, method):
            raise UserError(
                f"--architecture {args.architecture} is the {method} ensemble, "
                f"not --ensemble_method {args.ensemble_method}"
            )
        args.ensemble_method, args.ensemble_of, args.architecture = method, args.architecture, None
    args.ensemble_method = args.ensemble_method or "mean_logits"
    args.ensemble_of = getattr(args, "ensemble_of", None)


# V&D's predict-mode properties (attributes of its networks) and the output each one is here.
_VD_PROPERTIES = {"logits": "logits", "predictions": "probabilities"}


def _predict_outputs(path: Path, allowed: Sequence[str]) -> tuple[str, ...]:
    """Outputs named in a --config file: ours, or V&D's property names (logits_video, predictions_audio...)."""
    if not path.is_file():
        raise UserError(f"{path}: --config file not found")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    outputs = [_VD_PROPERTIES.get(n.split("_")[0], n) if n not in allowed else n for n in names]
    bad = [n for n, o in zip(names, outputs, strict=True) if o not in allowed]
    if bad or not outputs:
        raise UserError(
            f"{path}: outputs must be among {', '.join(allowed)} (or V&D's logits_*, predictions_*), "
            f"found {bad or 'none'}"
        )
    return tuple(dict.fromkeys(outputs))


def _apply_preset(args: argparse.Namespace) -> Preset:
    """The --preset, else the architecture's (V&D's when none is named); each preset flag not given takes the
    preset's value."""
    preset = preset_for(args.architecture, args.preset)
    for flag, field in PRESET_FLAGS.items():
        if getattr(args, flag) is None:
            value = preset.dropout_for(args.architecture or "") if field == "dropout" else getattr(preset, field)
            setattr(args, flag, value)
    return preset


def _pooling(args: argparse.Namespace) -> str:
    """The pooling the architecture gets for --network under --pooling_rule (V&D's rule by default)."""

    if not args.architecture:
        return canonical_pooling(args.network)
    return architecture_pooling(args.architecture, args.network, args.pooling_rule)


# The data rules a model's training record holds (`training.loop.training_record`) and their valid values.
_RECORDED_DATA = {
    "labels": tuple(ds.LABEL_VERSIONS),
    "event_time": ds.EVENT_TIMES,
    "background_label": BACKGROUND_RULES,
}


def _recorded_data_rules(args: argparse.Namespace, given: set[str]) -> None:
    """Predict mode: the label file, event time and background rule the model was trained with (its training
    record), for each of those flags not given, so its test windows are labelled as its training windows were."""
    model = Path(args.model or Path(args.tflog) / f"{args.outputPrefix or args.architecture}_best.keras")
    if args.mode != "predict" or not model.is_file():
        return
    record = read_spec(model).training or {}
    for flag, valid in _RECORDED_DATA.items():
        value = record.get(flag)
        if flag in given or value is None:
            continue
        if value not in valid:
            raise UserError(f"{model}: its training record has {flag} {value!r}, not one of {', '.join(valid)}")
        setattr(args, flag, value)


def _class_map(args: argparse.Namespace, preset: Preset):
    """--class_map; by default the map a predicted model records, else the preset's for the label files found."""

    if args.class_map is not None:
        return ds.load_class_map(args.class_map)
    if args.init_spec and args.init_spec.class_map:  # fine-tuning: the start's classes unless --class_map
        return ds.class_map_from_json(args.init_spec.class_map, str(args.init_model))
    model = Path(args.model or Path(args.tflog) / f"{args.outputPrefix or args.architecture}_best.keras")
    if args.mode == "predict" and model.is_file():
        recorded = read_spec(model).class_map
        if recorded:
            return ds.class_map_from_json(recorded, str(model))
    split = args.training if args.mode == "train" else args.testing
    games = ds.read_game_list(split, args.dataset_root) if split else []
    return ds.default_class_map(games, vd=preset.origin == "vd", prefer=args.labels, only=args.labels_only)


def _check_flags(args: argparse.Namespace) -> None:
    """The flag checks that need no TensorFlow: numbers, the mode and its flags, the game lists."""

    for name in (
        "batch_size",
        "max_epoch",
        "VLAD_k",
        "LR",
        "WindowSize",
        "featurePerSec",
        "batch_windows",
        "memory_budget_gb",
    ):
        _positive(name, getattr(args, name))
    if args.micro_batch_windows is not None and args.micro_batch_windows < 0:
        raise UserError(
            f"--micro_batch_windows must be 0 (from the budget) or positive, got {args.micro_batch_windows}"
        )
    if args.dropout is not None and not 0 <= args.dropout < 1:
        raise UserError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.min_lr is not None and args.min_lr < 0:
        raise UserError(f"--min_lr must be >= 0, got {args.min_lr}")
    if args.schedule is not None:
        SchedulePolicy(args.schedule)  # checks --schedule (as argparse's choices did: before any list is read)
    required = {"train": ("architecture", "training", "validation", "testing"), "predict": ("testing",), "ensemble": ()}
    _vd_ensemble(args)
    if args.mode not in required:
        raise UserError(f"unknown --mode {args.mode!r}; valid: {', '.join(required)}")
    missing = [f"--{k}" for k in required[args.mode] if getattr(args, k) is None]
    if missing:
        raise UserError(f"mode {args.mode} needs {', '.join(missing)}")
    if args.mode != "ensemble":
        lists = {name: getattr(args, name) for name in ("training", "validation", "testing")}
        ds.check_game_lists(lists, args.dataset_root, warn_shared=args.mode == "train")
    check_prefix(args.outputPrefix, "--outputPrefix")


def _data_config(args: argparse.Namespace, preset: Preset) -> DataConfig:
    """Where the windows come from: feature names, window size, token rate, class map, label index."""

    data = DataConfig(
        features_video=args.featuresVideo,
        features_audio=args.featuresAudio,
        pca=args.PCA,
        window_seconds=args.WindowSize,
        tokens_per_second=args.featurePerSec,
        dataset_root=args.dataset_root,
        skip_bad_games=args.skip_bad_games,
        class_map=_class_map(args, preset),
        label_index=args.label_index,
        labels=args.labels,
        labels_only=args.labels_only,
        event_time=args.event_time,
        background=args.background_label,
    )
    data.window_frames  # noqa: B018 - validates WindowSize x featurePerSec
    return data


# What a fine-tuned model keeps of the model it starts from (--init_model): flag -> field of its spec.
INIT_MODEL_FLAGS = {
    "VLAD_k": "vlad_k",
    "WindowSize": "window_seconds",
    "featurePerSec": "tokens_per_second",
    "dropout": "dropout",
    "batch_norm": "batch_norm",
    "head_init": "head_init",
    "bn_eval": "bn_eval",
    "l2_floor": "l2_floor",
}


def _from_init_model(args: argparse.Namespace) -> None:
    """--init_model: the architecture and sizes of the model to start from (a flag given must agree), and the
    fine-tuning preset's learning rate and epochs unless --LR / --max_epoch are given. Sets `args.init_spec`."""
    args.init_spec = None
    if args.init_model is None:
        return
    if args.mode != "train":
        raise UserError(f"--init_model is for --mode train, not {args.mode}")
    spec = read_spec(args.init_model)
    if args.architecture and canonical_architecture(args.architecture) != spec.architecture:
        raise UserError(
            f"--architecture {args.architecture}: {args.init_model} is a {spec.architecture} model (fine-tuning keeps it)"
        )
    args.architecture = spec.architecture
    for flag, field in INIT_MODEL_FLAGS.items():
        value = getattr(spec, field)
        if flag in ("WindowSize", "featurePerSec") and float(value).is_integer():
            value = int(value)
        given = getattr(args, flag)
        if given is not None and value is not None and given != value:
            raise UserError(f"--{flag} {given}: {args.init_model} has {value} (fine-tuning keeps it)")
        if value is not None:
            setattr(args, flag, value)
    for flag, field in (("LR", "lr"), ("max_epoch", "max_epoch")):
        if getattr(args, flag) is None:
            setattr(args, flag, getattr(FINETUNE, field))
    args.PCA = args.PCA or "PCA" in spec.feature_names.get("video", "")  # the start's video features
    args.init_spec = spec


def _config(args: argparse.Namespace) -> training.TrainConfig:
    """Check the flags and files that need no TensorFlow, fill the flags not given from the architecture's preset,
    then build the training config."""

    _from_init_model(args)
    _check_flags(args)
    given = {flag for flag in PRESET_FLAGS if getattr(args, flag) is not None}
    args.labels_only = "labels" in given
    preset = _apply_preset(args)
    _recorded_data_rules(args, given)
    outputs: tuple[str, ...] = training.PREDICT_OUTPUTS
    if args.config is not None:
        outputs = _predict_outputs(Path(args.config), training.PREDICT_OUTPUTS)
    data = _data_config(args, preset)
    if args.class_weights == "seed_counts" and data.class_map.classes != list(SEED_CLASS_COUNTS):
        if "class_weights" in given:
            raise UserError(
                f"--class_weights seed_counts holds the seed's counts of {', '.join(SEED_CLASS_COUNTS)}; class map "
                f"{data.class_map.name} has {', '.join(data.class_map.classes)}: use inverse_frequency or unit"
            )
        args.class_weights = "inverse_frequency"
        if args.mode == "train":
            print(
                f"class weights: inverse_frequency (the seed's fixed counts are of its classes, not of class map "
                f"{data.class_map.name})",
                flush=True,
            )
    return training.TrainConfig(
        architecture=args.architecture or "",
        preset=preset.name,
        training=args.training,
        validation=args.validation,
        testing=args.testing,
        data=data,
        network=args.init_spec.pooling if args.init_spec else _pooling(args),
        pooling_rule=args.pooling_rule,
        class_weighting=args.class_weights,
        vlad_k=args.VLAD_k,
        dropout=args.dropout,
        lr=args.LR,
        max_epoch=args.max_epoch,
        batch_size=args.batch_size,
        batch_norm=args.batch_norm,
        head_init=args.head_init,
        bn_eval=args.bn_eval,
        l2_floor=args.l2_floor,
        loss_reduction=args.loss_reduction,
        plateau_restore=args.plateau_restore,
        batch_windows=args.batch_windows,
        tflog=args.tflog,
        output_prefix=args.outputPrefix,
        mode=args.mode,
        outputs=outputs,
        formatdataset=args.formatdataset,
        cache_dir=args.cache_dir,
        model_path=args.model,
        init_model=args.init_model,
        ensemble=tuple(args.ensemble),
        ensemble_method=args.ensemble_method,
        ensemble_of=args.ensemble_of,
        seed=args.seed,
        resume=args.resume,
        compute_dtype=args.compute_dtype,
        schedule=args.schedule,
        patience_lr=args.patience_lr,
        patience_stop=args.patience_stop,
        min_lr=args.min_lr,
        selection_metric=args.selection_metric,
        overwrite=args.overwrite,
        keep_old=args.keep_old,
        progress=not args.quiet,
        memory_budget_gb=args.memory_budget_gb,
        micro_batch_windows=args.micro_batch_windows,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)  # a mistyped flag: one line naming the closest
    level = getattr(logging, args.loglevel.upper(), None)
    if not isinstance(level, int):
        raise UserError(f"--loglevel {args.loglevel!r} is not a logging level")
    logging.basicConfig(format="%(asctime)s:%(levelname)s: %(message)s", level=level)
    if args.GPU >= 0:  # before TensorFlow is imported
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.GPU)
    workers = slurm_workers(args.tflog) if args.mode == "train" else contextlib.nullcontext()
    with workers, stop_on_signals():  # an srun task's GPU slice and TF_CONFIG are set before TensorFlow starts
        import_tensorflow(args.verbose)  # before _config: the architecture checks import archis (so Keras)
        cfg = _config(args)
        if cfg.mode == "train":
            canonical_architecture(cfg.architecture)  # before any window cache is built

        start = time.time()
        training.run(cfg)
    logging.info("total execution time %.1f s", time.time() - start)
    return 0


if __name__ == "__main__":
    run_cli(main)
