"""Benchmark: start-up and many matches. Model load time and file size (VLAD-64, VLAD-512), and time to first
score / total time for 1 and 5 matches with features given, through run_inference.sh, before and after.

"Before" is another checkout (default /work/main: one inference.py process per video, each loading the model);
"after" is this tree (one process for every video). Both run in the same invocation, one after the other.
Models (concat NetVLAD, 20 s windows, random weights), videos (64x36) and random features are generated
into bench/out/startup/ once.

    flock /tmp/bench.lock .venv/bin/python bench/bench_startup.py --before /work/main
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "startup"

LOAD = """
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import keras, tensorflow as tf
tf.config.list_physical_devices()
from soccer_highlights import archis
t1 = time.perf_counter()
m = archis.load_model({path!r}) if {ours} else keras.models.load_model({path!r})
t2 = time.perf_counter()
print(f"{{t1 - t0:.3f}} {{t2 - t1:.3f}}")
"""


def make_model(name: str) -> Path:
    """`64`, `512`: concat NetVLAD-k; `512h`: the VLAD-512 file exported with a float16 projection."""
    path = OUT / f"vlad{name}.keras"
    if not path.exists():
        from soccer_highlights import archis

        if name.endswith("h"):
            from soccer_highlights.archis.export import export_model

            export_model(make_model(name[:-1]), path)
        else:
            archis.build_model("concat", vlad_k=int(name), window_seconds=20, seed=0).save(path)
    return path


def half_error(name: str) -> float:
    """Max |probability difference| between a float16-projection file and its float32 original (256 windows)."""
    import numpy as np

    from soccer_highlights import archis
    from soccer_highlights.spotting.spots import Scorer

    rng = np.random.default_rng(0)
    x = [rng.normal(size=(256, 40, 512)).astype(np.float32) for _ in range(2)]
    probs = [
        Scorer(archis.load_model(make_model(n)), batch_size=64).score_windows(*x, progress=False)
        for n in (name[:-1], name)
    ]
    return float(np.abs(probs[0] - probs[1]).max())


def load_times(path: Path, ours: bool, repeats: int) -> tuple[float, float]:
    """(import seconds, load seconds), the best of `repeats` fresh processes."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        code = LOAD.format(root=str(ROOT), path=str(path), ours=ours)
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        ).stdout.split()
        best = min(best, (float(out[0]), float(out[1])), key=lambda t: t[1])
    return best


def make_matches(minutes: float, count: int, tag: str) -> list[Path]:
    """`count` copies of a generated video of `minutes`, each with random features where extract_features puts
    them (`<stem>/1_*.npy`)."""
    import numpy as np

    from soccer_highlights.synthetic.video import make_match_video

    folder = OUT / tag
    source = OUT / f"source_{minutes:g}.mp4"
    if not source.exists():
        make_match_video(source, minutes * 60, size="64x36")
    tokens = int(minutes * 120)
    rng = np.random.default_rng(0)
    videos = []
    for i in range(count):
        video = folder / f"match{i}.mp4"
        if not video.exists():
            (folder / video.stem).mkdir(parents=True, exist_ok=True)
            shutil.copy(source, video)
            for name in ("1_ResNET_TF2_PCA512.npy", "1_VGGish.npy"):
                np.save(folder / video.stem / name, rng.normal(size=(tokens, 512)).astype(np.float32))
        videos.append(video)
    return videos


def run_script(checkout: Path, model: Path, videos: list[Path], venv: Path, before: bool) -> float:
    """Seconds for run_inference.sh of `checkout` over `videos` (features given, no reel)."""
    out = OUT / "runs"
    shutil.rmtree(out, ignore_errors=True)
    feats = videos[0].parent / videos[0].stem
    extra = (
        ["--features_video", str(feats / "1_ResNET_TF2_PCA512.npy"), "--features_audio", str(feats / "1_VGGish.npy")]
        if before
        else []
    )
    cmd = [
        "bash",
        str(checkout / "run_inference.sh"),
        "--model",
        str(model),
        "--out",
        str(out),
        *map(str, videos),
        "--",
        *extra,
        "--no_reel",
        "--quiet",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "VENV": str(venv)})
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{checkout}: run_inference.sh failed:\n{proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, default=Path("/work/main"), help="checkout to compare with")
    p.add_argument("--venv", type=Path, default=Path(sys.executable).parent.parent, help="venv both checkouts use")
    p.add_argument("--minutes", type=float, default=10.0, help="length of each match of the 1- and 5-match runs")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--models", default="64,512,512h", help="64, 512 (NetVLAD k), 512h (float16 projection)")
    p.add_argument("--skip_load", action="store_true")
    p.add_argument("--skip_script", action="store_true")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.skip_load:
        print(
            "| model | file size (MB) | import TF + archis (s) | load, keras.models.load_model (s) | "
            "load, archis.load_model (s) |\n|---|---|---|---|---|",
            flush=True,
        )
        for name in args.models.split(","):
            path = make_model(name)
            imp, plain = load_times(path, False, args.repeats)
            _, ours = load_times(path, True, args.repeats)
            label = f"VLAD-{name[:-1]}, float16 projection" if name.endswith("h") else f"VLAD-{name}"
            print(f"| {label} | {path.stat().st_size / 1e6:.0f} | {imp:.2f} | {plain:.2f} | {ours:.2f} |", flush=True)
        for name in [n for n in args.models.split(",") if n.endswith("h")]:
            print(
                f"\nVLAD-{name[:-1]} float16 projection: max |probability change| {half_error(name):.1e} "
                "(256 random windows)",
                flush=True,
            )
    if args.skip_script:
        return
    model = make_model("512")
    cases = [
        ("time to first score (one 30-s match)", make_matches(0.5, 1, "short")),
        (f"1 match of {args.minutes:g} min", make_matches(args.minutes, 1, "one")),
        (f"5 matches of {args.minutes:g} min", make_matches(args.minutes, 5, "five")),
    ]
    print(
        "\nrun_inference.sh, VLAD-512, features given, --no_reel\n\n| case | before (s) | after (s) |\n|---|---|---|",
        flush=True,
    )
    for name, videos in cases:
        before = run_script(args.before, model, videos, args.venv, before=True)
        after = run_script(ROOT, model, videos, args.venv, before=False)
        print(f"| {name} | {before:.1f} | {after:.1f} |", flush=True)


if __name__ == "__main__":
    main()
