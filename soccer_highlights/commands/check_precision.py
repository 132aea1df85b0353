"""`python -m extract_features check_precision`: a lower precision's features against float32's, on your video.

python -m extract_features check_precision --video match.mkv --feature_dtype int8 --int8_model int8/ \\
    [--pca pca.npz] [--model model.keras] [--out report.json]

Extracts the video twice (float32, then the precision asked for), and reports per stream the per-token
relative L2 before and after the PCA and the nearest-neighbour agreement; with `--model`, also how much the
model's per-token scores move and how many of the decoded highlight spans change. For int8 the report
replaces `fidelity.json` in the int8 model's folder; for bfloat16 it is kept in the converted-model cache
under the networks' key. Either way every later extraction at that precision with the same networks, PCA
and recipe records these figures in extraction.json, and inference applies its drift rule to them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from soccer_highlights import archis  # light: its names load on first use
from soccer_highlights.common.atomic import write_json
from soccer_highlights.common.cli import Parser, add_extraction_flags, add_progress_flags, spelled
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.quiet import import_tensorflow
from soccer_highlights.extract_features import decode, fidelity
from soccer_highlights.extract_features.pipeline import ExtractConfig, Extractor
from soccer_highlights.highlights.decoder import decode as decode_spans
from soccer_highlights.spotting.spots import Scorer

FLAGS = (
    "weights",
    "resnet_weights",
    "pca",
    "vggish",
    "transform",
    "recipe",
    "feature_runtime",
    "feature_dtype",
    "int8_model",
    "cache_dir",
    "seed",
)


def check_precision_parser() -> Parser:
    p = Parser(
        command="soccer-extract",
        subcommand="check_precision",
        description="Compare a precision's features (and a model's scores and spans) against float32.",
    )
    p.add_argument("--video", required=True, help="a video to compare on (a clip of a match will do)")
    p.add_argument("--model", help="a spotting model (.keras): also compare its scores and decoded spans")
    p.add_argument("--out", help="also write the report here (.json)")
    compared = {
        "required": True,
        "default": None,
        "choices": ("bfloat16", "int8"),
        "help": "the precision compared with float32 (int8: with --int8_model)",
    }
    add_extraction_flags(p, FLAGS, aliases=True, feature_dtype=compared)
    add_progress_flags(p)
    return p


def _extract_both(args: argparse.Namespace):
    """(float32 features, features at the precision asked for, the PCA's transform) of the video."""

    base = {
        "weights": args.weights,
        "resnet_weights": args.resnet_weights,
        "pca": args.pca,
        "vggish": None if args.vggish == "auto" else args.vggish,
        "transform": args.transform,
        "recipe": args.recipe,
        "seed": args.seed,
        "save_raw": True,
        "runtime": args.feature_runtime,
        "cache_dir": args.cache_dir,
    }
    other_config = ExtractConfig(**base, compute_dtype=args.feature_dtype, int8_model=args.int8_model)
    reference = Extractor(ExtractConfig(**base))
    ref = reference.run(args.video, progress=not args.quiet)
    lower = Extractor(other_config)
    other = lower.run(args.video, progress=not args.quiet)
    return ref, other, reference.pca.transform, lower


def model_change(model_path: str, ref, other) -> dict:
    """How a spotting model's per-token scores and decoded spans change from float32's features to the others."""

    model = archis.load_model(model_path, shared=True)
    spec = archis.model_info(model)
    scorer = Scorer(model)
    rate = spec.tokens_per_second
    probs = [scorer.score_half(f.video, f.audio, progress=False) for f in (ref, other)]
    spans = [decode_spans(p, spec.class_names, len(p) / rate, tokens_per_second=rate) for p in probs]
    return {"scores": fidelity.score_change(*probs), "spans": fidelity.span_change(*spans)}


def check_precision_main(argv: Sequence[str]) -> int:
    args = check_precision_parser().parse_args(argv)
    if args.model and not Path(args.model).is_file():
        raise UserError(f"{args.model}: no such model file")
    if args.feature_dtype == "int8" and not args.int8_model:
        raise UserError(
            spelled("--feature_dtype int8 needs --int8_model DIR (made by `python -m extract_features calibrate`)")
        )
    decode.check_video(args.video, need_audio=True)
    import_tensorflow(args.verbose)
    ref, other, project, lower = _extract_both(args)
    report = {"compute_dtype": args.feature_dtype, "source": "check_precision", "videos": [str(Path(args.video))]}
    report["video"] = fidelity.compare(ref.video_raw, other.video_raw, project)
    report["audio"] = fidelity.compare(ref.audio, other.audio)
    if args.model:
        report.update(model_change(args.model, ref, other))
    report["drift"] = fidelity.drift(report)
    if args.feature_dtype == "int8":
        previous = fidelity.read_report(args.int8_model) or {}
        report["calibration"] = previous.get("calibration")
        fidelity.write_report(args.int8_model, report)
    else:
        fidelity.store_for_networks(args.cache_dir, lower.fidelity_key(), report)
    if args.out:
        write_json(args.out, report)
    print(fidelity.format_report(report))
    return 0
