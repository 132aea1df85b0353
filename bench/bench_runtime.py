"""Feature networks on TensorFlow vs OpenVINO, float32 / bfloat16 / int8; prints a Markdown table.

For each runtime and precision, alternating in rounds within one run (so load on the shared cores hits all
alike), each in its own process:
- end to end: `python -m extract_features` on a generated 720p video (decode, ResNet-152, VGGish, PCA,
  written files): tokens/s inside the pipeline, peak RSS of the process, its wall time;
- start-up of the feature networks (TensorFlow already imported): build/load both, first call on one input;
- the backbone alone: ResNet-152 on already-decoded frames, called as the pipeline calls it (its call plan);
- the features against TensorFlow float32's (relative L2 per token, raw 2048-d and after the PCA).
The int8 models are calibrated first (`calibrate`, random weights). Projected time for a 90-minute match:
10,800 tokens at the end-to-end rate plus start-up.
Usage: env PYTHONPATH=. .venv/bin/python bench/bench_runtime.py [--minutes 10] [--rounds 1] [--modes openvino:int8]
[--before OTHER_CHECKOUT] (see --help)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_extract import generate  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "runtime"
MODES = [("tensorflow", "float32"), ("tensorflow", "bfloat16"), ("openvino", "float32")]
MODES += [("openvino", "bfloat16"), ("openvino", "int8")]
MATCH_TOKENS = 90 * 60 * 2

CHILD = """
import json, sys, time
import numpy as np
from soccer_highlights.common.quiet import import_tensorflow
import_tensorflow(False)
from soccer_highlights.extract_features.audio import AudioEmbedder
from soccer_highlights.extract_features.video import FrameEmbedder
runtime, dtype, int8 = sys.argv[1], sys.argv[2], sys.argv[3] or None
t = time.perf_counter()
kw = dict(runtime=runtime, compute_dtype=dtype, int8_model=int8)
resnet = FrameEmbedder("random", seed=0, **kw)
vggish = AudioEmbedder("random", seed=1, **kw)
resnet(np.zeros((1, 224, 224, 3), np.uint8)); vggish.silence()
startup = time.perf_counter() - t
frames = np.random.default_rng(0).integers(0, 256, (int(sys.argv[4]), 224, 224, 3), dtype=np.uint8)
step = resnet.set_call_plan().frames  # the pipeline's calls: the measured plan on OpenVINO, 4 on TensorFlow
calls = [frames[i : i + step] for i in range(0, len(frames), step)]
resnet(frames[:step])
t = time.perf_counter()
for call in calls:
    resnet(call)
fps = {"backbone_fps_calls": len(frames) / (time.perf_counter() - t)}
if hasattr(resnet, "stream"):  # the calls pipelined over the plan's requests, as the pipeline now makes them
    t = time.perf_counter()
    for _ in resnet.stream(iter(calls)):
        pass
    fps["backbone_fps_stream"] = len(frames) / (time.perf_counter() - t)
print(json.dumps({"startup": startup, "backbone_fps": max(fps.values()), **fps}))
"""


HINTS_CHILD = """
import json, sys
from soccer_highlights.common.quiet import import_tensorflow
import_tensorflow(False)
from soccer_highlights.extract_features import call_plan, runtime
from soccer_highlights.extract_features.video import FrameEmbedder
dtype, int8 = sys.argv[1], sys.argv[2] or None
net = FrameEmbedder("random", seed=0, runtime="openvino", compute_dtype=dtype, int8_model=int8)
compile_net = lambda hint, requests: runtime.CompiledNetwork(net.xml, dtype, hint=hint, requests=requests)
rounds = [call_plan.measure(compile_net, (224, 224, 3)) for _ in range(int(sys.argv[3]))]
best = {p: max(r[p] for r in rounds) for p in rounds[0]}  # the better of the rounds
print(json.dumps({"chosen": call_plan.choose(best).describe(), "measured": [[*p, fps] for p, fps in best.items()]}))
"""


def hints(rounds: int, int8: Path | None) -> str:
    """OpenVINO ResNet-152 frames/s per call plan (latency vs throughput hint, frames per call), per precision,
    measured by the pipeline's own call-plan measurement; and the plan it chooses."""
    lines = ["| precision | plan | frames/s |", "|---|---|---|"]
    for dtype in ("float32", "bfloat16", *(["int8"] if int8 else [])):
        args = [sys.executable, "-c", HINTS_CHILD, dtype, str(int8) if dtype == "int8" else "", str(rounds)]
        done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": "."})
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        for hint, requests, frames, fps in result["measured"]:
            lines.append(f"| {dtype} | {hint.lower()}, {requests} request(s), calls of {frames} | {fps:.2f} |")
        lines.append(f"| {dtype} | **chosen: {result['chosen']}** | |")
    return "\n".join(lines)


PARTS_CHILD = """
import json, resource, sys, time
from soccer_highlights.extract_features import decode
video = sys.argv[1]
t, cpu = time.perf_counter(), time.process_time()
frames = sum(len(c) for c in decode.VideoDecoder(video, "crop", threads=1, recipe=decode.DEFAULT_RECIPE).chunks(32))
wall, cpu = time.perf_counter() - t, time.process_time() - cpu
child = resource.getrusage(resource.RUSAGE_CHILDREN)
out = {"frames": frames, "wall": wall, "cpu": cpu + child.ru_utime + child.ru_stime}
import numpy as np
from soccer_highlights.common.quiet import import_tensorflow
import_tensorflow(False)
from soccer_highlights.extract_features.audio import BESIDE_RESNET_THREADS, AudioEmbedder
from soccer_highlights.extract_features.pca import random_pca
vggish = AudioEmbedder("random", seed=1, runtime="openvino", threads=BESIDE_RESNET_THREADS)
pieces = 0.1 * np.random.default_rng(0).standard_normal((240, 8000)).astype(np.float32)
vggish.features(pieces[:30])
t, cpu = time.perf_counter(), time.process_time()
for i in range(0, len(pieces), 30):  # the pipeline's 15 s audio blocks
    vggish.features(pieces[i : i + 30])
out["audio"] = [len(pieces) / (time.perf_counter() - t), (time.process_time() - cpu) / len(pieces)]
pca, raw = random_pca(0), np.random.default_rng(0).standard_normal((240, 2048)).astype(np.float32)
t = time.perf_counter()
for i in range(0, len(raw), 4):
    pca.transform(raw[i : i + 4])
out["pca"] = len(raw) / (time.perf_counter() - t)
print(json.dumps(out))
"""


def parts(video: Path) -> str:
    """The stages beside ResNet-152, each alone: decoding (ffmpeg's 720p decode, scale and crop to 224 x 224,
    one thread, as in the pipeline), the audio branch (log-mel and VGGish on one OpenVINO thread) and the PCA:
    tokens/s and CPU seconds per token, the share of the 2 cores the network cannot have."""
    done = subprocess.run([sys.executable, "-c", PARTS_CHILD, str(video)], capture_output=True, text=True, check=True)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return (
        "| stage alone | tokens/s | CPU s per token |\n|---|---|---|\n"
        f"| decode 720p -> 224 x 224 (ffmpeg, one thread) | {r['frames'] / r['wall']:.1f} | "
        f"{r['cpu'] / r['frames']:.3f} |\n"
        f"| audio: log-mel + VGGish (OpenVINO float32, one thread) | {r['audio'][0]:.1f} | {r['audio'][1]:.3f} |\n"
        f"| PCA 2048 -> 512, 4 tokens a call | {r['pca']:.0f} | |"
    )


def peak_rss_run(args: list[str], tree: str = "") -> tuple[float, float]:
    """Run a command (with the package from source tree `tree`, else this one); (wall seconds, peak RSS in GB,
    polled every 50 ms)."""
    import psutil

    t = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": tree or "."}
    proc = psutil.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tree or None)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    if proc.returncode:
        raise RuntimeError(proc.stderr.read().decode()[-2000:])
    return time.perf_counter() - t, peak / 1e9


def end_to_end(video: Path, runtime: str, dtype: str, int8: Path, tree: str = "") -> dict:
    out = OUT / f"{runtime}_{dtype}{'_' + Path(tree).name if tree else ''}"
    args = [sys.executable, "-m", "extract_features", "--video", str(video), "--out", str(out), "--weights", "random"]
    args += ["--runtime", runtime, "--compute_dtype", dtype, "--quiet", "--save_raw"]
    args += ["--int8_model", str(int8)] if dtype == "int8" else []
    wall, rss = peak_rss_run(args, tree)
    half = json.loads((out / "extraction.json").read_text())["halves"]["1"]
    idle = half.get("backbone_seconds", {}).get("idle", float("nan"))
    return {"wall": wall, "rss": rss, "pipeline_s": half["seconds"], "tokens": half["tokens"], "idle": idle, "out": out}


def child(runtime: str, dtype: str, int8: Path, frames: int, tree: str = "") -> dict:
    args = [sys.executable, "-c", CHILD, runtime, dtype, str(int8) if dtype == "int8" else "", str(frames)]
    env = {**os.environ, "PYTHONPATH": tree or "."}  # -c and -m put the working folder first on the path
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tree or None)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def rel_l2(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    return np.linalg.norm(other - ref, axis=1) / np.linalg.norm(ref, axis=1)


def table(results: dict, minutes: float, rounds: int) -> str:
    """One row per (runtime, precision, tree). The backbone-alone figure of a row is the best of every tree's for
    its runtime and precision (the same network on the same machine), so the trees' ratios share a denominator."""
    base_key = ("tensorflow", "float32", "") if ("tensorflow", "float32", "") in results else next(iter(results))
    base = results[base_key]
    ref_raw = np.load(base["out"] / "1_ResNET_TF2.npy")
    ref_pca = np.load(base["out"] / "1_ResNET_TF2_PCA512.npy")
    base_fps = base["tokens"] / base["pipeline_s"]
    best_backbone = {}
    for (runtime, dtype, _), r in results.items():
        best_backbone[runtime, dtype] = max(best_backbone.get((runtime, dtype), 0.0), r["backbone_fps"])
    lines = [
        f"| runtime / precision | end to end tokens/s | vs {base_key[0]} {base_key[1]} | backbone alone frames/s "
        "| end to end / backbone | backbone idle s | start-up s | peak RSS GB | 90-min match, min "
        "| features vs the first row (rel. L2 median / max; after PCA) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (runtime, dtype, tree), r in results.items():
        fps = r["tokens"] / r["pipeline_s"]
        backbone = best_backbone[runtime, dtype]
        raw = rel_l2(ref_raw, np.load(r["out"] / "1_ResNET_TF2.npy"))
        pca = rel_l2(ref_pca, np.load(r["out"] / "1_ResNET_TF2_PCA512.npy"))
        match_min = (MATCH_TOKENS / fps + r["startup"]) / 60
        lines.append(
            f"| {runtime} {dtype}{f' ({tree})' if tree else ''} | {fps:.2f} | {fps / base_fps:.2f}x | {backbone:.2f} | "
            f"{backbone / fps:.2f}x | {r['idle']:.1f} | {r['startup']:.2f} | {r['rss']:.2f} | {match_min:.1f} | "
            f"{np.median(raw):.1e} / {raw.max():.1e}; {np.median(pca):.1e} |"
        )
    head = f"{minutes:g}-minute generated 720p 25 fps video ({base['tokens']} tokens), {rounds} round(s), medians"
    return head + "\n\n" + "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--calibration_frames", type=int, default=200)
    p.add_argument("--backbone_frames", type=int, default=64)
    p.add_argument("--hints", action="store_true", help="only: the call plans (hint, frames per call), per precision")
    p.add_argument("--parts", action="store_true", help="only: decoding alone, tokens/s and CPU per token")
    p.add_argument("--reuse_int8", action="store_true", help="keep the int8 models of an earlier run (same video)")
    p.add_argument(
        "--modes",
        default=",".join(f"{r}:{d}" for r, d in MODES),
        help="runtime:precision pairs to run, comma-separated (default: all five)",
    )
    p.add_argument(
        "--before",
        metavar="TREE",
        help="another checkout of this project (`git worktree add`): each mode also runs with its package, "
        "alternating with this one in every round, as rows marked (before)",
    )
    args = p.parse_args()
    if args.parts:
        print(parts(generate(OUT / f"match_{args.minutes:g}min_720p.mp4", args.minutes)))
        return
    if args.hints:
        int8 = OUT / "int8"
        print(hints(args.rounds, int8 if (int8 / "fidelity.json").is_file() else None))
        return
    modes = [tuple(m.split(":")) for m in args.modes.split(",")]
    if not all(m in MODES for m in modes):
        p.error(f"--modes: choose among {','.join(f'{r}:{d}' for r, d in MODES)}")
    trees = [*([str(Path(args.before).resolve())] if args.before else []), ""]
    OUT.mkdir(parents=True, exist_ok=True)
    video = generate(OUT / f"match_{args.minutes:g}min_720p.mp4", args.minutes)
    int8 = OUT / "int8"
    if any(d == "int8" for _, d in modes) and not (args.reuse_int8 and (int8 / "fidelity.json").is_file()):
        t = time.perf_counter()
        cal = [sys.executable, "-m", "extract_features", "calibrate", "--video", str(video), "--out", str(int8)]
        subprocess.run([*cal, "--weights", "random", "--frames", str(args.calibration_frames)], check=True)
        print(f"calibration: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    print(f"load average at the start: {os.getloadavg()}", file=sys.stderr, flush=True)
    runs: dict = {(*m, "before" if t else ""): [] for m in modes for t in trees}
    for _ in range(args.rounds):
        for mode in modes:
            for tree in trees:
                r = end_to_end(video, *mode, int8, tree)
                r.update(child(*mode, int8, args.backbone_frames, tree))
                runs[(*mode, "before" if tree else "")].append(r)
                label = (*mode, "before" if tree else "after")
                print(label, {k: v for k, v in r.items() if k != "out"}, os.getloadavg(), file=sys.stderr, flush=True)
    results = {}
    for key, rs in runs.items():
        merged = {k: float(np.median([r[k] for r in rs])) for k in ("wall", "rss", "pipeline_s", "startup", "idle")}
        merged["backbone_fps"] = float(np.median([r["backbone_fps"] for r in rs]))
        results[key] = {**merged, "tokens": rs[0]["tokens"], "out": rs[0]["out"]}
    print(table(results, args.minutes, args.rounds))
    print(f"\nload average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
