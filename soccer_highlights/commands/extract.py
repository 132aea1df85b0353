"""Features of match videos, two tokens a second: ResNet-152 + PCA 512 (video) and VGGish (audio), of one video or of
a batch over a SoccerNet tree or a list; the subcommands fit_pca, convert_pca, calibrate and check_precision.

python -m extract_features --video match.mp4 --out DIR [--half 2] [--weights random] [--pca pca.npz]
python -m extract_features --tree SOCCERNET_ROOT [--out OUT] [--num_shards N --shard_index i] --pca pca.npz
    (in a Slurm array task the shard is the task's place in the array: no shard flags needed)
python -m extract_features --tree SOCCERNET_ROOT ... --summary   (done / failed / missing games of every shard)
python -m extract_features --video_list videos.txt --pca pca.npz
python -m extract_features fit_pca --out pca.npz  FEATURES.npy | FOLDER | VIDEO ...
python -m extract_features convert_pca --average average_512_TF2.pkl --pca pca_512_TF2.pkl --allow_pickle --out pca.npz
python -m extract_features calibrate --video match1.mkv match2.mkv --out int8/ [--pca pca.npz]
python -m extract_features check_precision --video match.mkv --feature_dtype int8 --int8_model int8/ [--model M.keras]
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from soccer_highlights.commands import check_precision
from soccer_highlights.common.atomic import check_apart
from soccer_highlights.common.cli import (
    Parser,
    RawHelpFormatter,
    add_extraction_flags,
    add_progress_flags,
    check_positive,
    parse_args,
)
from soccer_highlights.common.constants import AUDIO_FEATURES, VIDEO_FEATURES
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.inputs import check_finite, load_features
from soccer_highlights.common.names import check_prefix
from soccer_highlights.common.quiet import import_tensorflow
from soccer_highlights.common.shards import add_shard_flags, resolve_shard
from soccer_highlights.extract_features import batch, calibrate, decode
from soccer_highlights.extract_features.batch import Job, check_outputs_apart
from soccer_highlights.extract_features.pca import convert_soccernet, fit_pca, load_pca, save_pca
from soccer_highlights.extract_features.pipeline import (
    DECODE_CHUNK,
    ExtractConfig,
    Extractor,
    read_recipe,
    read_record,
    write_outputs,
)

RENAMED = {"--list": "--video_list", "--out_root": "--out"}  # earlier spellings, accepted until the next release


# The feature networks' flags of extraction and fit_pca (fit_pca makes the PCA and hears no audio).
NETWORK_FLAGS = (
    "weights",
    "resnet_weights",
    "transform",
    "recipe",
    "feature_runtime",
    "feature_dtype",
    "int8_model",
    "cache_dir",
    "frames_per_call",
    "seed",
)


def extract_parser() -> Parser:
    doc = __doc__.split("\n\n")
    p = Parser(
        command="soccer-extract", description=doc[0], epilog="\n\n".join(doc[1:]), formatter_class=RawHelpFormatter
    )
    inputs = p.add_argument_group("input (one of)")
    src = inputs.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="one video file")
    src.add_argument("--tree", help="a SoccerNet-layout folder of videos (1_224p.mkv, 2_720p.mkv, 1.mkv, ...)")
    src.add_argument("--video_list", help="a .txt file with one video path per line")
    inputs.add_argument("--quality", help="--tree: preferred video (224p, 720p, HQ, LQ or '' for 1.mkv); default 224p")
    out = p.add_argument_group("outputs")
    out.add_argument(
        "--out",
        help="output folder: the features of --video; for a batch, the root under which the tree is mirrored "
        "(default: beside the videos)",
    )
    out.add_argument("--half", type=int, choices=[1, 2], help="name outputs 1_... or 2_... (--video)")
    out.add_argument("--prefix", help="output name prefix for --video (default 1)")
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="redo halves already extracted (batch); replace features of another video in --out (--video)",
    )
    out.add_argument("--vggish128", action="store_true", help="also write the standard 128-d VGGish embedding")
    out.add_argument("--save_raw", action="store_true", help="also write the 2048-d features (<half>_ResNET_TF2.npy)")
    out.add_argument("--video_feature_name", default=VIDEO_FEATURES, help="video features: <half>_<name>.npy")
    out.add_argument("--audio_feature_name", default=AUDIO_FEATURES, help="audio features: <half>_<name>.npy")
    out.add_argument(
        "--summary",
        action="store_true",
        help="batch: extract nothing; report which games of every shard are done, failed (why) or missing "
        "(same flags as the extraction; exit 1 unless all are done)",
    )
    ext = add_extraction_flags(p, ("pca", "vggish", *NETWORK_FLAGS), aliases=True)
    ext.add_argument(
        "--silent_audio",
        action="store_true",
        help="accept videos without audio: digital silence stands in (recorded in extraction.json)",
    )
    add_shard_flags(p, "game folders")
    add_progress_flags(p)
    return p


def _check_out_dir(path: str | None, flag: str) -> None:
    """An output folder must be a folder or creatable: fail before the work when a file is in the way."""
    if not path:
        return
    for p in (Path(path), *Path(path).parents):
        if p.exists():
            if not p.is_dir():
                raise UserError(f"{p}: is a file, not a folder ({flag} names the output folder)")
            return


def _config(args: argparse.Namespace) -> ExtractConfig:
    for name in ("pca", "resnet_weights"):
        value = getattr(args, name)
        if value and not Path(value).is_file():
            raise UserError(f"{value}: no such file (--{name})")
    if args.pca:
        load_pca(args.pca)  # a PCA that does not fit the backbone fails now, before any work
    _check_out_dir(args.out, "--out")
    if args.frames_per_call is not None:
        check_positive(args.frames_per_call, "--frames_per_call")
    for name in (args.video_feature_name, args.audio_feature_name):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise UserError(f"feature name {name!r}: use letters, digits, '_', '.', '-'")
    return ExtractConfig(
        weights=args.weights,
        resnet_weights=args.resnet_weights,
        pca=args.pca,
        vggish=None if args.vggish == "auto" else args.vggish,
        transform=args.transform,
        recipe=args.recipe,
        compute_dtype=args.feature_dtype,
        silent_audio=args.silent_audio,
        vggish128=args.vggish128,
        save_raw=args.save_raw,
        seed=args.seed,
        video_name=args.video_feature_name,
        audio_name=args.audio_feature_name,
        runtime=args.feature_runtime,
        cache_dir=args.cache_dir,
        int8_model=args.int8_model,
    )


def _check_not_another_video(out: Path, prefix: str, video: Path, overwrite: bool) -> None:
    """Refuse (without --overwrite) to replace the `prefix` features another video left in `out`."""

    earlier = ((read_record(out) or {}).get("halves") or {}).get(prefix) or {}
    source = earlier.get("video")
    if overwrite or not source or Path(source) == video.absolute():
        return
    if any((out / str(f)).exists() for f in (earlier.get("files") or {}).values()):
        raise UserError(
            f"{out}: holds the features {prefix}_* of another video ({source}); --overwrite replaces them, "
            "or choose another --out or --half"
        )


def extract_main(argv: Sequence[str]) -> int:
    args = parse_args(extract_parser(), argv, RENAMED)
    config = _config(args)
    progress = not args.quiet
    if args.video:
        if not args.out:
            raise UserError("--out DIR is required with --video")
        if args.half and args.prefix:
            raise UserError("give --half or --prefix, not both")
        prefix = check_prefix(args.prefix, "--prefix") or str(args.half or 1)
        decode.check_video(args.video, need_audio=not config.silent_audio)  # before TensorFlow loads
        _check_not_another_video(Path(args.out), prefix, Path(args.video), args.overwrite)
        check_outputs_apart(Job(Path(args.video), Path(args.out), prefix), config, args.overwrite)
        import_tensorflow(args.verbose)
        result = Extractor(config).run(args.video, batch_size=args.frames_per_call, progress=progress)
        info = write_outputs(Path(args.out), prefix, result, config)
        half = info["halves"][prefix]
        print(
            f"{args.video}: {half['tokens']} tokens in {half['seconds']:.1f} s -> "
            f"{', '.join(str(Path(args.out) / f) for f in half['files'].values())}"
        )
        if info["weights"] == "random":
            print("warning: random weights: these features are for smoke tests only", file=sys.stderr)
        return 0

    if args.tree:
        jobs = batch.tree_jobs(args.tree, out_root=args.out, quality=args.quality)
    else:
        jobs = batch.list_jobs(args.video_list, out_root=args.out)
    if args.summary:
        root = Path(args.out or args.tree or Path(args.video_list).parent)
        report, complete = batch.summary(jobs, config, root=root)
        print(report)
        return 0 if complete else 1
    num_shards, index = resolve_shard(args.num_shards, args.shard_index)
    jobs = batch.shard(jobs, num_shards, index)
    for job in jobs:
        check_outputs_apart(job, config, args.overwrite)  # before any work: a bad one would only fail at its turn
    import_tensorflow(args.verbose)
    counts = batch.run_batch(jobs, config, overwrite=args.overwrite, batch_size=args.frames_per_call, progress=progress)
    print(f"{counts['done']} extracted, {counts['skipped']} already done (shard {index}/{num_shards})")
    return 0


# ---- PCA commands ---------------------------------------------------------------------------------------------


def fit_pca_parser() -> Parser:
    p = Parser(
        command="soccer-extract",
        subcommand="fit_pca",
        description="Fit the 2048 -> 512 PCA on many halves' 2048-d features; save .npz.",
    )
    p.add_argument("inputs", nargs="+", help="2048-d .npy files, folders (their *_ResNET_TF2.npy), or videos")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--dim", type=int, default=512, help="components kept")
    add_extraction_flags(p, NETWORK_FLAGS, title="feature extraction (inputs that are videos)", aliases=True)
    add_progress_flags(p, quiet=False)
    return p


def _input_recipe(inputs: list[Path], video_recipe: str) -> str:
    """The one video recipe of all fit_pca inputs: videos get `--recipe`, feature files their folder's record."""

    recipes = {read_recipe(p.parent)["video"] if p.suffix == ".npy" else video_recipe for p in inputs}
    if len(recipes) > 1:
        raise UserError(f"fit_pca: the inputs mix video recipes ({', '.join(sorted(recipes))}); fit one PCA per recipe")
    return recipes.pop()


def _raw_blocks(inputs: list[Path], args: argparse.Namespace) -> Iterator[np.ndarray]:
    """2048-d feature blocks from .npy files (memory-mapped) and videos (ResNet-152 run here)."""
    resnet = None
    for path in inputs:
        if path.suffix == ".npy":
            yield load_features(path)  # shape, dtype and finite values checked (a NaN would make every component NaN)
            continue
        from soccer_highlights.extract_features.video import FrameEmbedder  # deferred: loads TensorFlow (start-up)

        if resnet is None:
            import_tensorflow(args.verbose)
            resnet = FrameEmbedder(
                args.weights,
                resnet_weights=args.resnet_weights,
                compute_dtype=args.feature_dtype,
                seed=args.seed,
                runtime=args.feature_runtime,
                cache_dir=args.cache_dir,
                int8_model=args.int8_model,
            )
        row = 0
        for chunk in decode.VideoDecoder(path, args.transform, recipe=args.recipe).chunks(
            args.frames_per_call or DECODE_CHUNK
        ):
            block = resnet(chunk)
            check_finite(np.asarray(block), f"{path}: ResNet features from row {row}")
            row += len(block)
            yield block


def fit_pca_main(argv: Sequence[str]) -> int:
    args = fit_pca_parser().parse_args(argv)
    inputs: list[Path] = []
    for item in map(Path, args.inputs):
        if item.is_dir():
            inputs += sorted(item.rglob("*_ResNET_TF2.npy"))
        elif item.is_file():
            if item.suffix != ".npy":
                decode.check_video(item, need_audio=False)
            inputs.append(item)
        else:
            raise UserError(f"{item}: no such file or folder")
    if not inputs:
        raise UserError("fit_pca: no 2048-d feature files (*_ResNET_TF2.npy) or videos found")
    check_apart(Path(args.out).parent, [Path(args.out).name], inputs)
    recipe = _input_recipe(inputs, args.recipe)
    pca = fit_pca(_raw_blocks(inputs, args), args.dim, recipe=recipe)
    save_pca(args.out, pca)
    print(
        f"{args.out}: PCA {pca.mean.shape[0]} -> {pca.output_dim} fitted on {pca.source['rows']} rows "
        f"from {len(inputs)} inputs ({recipe} recipe)"
    )
    return 0


def convert_pca_main(argv: Sequence[str]) -> int:
    p = Parser(
        command="soccer-extract",
        subcommand="convert_pca",
        description="Convert SoccerNet's average_512_TF2.pkl + pca_512_TF2.pkl to a .npz.",
    )
    p.add_argument("--average", required=True, help="average_512_TF2.pkl")
    p.add_argument("--pca", required=True, help="pca_512_TF2.pkl")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--allow_pickle", action="store_true", help="required: unpickling runs code from the files")
    args = p.parse_args(argv)
    check_apart(Path(args.out).parent, [Path(args.out).name], [args.average, args.pca])
    pca = convert_soccernet(args.average, args.pca, allow_pickle=args.allow_pickle)
    save_pca(args.out, pca)
    print(f"{args.out}: PCA {pca.mean.shape[0]} -> {pca.output_dim}")
    return 0


def calibrate_main(argv: Sequence[str]) -> int:
    return calibrate.calibrate_main(argv)


def check_precision_main(argv: Sequence[str]) -> int:
    return check_precision.check_precision_main(argv)


COMMANDS = {
    "fit_pca": fit_pca_main,
    "convert_pca": convert_pca_main,
    "calibrate": calibrate_main,
    "check_precision": check_precision_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    if argv and not argv[0].startswith("-"):  # extraction itself takes no word before its flags
        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        hint = f"did you mean {close[0]}?" if close else f"one of {', '.join(COMMANDS)}, or flags"
        raise UserError(f"unknown subcommand {argv[0]} ({hint})")
    return extract_main(argv)


if __name__ == "__main__":
    run_cli(main)
