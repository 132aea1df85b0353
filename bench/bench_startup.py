"""Benchmark: start-up as the commands run it (issue 29). In fresh processes: the VLAD-512 model load (the
file each checkout writes: as Keras saves it, and aligned by `common.modelfile.align_weights` as training and
`archis.export` now write it), `soccer-highlights` on a 30-s match (features given, no reel) to its first output
and to its exit against a bare `import tensorflow`, each `soccer-*` entry point's `--help`, and the heavy
packages (TensorFlow, Keras, OpenVINO, matplotlib, ...) each had imported when it wrote its first output.

"Before" is another checkout (`--before`, e.g. a `git worktree` of the commit to compare with) put first on
PYTHONPATH and run through the entry points its own pyproject.toml names (the package layout may differ);
"after" is this tree through the installed entry points. Every time is the best of `--repeats` fresh processes,
each on a terminal (a pty, so progress bars show as for a user);
before and after alternate in one invocation. Each checkout writes its own models (concat NetVLAD-512, 20 s
windows, random weights) into bench/out/startup/ at every run, so a file is never stale against the code.

    git worktree add /tmp/wt-643 643e491
    .venv/bin/python bench/bench_startup.py --before /tmp/wt-643
"""

from __future__ import annotations

import argparse
import os
import pty
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "startup"
BIN = Path(sys.executable).parent
HEAVY = ("tensorflow", "keras", "openvino", "matplotlib", "h5py", "sklearn", "nncf", "tensorflow_hub", "cv2", "scipy")

# `python -c FIRST module function argv0 dump args...`: runs the entry point `module:function` with `args`; at
# the first non-blank write to stdout or stderr it writes the top-level packages imported so far into `dump`.
FIRST = """
import importlib, sys
module, function, argv0, dump = sys.argv[1:5]
sys.argv = [argv0, *sys.argv[5:]]
class First:
    def __init__(self, stream):
        self.stream = stream
    def write(self, text):
        if text.strip() and not First.seen:
            First.seen = True
            with open(dump, "w") as f:
                f.write(" ".join(sorted({m.partition(".")[0] for m in sys.modules})))
        return self.stream.write(text)
    def __getattr__(self, name):
        return getattr(self.stream, name)
First.seen = False
sys.stdout, sys.stderr = First(sys.stdout), First(sys.stderr)
sys.exit(getattr(importlib.import_module(module), function)())
"""

MAKE = """
import sys
{archis}
model = archis.build_model("concat", vlad_k=512, window_seconds=20, seed=0)
import keras
keras.Model.save(model, sys.argv[1])  # as Keras writes it (no alignment)
if len(sys.argv) > 2:
    from soccer_highlights.common.modelfile import align_weights
    keras.Model.save(model, sys.argv[2])
    align_weights(sys.argv[2])
"""

LOAD = """
import sys, time
t0 = time.perf_counter()
import keras, tensorflow as tf
{archis}
t1 = time.perf_counter()
m = archis.load_model(sys.argv[1])
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def env_for(checkout: Path | None) -> dict[str, str]:
    """The environment of a fresh process of `checkout` (None: this tree). Processes run in OUT, so that the
    working directory (first on `python -c`'s path) does not shadow the checkout's modules."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    return env


def code(template: str, checkout: Path | None) -> str:
    """`template` with its `{archis}` import the checkout's: the installed package imports `soccer_highlights`
    from this tree whatever PYTHONPATH says, so a checkout of the flat layout must import its own `archis`."""
    flat = checkout is not None and not (checkout / "soccer_highlights").is_dir()
    return template.replace("{archis}", "import archis" if flat else "from soccer_highlights import archis")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def scripts(checkout: Path) -> dict[str, tuple[str, str]]:
    """Entry point name -> (module, function), from the checkout's pyproject.toml."""
    table = tomllib.loads((checkout / "pyproject.toml").read_text())["project"]["scripts"]
    pairs = {name: target.partition(":") for name, target in table.items()}
    return {name: (module, function) for name, (module, _, function) in pairs.items()}


def command(entry: str, checkout: Path | None) -> list[str]:
    """How a user runs `entry`: the installed script (after) or the checkout's own target (before)."""
    if checkout is None:
        return [str(BIN / entry)]
    module, function = scripts(checkout)[entry]
    code = f"import sys; sys.argv[0] = {entry!r}; from {module} import {function}; sys.exit({function}())"
    return [sys.executable, "-c", code]


def make_models(before: Path, keep: bool) -> dict[str, Path]:
    """The VLAD-512 files: each checkout's own as Keras saves it, and this tree's aligned one (written again unless
    `keep` and all three are there)."""
    paths = {"before": OUT / "vlad512_before.keras", "after": OUT / "vlad512.keras"}
    paths["aligned"] = OUT / "vlad512_aligned.keras"
    if keep and all(p.exists() for p in paths.values()):
        return paths
    for p in paths.values():
        p.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, "-c", code(MAKE, before), str(paths["before"])], check=True, env=env_for(before), cwd=OUT
    )
    subprocess.run(
        [sys.executable, "-c", code(MAKE, None), str(paths["after"]), str(paths["aligned"])],
        check=True,
        env=env_for(None),
        cwd=OUT,
    )
    return paths


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


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first byte on the terminal, seconds to exit) of one fresh process whose stdout and stderr
    are a terminal, as when a user runs it (progress bars then show, so `soccer-highlights`' first output is its
    scoring bar: the model is loaded and the first score is being computed)."""
    main_fd, child_fd = pty.openpty()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=child_fd, stderr=child_fd, env=env, cwd=OUT)
    os.close(child_fd)
    first, chunks = None, []
    while True:
        try:
            data = os.read(main_fd, 65536)
        except OSError:  # EIO: the child side is closed
            break
        if not data:
            break
        if first is None and data.strip():
            first = time.perf_counter() - t0
        chunks.append(data)
    code = proc.wait()
    total = time.perf_counter() - t0
    os.close(main_fd)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{b''.join(chunks).decode(errors='replace')[-2000:]}")
    return (total if first is None else first), total


def best(cmd: list[str], env: dict[str, str], repeats: int) -> tuple[float, float]:
    """Best of `repeats` of (time to first output, time to exit)."""
    runs = [timed(cmd, env) for _ in range(repeats)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def load_times(path: Path, checkout: Path | None, repeats: int) -> tuple[float, float]:
    """(import seconds, load seconds) of the fresh process with the fastest load."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code(LOAD, checkout), str(path)],
            capture_output=True,
            text=True,
            check=True,
            env=env_for(checkout),
            cwd=OUT,
        )
        imp, load = map(float, out.stdout.split()[-2:])
        runs.append((imp, load))
    return min(runs, key=lambda r: r[1])


def heavy_first(entry: str, checkout: Path | None, args: list[str]) -> str:
    """The heavy packages `entry args` had imported when it wrote its first output."""
    module, function = scripts(checkout or ROOT)[entry]
    dump = OUT / "first_output_modules.txt"
    dump.unlink(missing_ok=True)
    timed([sys.executable, "-c", FIRST, module, function, entry, str(dump), *args], env_for(checkout))
    found = set(dump.read_text().split()) if dump.exists() else set()
    return ", ".join(h for h in HEAVY if h in found) or "none"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, required=True, help="checkout to compare with (put on PYTHONPATH)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep_models", action="store_true", help="reuse the model files of an earlier run on this code")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    models = make_models(args.before, args.keep_models)
    features = make_features()
    print(f"load average at start: {loadavg()}")
    bare = min(timed([sys.executable, "-c", "import tensorflow"], env_for(None))[1] for _ in range(args.repeats))
    print(f"\nbare `import tensorflow`: {bare:.2f} s (best of {args.repeats} fresh processes)\n", flush=True)

    print(
        "| VLAD-512 file (1.08 GB) | code | import TF + archis (s) | `archis.load_model` (s) |\n|---|---|---|---|",
        flush=True,
    )
    for label, key, checkout in (
        ("as Keras saves it (before's own)", "before", args.before),
        ("as Keras saves it", "after", None),
        ("aligned (training, export)", "aligned", None),
    ):
        imp, load = load_times(models[key], checkout, args.repeats)
        print(f"| {label} | {'before' if checkout else 'after'} | {imp:.2f} | {load:.2f} |", flush=True)
    print(f"\nload average: {loadavg()}")

    print(
        "\n`soccer-highlights --model M --out O --features_video V --features_audio A --no_reel` on a 30-s match, "
        "fresh process (s)\n\n| code, file | first output | exit | first output / bare import | exit / bare import |"
        "\n|---|---|---|---|---|",
        flush=True,
    )
    for label, key, checkout in (
        ("before, its own file", "before", args.before),
        ("after, as Keras saves it", "after", None),
        ("after, aligned", "aligned", None),
    ):
        cmd = [*command("soccer-highlights", checkout), "--model", str(models[key]), "--out", str(OUT / "run")]
        first, total = best([*cmd, *features, "--no_reel"], env_for(checkout), args.repeats)
        print(f"| {label} | {first:.2f} | {total:.2f} | {first / bare:.2f} | {total / bare:.2f} |", flush=True)
    run_args = ["--model", str(models["aligned"]), "--out", str(OUT / "run"), *features, "--no_reel"]
    print(
        f"\nheavy packages imported before the first output, after: {heavy_first('soccer-highlights', None, run_args)}"
    )
    before_args = [*run_args[:1], str(models["before"]), *run_args[2:]]
    print(f"the same, before: {heavy_first('soccer-highlights', args.before, before_args)}")
    print(f"load average: {loadavg()}")

    print(
        "\n`--help` of each entry point (s to exit), heavy packages imported before the first output\n\n"
        "| entry point | before (s) | after (s) | heavy before | heavy after |\n|---|---|---|---|---|",
        flush=True,
    )
    for entry in sorted(scripts(ROOT)):
        after = best([*command(entry, None), "--help"], env_for(None), args.repeats)[1]
        heavy_after = heavy_first(entry, None, ["--help"])
        if entry in scripts(args.before):
            before = f"{best([*command(entry, args.before), '--help'], env_for(args.before), args.repeats)[1]:.2f}"
            heavy_before = heavy_first(entry, args.before, ["--help"])
        else:
            before, heavy_before = "(none)", ""
        print(f"| {entry} | {before} | {after:.2f} | {heavy_before} | {heavy_after} |", flush=True)
    print(f"\nload average at end: {loadavg()}")


if __name__ == "__main__":
    main()
