"""`python -m extract_features calibrate`: int8 feature networks, quantised with NNCF on a user's own matches.

python -m extract_features calibrate --video match1.mkv [match2.mkv ...] --out int8/ [--frames 200] [--pca pca.npz]

Post-training quantisation needs a few hundred real inputs to set the int8 ranges: frames (ResNet-152) and
0.5 s log-mel pieces (VGGish) are sampled evenly across the given videos, each network is quantised from its
cached float32 OpenVINO model, and the int8 models are written to `--out` (one folder per network, with the
manifest that ties it to the weights it was made from) with `fidelity.json`: the int8 features compared with
float32 on frames and pieces between the calibration ones (see extract_features/fidelity.py). Extraction
then takes `--feature_dtype int8 --int8_model OUT`. The folder appears complete or not at all.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soccer_highlights.common.cli import Parser, add_extraction_flags, add_progress_flags, check_positive
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.quiet import import_tensorflow
from soccer_highlights.extract_features import decode, fidelity, logmel
from soccer_highlights.extract_features.fidelity import format_report, write_report
from soccer_highlights.extract_features.pca import load_pca, random_pca
from soccer_highlights.extract_features.runtime import CompiledNetwork, int8_key, store

FLAGS = ("weights", "resnet_weights", "pca", "vggish", "transform", "recipe", "cache_dir", "seed")


def calibrate_parser() -> Parser:
    p = Parser(
        command="soccer-extract",
        subcommand="calibrate",
        description="Quantise the feature networks to int8 (NNCF) on a few of your own matches.",
    )
    p.add_argument("--video", nargs="+", required=True, help="videos to calibrate on (a few matches)")
    p.add_argument("--out", required=True, help="output folder for the int8 models and fidelity.json")
    p.add_argument("--frames", type=int, default=200, help="calibration frames (and as many audio pieces)")
    pca = {"help": "PCA .npz (mean, components): the fidelity report also compares features after it"}
    add_extraction_flags(p, FLAGS, title="feature networks (those of the extraction to come)", pca=pca)
    add_progress_flags(p, quiet=False)
    return p


def _every(total: int, wanted: int) -> int:
    return max(1, total // max(1, wanted))


def sample_frames(videos: Sequence[Path], count: int, transform: str, recipe: str) -> tuple[np.ndarray, np.ndarray]:
    """(calibration frames, held-out frames between them), evenly spaced over each video."""
    quota = math.ceil(count / len(videos))
    calib: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for path in videos:
        info = decode.check_video(path, need_audio=False)
        step = _every(decode.expected_tokens(info.duration, recipe), quota)
        index = 0
        for chunk in decode.VideoDecoder(path, transform, recipe=recipe).chunks(32):
            for frame in chunk:
                if index % step == 0 and len(calib) < quota * (videos.index(path) + 1):
                    calib.append(frame)
                elif index % step == step // 2:
                    held.append(frame)
                index += 1
    calib = calib[:count]
    return np.stack(calib), np.stack(held[: len(calib)] or calib)


def sample_pieces(videos: Sequence[Path], count: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration log-mel pieces [N, 46, 64], held-out pieces), evenly spaced over each video's audio."""
    quota = math.ceil(count / len(videos))
    calib: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for path in videos:
        info = decode.check_video(path, need_audio=True)
        step = _every(int(info.duration * 2), quota)
        index = 0
        for block in decode.AudioDecoder(path).samples(15.0):
            for piece in decode.to_pieces(block):
                if index % step == 0 and len(calib) < quota * (videos.index(path) + 1):
                    calib.append(piece)
                elif index % step == step // 2:
                    held.append(piece)
                index += 1
    calib = calib[:count]
    mel = logmel.log_mel(np.stack(calib), logmel.FEATURE_FRAMES)
    held_mel = logmel.log_mel(np.stack(held[: len(calib)]), logmel.FEATURE_FRAMES) if held else mel
    return mel[..., None].astype(np.float32), held_mel[..., None].astype(np.float32)


def quantise(xml: Path, samples: np.ndarray):
    """The int8 OpenVINO model of a float32 one, its ranges set on `samples` (one input per sample)."""
    try:
        import nncf
    except ImportError:
        raise UserError("calibrate needs NNCF: pip install nncf (see requirements.txt)") from None
    import openvino as ov

    data = nncf.Dataset([samples[i : i + 1] for i in range(len(samples))])
    return nncf.quantize(ov.Core().read_model(xml), data, subset_size=len(samples), fast_bias_correction=True)


def _networks(args: argparse.Namespace):
    from soccer_highlights.extract_features.audio import AudioEmbedder  # deferred: loads TensorFlow (start-up)
    from soccer_highlights.extract_features.video import FrameEmbedder  # deferred: loads TensorFlow (start-up)

    vggish = args.vggish if args.vggish != "auto" or args.weights != "random" else "random"
    common = {"runtime": "openvino", "cache_dir": args.cache_dir}
    resnet = FrameEmbedder(args.weights, resnet_weights=args.resnet_weights, seed=args.seed, **common)
    return resnet, AudioEmbedder(vggish, seed=args.seed + 1, **common)


def _projection(args: argparse.Namespace):
    if args.pca:
        return load_pca(args.pca).transform
    return random_pca(args.seed).transform if args.weights == "random" else None


def calibrate(args: argparse.Namespace, staging: Path) -> dict:
    """Quantise both networks into `staging` and return the fidelity report."""

    videos = [Path(v) for v in args.video]
    resnet, vggish = _networks(args)
    frames, held_frames = sample_frames(videos, args.frames, args.transform, args.recipe)
    pieces, held_pieces = sample_pieces(videos, args.frames)
    report: dict[str, Any] = {
        "compute_dtype": "int8",
        "source": "calibrate",
        "videos": [str(v.absolute()) for v in videos],
    }
    report["calibration"] = {"frames": len(frames), "pieces": len(pieces), "held_out": len(held_frames)}
    for name, net, samples, held, project in (
        ("resnet", resnet, frames, held_frames, _projection(args)),
        ("vggish", vggish, pieces, held_pieces, None),
    ):
        if args.verbose:
            print(f"quantising {name} on {len(samples)} inputs")
        xml = store(quantise(net.xml, samples), staging / name, int8_key(net.cache_key()))
        reference = CompiledNetwork(net.xml, "float32")(held)
        quantised = CompiledNetwork(xml, "int8")(held)
        report["video" if name == "resnet" else "audio"] = fidelity.compare(reference, quantised, project)
    report["drift"] = fidelity.drift(report)
    return report


def calibrate_main(argv: Sequence[str]) -> int:
    args = calibrate_parser().parse_args(argv)
    check_positive(args.frames, "--frames")
    for v in args.video:
        decode.check_video(v, need_audio=True)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file, not a folder (--out names the output folder)")
    import_tensorflow(args.verbose)
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", dir=out.absolute().parent))
    try:
        report = calibrate(args, staging)
        write_report(staging, report)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"{out}: int8 ResNet-152 and VGGish\n{format_report(report)}")
    return 0
