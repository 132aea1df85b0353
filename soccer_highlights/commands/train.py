"""Train (or predict with, or ensemble) a window classifier on SoccerNet-layout features.

The original V&D flags keep their names and defaults; the extensions are listed in the help.
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
import time
from collections.abc import Sequence
from pathlib import Path

from soccer_highlights import dataset as ds
from soccer_highlights import training
from soccer_highlights.common.cli import SYSTEM_HELP, add_progress_flags, vd_none
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.modelfile import read_spec
from soccer_highlights.common.names import check_prefix
from soccer_highlights.common.quiet import import_tensorflow
from soccer_highlights.training.schedule import SchedulePolicy
from soccer_highlights.training.slurm import slurm_workers, stop_on_signals
from soccer_highlights.training.windows import DataConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    _original_flags(p.add_argument_group("original flags"))
    ext = p.add_argument_group("extensions")
    _data_flags(ext)
    _training_flags(ext)
    _run_flags(ext)
    add_progress_flags(ext)
    return p


def _original_flags(orig: argparse._ArgumentGroup) -> None:
    """V&D's flags, with V&D's names and defaults."""
    orig.add_argument(
        "--architecture", default=None, help="architecture (canonical or original name); required to train"
    )
    orig.add_argument("--training", default=None, help="game list of the training split (listgame_*.npy)")
    orig.add_argument("--validation", default=None, help="game list of the validation split")
    orig.add_argument("--testing", default=None, help="game list of the test split (also what predict mode reads)")
    orig.add_argument(
        "--featuresVideo",
        default="ResNET",
        help="video feature name (ResNET matches ResNET_PCA512 and ResNET_TF2_PCA512)",
    )
    orig.add_argument("--featuresAudio", default="VGGish", help="audio feature name")
    orig.add_argument("--GPU", type=int, default=-1, help="ID of the GPU to use (-1: every visible GPU)")
    orig.add_argument("--PCA", action="store_true", help="use the PCA version of the video features")
    orig.add_argument(
        "--network",
        default="RVLAD",
        help="pooling: NetVLAD (VLAD), NetRVLAD (RVLAD), MAX, AVERAGE, SoccerNet's NetVLAD++, NetRVLAD++, MAX++, AVG++, "
        "or NetVLAD++vd (V&D's NetVLAD on each half)",
    )
    orig.add_argument("--tflog", default="Model", help="folder for TensorBoard logs, models and summaries")
    orig.add_argument("--loglevel", default="INFO", help="logging level")
    orig.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="batch size in halves of games (default: the original's: 60 for V&D's architectures, 2 for the seed's)",
    )
    orig.add_argument("--max_epoch", type=int, default=200, help="maximum number of epochs")
    orig.add_argument("--VLAD_k", type=int, default=64, help="number of clusters of the VLAD poolings")
    orig.add_argument("--LR", type=float, default=0.01, help="learning rate")
    orig.add_argument("--WindowSize", type=int, default=60, help="window length in seconds")
    orig.add_argument("--featurePerSec", type=int, default=2, help="features per second")
    orig.add_argument("--outputPrefix", default="", help="prefix of the output files (default: the architecture)")
    orig.add_argument(
        "--mode",
        default="train",
        help="train, predict (per-window outputs of --testing) or ensemble (V&D's name: other)",
    )
    orig.add_argument(
        "--config",
        default="None",
        type=vd_none,
        help="predict mode: file listing the outputs to save (logits, probabilities, labels; one a line)",
    )
    orig.add_argument(
        "--formatdataset", type=int, default=0, choices=(0, 1), help="1: prepare the window cache, 0: reuse it"
    )
    orig.add_argument("--system", default="linux", choices=("linux", "windows"), help=SYSTEM_HELP)


def _data_flags(ext: argparse._ArgumentGroup) -> None:
    """Extensions: class map and the other originals' choices, seed, resume, where the games are and their cache."""
    ext.add_argument(
        "--class_map",
        default=None,
        help="highlight, v1, v2, vd_v2 or a JSON class map (default: the originals' for the label files found: "
        "v1 on Labels.json; on Labels-v2.json vd_v2 for V&D's architectures, highlight for the seed's)",
    )
    _add_original_choices(ext)
    ext.add_argument("--seed", type=int, default=0, help="seeds the weights and the shuffling")
    ext.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    ext.add_argument(
        "--dataset_root",
        default=None,
        help="folder the game paths are relative to (default: the list's folder); "
        "with it, a list may be a SoccerNet split name (train, valid, test)",
    )
    ext.add_argument(
        "--skip_bad_games",
        action="store_true",
        help="skip unreadable games (reported in the summary) instead of failing",
    )
    ext.add_argument("--cache_dir", default=None, help="window cache folder (default: Windows_size_<WindowSize>_sec)")


def _training_flags(ext: argparse._ArgumentGroup) -> None:
    """Extensions: batches, memory, precision, schedule and model selection."""
    ext.add_argument(
        "--batch_windows",
        type=int,
        default=None,
        help="batches of this many shuffled windows instead of --batch_size halves",
    )
    ext.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout before the classifier (default: the original's for the architecture: "
        "0.4 for V&D's (keep_prob 0.6), 0.5 for the seed's, 0.6 for LateFusionArchi)",
    )
    ext.add_argument(
        "--memory_budget_gb",
        type=float,
        default=None,
        help="memory for training or prediction: checks the micro-batch, sizes evaluation batches (default: 40%% of RAM, 80%% of a GPU)",
    )
    ext.add_argument(
        "--micro_batch_windows",
        type=int,
        default=None,
        help="windows per micro-batch (gradients accumulated over the --batch_size step); default 64 on every "
        "machine, so the same command gives the same weights anywhere; 0: the most that fit --memory_budget_gb "
        "(faster on large machines, but batch-norm statistics and dropout draws, so the weights, then depend on it)",
    )
    ext.add_argument(
        "--compute_dtype", default="float32", choices=("float32", "bfloat16"), help="bfloat16: mixed precision"
    )
    ext.add_argument(
        "--schedule",
        default="original",
        help="original (V&D): LR / 10 with the best weights and optimizer state restored when the count of "
        "epochs without gain passes --patience_lr, the count restarting at each cut; stop when it passes "
        "--patience_stop. since_best: LR / 10 with the best weights restored after --patience_lr epochs "
        "without gain, stop --patience_stop epochs after the best epoch",
    )
    ext.add_argument("--patience_lr", type=int, default=10, help="plateau length before LR / 10 (see --schedule)")
    ext.add_argument("--patience_stop", type=int, default=30, help="plateau length before stopping (see --schedule)")
    ext.add_argument("--min_lr", type=float, default=1e-4, help="no LR reduction at or below this")
    ext.add_argument(
        "--selection_metric",
        default="ap",
        choices=("ap", "tf1_pr_auc"),
        help="validation number for model selection: ap (mean average precision over the classes with "
        "a positive window) or tf1_pr_auc (V&D's: TF1's 200-threshold PR-AUC, absent classes 0)",
    )


def _run_flags(ext: argparse._ArgumentGroup) -> None:
    """Extensions: outputs, prediction and ensembles."""
    ext.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run's outputs under the same "
        "--tflog / --outputPrefix (refused without it; --resume continues one instead)",
    )
    ext.add_argument("--model", default=None, help="predict mode: model file (default <tflog>/<prefix>_best.keras)")
    ext.add_argument(
        "--ensemble", nargs=2, default=(), metavar=("A.npz", "B.npz"), help="ensemble mode: two predict outputs"
    )
    ext.add_argument(
        "--ensemble_method",
        default=None,
        choices=("mean_logits", "product"),
        help="mean of logits (V&D Archi3/12; the default) or product of sigmoids (Archi9/18)",
    )


def _add_original_choices(ext: argparse._ArgumentGroup) -> None:
    """The choices whose default is the original's for the architecture (V&D's or the seed's)."""
    ext.add_argument(
        "--class_weights",
        default=None,
        choices=("unit", "inverse_frequency"),
        help="pos_weight of the loss (default: the original's for the architecture: unit for V&D's, "
        "inverse_frequency normalised to sum 1 for the seed's)",
    )
    ext.add_argument(
        "--pooling_rule",
        default="original",
        choices=("original", "network"),
        help="original: V&D's AudioVideoArchi4/6/7/8 pool with NetRVLAD whatever --network says and Archi10/11 "
        "need RVLAD, as in V&D's code; network: every architecture pools with --network",
    )
    ext.add_argument(
        "--batch_norm",
        default=None,
        choices=("tf1_slim", "pytorch", "keras"),
        help="batch-norm constants (default: the original's: tf1_slim momentum 0.999 eps 1e-3 for V&D's, "
        "pytorch momentum 0.1 (Keras 0.9) eps 1e-5 for the seed's; keras 0.99 / 1e-3); saved in the model",
    )
    ext.add_argument(
        "--head_init",
        default=None,
        choices=("glorot", "torch"),
        help="classifier initialisation (default: the original's: glorot for V&D's, PyTorch's nn.Linear for the seed's)",
    )
    ext.add_argument(
        "--plateau_restore",
        default=None,
        choices=("weights_and_optimizer", "weights"),
        help="what an LR cut restores (default: the original's: V&D's weights and Adam state, the seed's weights)",
    )
    ext.add_argument(
        "--label_index",
        default="original",
        choices=("original", "floor"),
        help="window of an event: original (V&D's and the seed's int(60/W*minute + second//W)) or floor(t/W); "
        "they differ only when WindowSize does not divide 60",
    )


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UserError(f"--{name} must be positive, got {value}")


def _vd_ensemble(args: argparse.Namespace) -> None:
    """`--mode other` is V&D's name for the ensemble mode; its ensemble architectures (Archi3Prediction...)
    name the method."""
    from soccer_highlights.archis.registry import ensemble_method  # deferred: loads TensorFlow (start-up)

    if args.mode == "other":
        args.mode = "ensemble"
    method = ensemble_method(args.architecture)
    if method and args.mode == "ensemble":
        if args.ensemble_method not in (None, method):
            raise UserError(
                f"--architecture {args.architecture} is the {method} ensemble, "
                f"not --ensemble_method {args.ensemble_method}"
            )
        args.ensemble_method, args.architecture = method, None
    args.ensemble_method = args.ensemble_method or "mean_logits"


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


def _is_vd(args: argparse.Namespace) -> bool:
    """Whether the architecture is one of V&D's (no architecture: V&D's, whose flags these are)."""
    from soccer_highlights.archis.registry import origin  # deferred: loads TensorFlow (start-up)

    return not args.architecture or origin(args.architecture) == "vd"


def _pooling(args: argparse.Namespace) -> str:
    """The pooling the architecture gets for --network under --pooling_rule (V&D's rule by default)."""
    from soccer_highlights.archis.pooling import canonical_pooling  # deferred: loads TensorFlow (start-up)
    from soccer_highlights.archis.registry import architecture_pooling  # deferred: loads TensorFlow (start-up)

    if not args.architecture:
        return canonical_pooling(args.network)
    return architecture_pooling(args.architecture, args.network, args.pooling_rule)


def _class_map(args: argparse.Namespace):
    """--class_map; by default the map a predicted model records, else the originals' for the label files found."""

    if args.class_map is not None:
        return ds.load_class_map(args.class_map)
    model = Path(args.model or Path(args.tflog) / f"{args.outputPrefix or args.architecture}_best.keras")
    if args.mode == "predict" and model.is_file():
        recorded = read_spec(model).class_map
        if recorded:
            return ds.class_map_from_json(recorded, str(model))
    split = args.training if args.mode == "train" else args.testing
    games = ds.read_game_list(split, args.dataset_root) if split else []
    return ds.default_class_map(games, _is_vd(args))


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


def _data_config(args: argparse.Namespace):
    """Where the windows come from: feature names, window size, token rate, class map, label index."""

    data = DataConfig(
        features_video=args.featuresVideo,
        features_audio=args.featuresAudio,
        pca=args.PCA,
        window_seconds=args.WindowSize,
        tokens_per_second=args.featurePerSec,
        dataset_root=args.dataset_root,
        skip_bad_games=args.skip_bad_games,
        class_map=_class_map(args),
        label_index=args.label_index,
    )
    data.window_frames  # noqa: B018 - validates WindowSize x featurePerSec
    return data


def _config(args: argparse.Namespace):
    """Check the flags and files that need no TensorFlow, then build the training config."""

    _check_flags(args)
    outputs = training.PREDICT_OUTPUTS
    if args.config is not None:
        outputs = _predict_outputs(Path(args.config), training.PREDICT_OUTPUTS)
    data = _data_config(args)
    vd = _is_vd(args)
    return training.TrainConfig(
        architecture=args.architecture or "",
        training=args.training,
        validation=args.validation,
        testing=args.testing,
        data=data,
        network=_pooling(args),
        pooling_rule=args.pooling_rule,
        class_weighting=args.class_weights or ("unit" if vd else "inverse_frequency"),
        vlad_k=args.VLAD_k,
        dropout=args.dropout,
        lr=args.LR,
        max_epoch=args.max_epoch,
        batch_size=args.batch_size or (60 if vd else 2),
        batch_norm=args.batch_norm,
        head_init=args.head_init,
        plateau_restore=args.plateau_restore or ("weights_and_optimizer" if vd else "weights"),
        batch_windows=args.batch_windows,
        tflog=args.tflog,
        output_prefix=args.outputPrefix,
        mode=args.mode,
        outputs=outputs,
        formatdataset=args.formatdataset,
        cache_dir=args.cache_dir,
        model_path=args.model,
        ensemble=tuple(args.ensemble),
        ensemble_method=args.ensemble_method,
        seed=args.seed,
        resume=args.resume,
        compute_dtype=args.compute_dtype,
        schedule=args.schedule,
        patience_lr=args.patience_lr,
        patience_stop=args.patience_stop,
        min_lr=args.min_lr,
        selection_metric=args.selection_metric,
        overwrite=args.overwrite,
        progress=not args.quiet,
        memory_budget_gb=args.memory_budget_gb,
        micro_batch_windows=args.micro_batch_windows,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
            from soccer_highlights.archis.registry import (
                canonical_architecture,  # deferred: loads TensorFlow (start-up)
            )

            canonical_architecture(cfg.architecture)  # before any window cache is built

        start = time.time()
        training.run(cfg)
    logging.info("total execution time %.1f s", time.time() - start)
    return 0


if __name__ == "__main__":
    run_cli(main)
