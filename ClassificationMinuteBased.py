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
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from common.cli import add_progress_flags
from common.errors import UserError, run_cli
from common.quiet import import_tensorflow
from training.slurm import slurm_workers


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    orig = p.add_argument_group("original flags")
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
        "--network", default="RVLAD", help="pooling: NetVLAD (VLAD), NetRVLAD (RVLAD), NetVLAD++, MAX, AVERAGE"
    )
    orig.add_argument("--tflog", default="Model", help="folder for TensorBoard logs, models and summaries")
    orig.add_argument("--loglevel", default="INFO", help="logging level")
    orig.add_argument("--batch_size", type=int, default=60, help="batch size in halves of games")
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
        help="predict mode: file listing the outputs to save (logits, probabilities, labels; one a line)",
    )
    orig.add_argument(
        "--formatdataset", type=int, default=0, choices=(0, 1), help="1: prepare the window cache, 0: reuse it"
    )
    orig.add_argument(
        "--system", default="linux", choices=("linux", "windows"), help="accepted for compatibility; paths are portable"
    )
    ext = p.add_argument_group("extensions")
    ext.add_argument("--class_map", default="highlight", help="highlight, v1, v2 or a JSON class map")
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
        help="memory for training or prediction; sets the micro-batch size (default: 40%% of RAM, 80%% of a GPU)",
    )
    ext.add_argument(
        "--micro_batch_windows",
        type=int,
        default=None,
        help="windows per micro-batch (gradients accumulated over the --batch_size step) instead of the budget's choice",
    )
    ext.add_argument(
        "--compute_dtype", default="float32", choices=("float32", "bfloat16"), help="bfloat16: mixed precision"
    )
    ext.add_argument(
        "--schedule",
        default="original",
        choices=("original", "since_best"),
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
    add_progress_flags(ext)
    return p


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UserError(f"--{name} must be positive, got {value}")


# V&D's prediction-level ensembles, run by its `--mode other`: mean of logits or product of sigmoids.
_ENSEMBLE_ARCHITECTURES = {
    "audiovideoarchi3": "mean_logits",
    "audiovideoarchi12": "mean_logits",
    "audiovideoarchi9": "product",
    "audiovideoarchi18": "product",
}


def _vd_ensemble(args: argparse.Namespace) -> None:
    """`--mode other` is V&D's name for the ensemble mode; its ensemble architectures name the method."""
    if args.mode == "other":
        args.mode = "ensemble"
    method = _ENSEMBLE_ARCHITECTURES.get(str(args.architecture).lower())
    if method and args.mode == "ensemble":
        if args.ensemble_method not in (None, method):
            raise UserError(
                f"--architecture {args.architecture} is the {method} ensemble, "
                f"not --ensemble_method {args.ensemble_method}"
            )
        args.ensemble_method, args.architecture = method, None
    args.ensemble_method = args.ensemble_method or "mean_logits"


def _config(args: argparse.Namespace):
    """Check the flags and files that need no TensorFlow, then build the training config."""
    import dataset as ds
    import training
    from training.windows import DataConfig

    for name in (
        "batch_size",
        "max_epoch",
        "VLAD_k",
        "LR",
        "WindowSize",
        "featurePerSec",
        "batch_windows",
        "memory_budget_gb",
        "micro_batch_windows",
    ):
        _positive(name, getattr(args, name))
    if args.dropout is not None and not 0 <= args.dropout < 1:
        raise UserError(f"--dropout must be in [0, 1), got {args.dropout}")
    required = {"train": ("architecture", "training", "validation", "testing"), "predict": ("testing",), "ensemble": ()}
    _vd_ensemble(args)
    if args.mode not in required:
        raise UserError(f"unknown --mode {args.mode!r}; valid: {', '.join(required)}")
    missing = [f"--{k}" for k in required[args.mode] if getattr(args, k) is None]
    if missing:
        raise UserError(f"mode {args.mode} needs {', '.join(missing)}")
    for name in ("training", "validation", "testing"):
        if getattr(args, name) is not None and args.mode != "ensemble":
            ds.read_game_list(getattr(args, name), args.dataset_root)  # fails fast on a missing or empty list
    outputs = training.PREDICT_OUTPUTS
    if args.config != "None":
        path = Path(args.config)
        if not path.is_file():
            raise UserError(f"{path}: --config file not found")
        outputs = tuple(ln.strip() for ln in path.read_text().splitlines() if ln.strip())
        bad = [o for o in outputs if o not in training.PREDICT_OUTPUTS]
        if bad or not outputs:
            raise UserError(
                f"{path}: outputs must be among {', '.join(training.PREDICT_OUTPUTS)}, found {bad or 'none'}"
            )
    data = DataConfig(
        features_video=args.featuresVideo,
        features_audio=args.featuresAudio,
        pca=args.PCA,
        window_seconds=args.WindowSize,
        frames_per_second=args.featurePerSec,
        dataset_root=args.dataset_root,
        skip_bad_games=args.skip_bad_games,
        class_map=ds.load_class_map(args.class_map),
    )
    data.window_frames  # noqa: B018 - validates WindowSize x featurePerSec
    return training.TrainConfig(
        architecture=args.architecture or "",
        training=args.training,
        validation=args.validation,
        testing=args.testing,
        data=data,
        network=args.network,
        vlad_k=args.VLAD_k,
        dropout=args.dropout,
        lr=args.LR,
        max_epoch=args.max_epoch,
        batch_size=args.batch_size,
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
    cfg = _config(args)
    workers = slurm_workers(cfg.tflog) if cfg.mode == "train" else contextlib.nullcontext()
    with workers, stop_on_signals():
        import_tensorflow(args.verbose)
        import training

        start = time.time()
        training.run(cfg)
    logging.info("total execution time %.1f s", time.time() - start)
    return 0


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM or SIGUSR1 (a Slurm preemption or time-limit warning: slurm/train.sbatch sends USR1 to its workers,
    as TensorFlow's multi-worker runtime takes SIGTERM over for itself) ends the run as an error would: the resume
    state of the last finished epoch stays and `--resume` continues from it; exit status 128 + the signal."""

    def stop(signum, frame):
        name = signal.Signals(signum).name
        print(f"{name}: stopping; --resume continues from the last finished epoch", file=sys.stderr, flush=True)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    run_cli(main)
