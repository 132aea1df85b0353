"""Benchmark: start-up as the commands run it. Model load (VLAD-512, a file as Keras saves it and the same file
aligned by `common.modelfile.align_weights`, which training and `archis.export` now write), `soccer-highlights`
from a fresh process to its last line on a 30-s match (features given, no reel) against a bare
`import tensorflow`, and each installed `soccer-*` entry point's `--help` with the heavy modules it imported.

"Before" is another checkout (`--before`, e.g. a `git worktree` of the commit to compare with) put first on
PYTHONPATH, so the installed entry points run its code; "after" is this tree. Every figure is the best of
`--repeats` fresh processes; before and after alternate in one invocation. Models (concat NetVLAD-512, 20 s
windows, random weights) and features are generated into bench/out/startup/ once.

    .venv/bin/python bench/bench_startup.py --before /tmp/wt-base-load
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "startup"
BIN = Path(sys.executable).parent
HEAVY = ("tensorflow", "keras", "openvino", "matplotlib", "h5py", "sklearn", "nncf", "tensorflow_hub", "cv2")

LOAD = """
import time
t0 = time.perf_counter()
import keras, tensorflow as tf
from soccer_highlights import archis
t1 = time.perf_counter()
m = archis.load_model({path!r})
t2 = time.perf_counter()
print(f"{{t1 - t0:.3f}} {{t2 - t1:.3f}}")
"""


def env_for(checkout: Path | None) -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    return env


def make_model(aligned: bool) -> Path:
    path = OUT / ("vlad512_aligned.keras" if aligned else "vlad512.keras")
    if not path.exists():
        if aligned:
            from soccer_highlights.common.modelfile import align_weights

            shutil.copy(make_model(False), path)
            align_weights(path)
        else:
            import keras

            from soccer_highlights import archis

            model = archis.build_model("concat", vlad_k=512, window_seconds=20, seed=0)
            keras.Model.save(model, path)  # as Keras writes it (no alignment)
    return path


def make_features() -> list[str]:
    import numpy as np

    rng = np.random.default_rng(0)
    names = []
    for name in ("video", "audio"):
        path = OUT / f"{name}.npy"
        if not path.exists():
            np.save(path, rng.normal(size=(60, 512)).astype(np.float32))  # a 30-s match at 2 tokens/s
        names += [f"--features_{name}", str(path)]
    return names


def best(cmd: list[str], env: dict[str, str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return min(times)


def load_times(path: Path, checkout: Path | None, repeats: int) -> tuple[float, float]:
    """(import seconds, load seconds) of the fresh process with the fastest load."""
    runs = []
    for _ in range(repeats):
        code = LOAD.format(path=str(path))
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env_for(checkout)
        )
        imp, load = map(float, out.stdout.split()[-2:])
        runs.append((imp, load))
    return min(runs, key=lambda r: r[1])


def heavy_imports(entry: str, checkout: Path | None) -> list[str]:
    """The heavy top-level modules `entry --help` imports (python -X importtime)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / entry), "--help"],
        capture_output=True,
        text=True,
        env=env_for(checkout),
    )
    found = set(re.findall(r"\|\s+(\w+)\s*$", proc.stderr, flags=re.M))
    return [h for h in HEAVY if h in found]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, required=True, help="checkout to compare with (put on PYTHONPATH)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    bare = best([sys.executable, "-c", "import tensorflow"], env_for(None), args.repeats)
    print(f"\nbare `import tensorflow`: {bare:.2f} s (best of {args.repeats})\n", flush=True)

    print(
        "| VLAD-512 file | size (MB) | import TF + archis (s) | load before (s) | load after (s) |\n|---|---|---|---|---|"
    )
    for aligned in (False, True):
        path = make_model(aligned)
        before = load_times(path, args.before, args.repeats)
        after = load_times(path, None, args.repeats)
        label = "aligned (training, export)" if aligned else "as Keras saves it"
        size = path.stat().st_size / 1e6
        print(f"| {label} | {size:.0f} | {after[0]:.2f} | {before[1]:.2f} | {after[1]:.2f} |", flush=True)

    features = make_features()
    print(
        "\n`soccer-highlights` on a 30-s match, features given, `--no_reel --quiet`: fresh process to exit\n\n"
        "| VLAD-512 file | before (s) | after (s) | after / bare import |\n|---|---|---|---|"
    )
    for aligned in (False, True):
        model = make_model(aligned)
        times = []
        for checkout in (args.before, None):
            out = OUT / "run"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [str(BIN / "soccer-highlights"), "--model", str(model), "--out", str(out), *features]
            times.append(best([*cmd, "--no_reel", "--quiet"], env_for(checkout), args.repeats))
        label = "aligned" if aligned else "as Keras saves it"
        print(f"| {label} | {times[0]:.2f} | {times[1]:.2f} | {times[1] / bare:.2f} |", flush=True)

    print(
        "\n`--help` of each entry point\n\n| entry point | before (s) | after (s) | heavy imports after |\n|---|---|---|---|"
    )
    for entry in sorted(p.name for p in BIN.glob("soccer-*")):
        before = best([str(BIN / entry), "--help"], env_for(args.before), args.repeats)
        after = best([str(BIN / entry), "--help"], env_for(None), args.repeats)
        heavy = ", ".join(heavy_imports(entry, None)) or "none"
        print(f"| {entry} | {before:.2f} | {after:.2f} | {heavy} |", flush=True)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
