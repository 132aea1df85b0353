"""Benchmarks for extract_features (issue 5); prints a Markdown table.

1. decoding a generated 720p 25 fps video to 224 x 224 at 2 fps: ffmpeg pipe vs OpenCV reading every frame;
2. ResNet-152 frames/s at batch 32, float32 vs bfloat16, and how far bf16 features move;
3. end to end (decode + ResNet + PCA + audio) vs ResNet alone on already-decoded frames;
4. audio features (VGGish 512) for a 45-minute half;
5. (--recipes) the video recipes (soccernet vs rgb) and audio downmixes (channel mean vs ffmpeg's -ac 1),
   before/after measured alternately in one run: decode frames/s, end to end, decode share of end to end.
Random weights throughout (no downloads).
Usage: python bench/bench_extract.py [--minutes 10] [--audio_minutes 45] [--recipes [--rounds 3]]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import time
from pathlib import Path

import numpy as np

from soccer_highlights.common.ffmpeg import ffmpeg_exe, media_arg
from soccer_highlights.extract_features import decode

OUT = Path(__file__).resolve().parent / "out"


def generate(path: Path, minutes: float, video: bool = True, stereo: bool = False) -> Path:
    if path.exists():
        return path
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25"]
    sine = "sine=frequency=440:sample_rate=48000" + (",aformat=channel_layouts=stereo" if stereo else "")
    args += ["-f", "lavfi", "-i", sine, "-t", str(minutes * 60)]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"] if video else []
    subprocess.run([*args, media_arg(path)], check=True)
    return path


def opencv_frames(path: Path) -> int:
    """What SoccerNet's loader and the seed do: read every frame, keep one in fps/2, resize + centre crop."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    keep_every = cap.get(cv2.CAP_PROP_FPS) / 2.0
    kept = i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if i % keep_every < 1:
            h, w = frame.shape[:2]
            frame = cv2.resize(frame, (round(w * 224 / h), 224), interpolation=cv2.INTER_AREA)
            off = (frame.shape[1] - 224) // 2
            _ = frame[:, off : off + 224, ::-1]
            kept += 1
        i += 1
    return kept


def old_downmix_samples(path: Path) -> int:
    """The audio decode before the channel-mean recipe: ffmpeg's own -ac 1 downmix, f32le to a pipe."""
    pipe = decode._Pipe(
        [
            "-i",
            media_arg(path),
            "-map",
            "0:a:0",
            "-vn",
            "-af",
            "aresample=async=1:first_pts=0",
            "-ac",
            "1",
            "-ar",
            str(decode.SAMPLE_RATE),
            "-f",
            "f32le",
            "pipe:1",
        ],
        str(path),
    )
    try:
        return sum(len(b) // 4 for b in pipe.read_records(4, 60 * decode.SAMPLE_RATE))
    finally:
        pipe.close()


def slice_rows(rounds: int) -> list[tuple[str, str, str]]:
    """ResNet-152 on CPU: one call of 32 frames vs 8 calls of 4 (the slices extraction uses so Ctrl-C is quick)."""
    from soccer_highlights.extract_features.pipeline import _resnet

    net = _resnet("random", None, 0, None, "float32", None, None)
    frames = np.random.default_rng(0).integers(0, 256, (32, 224, 224, 3), dtype=np.uint8)
    net(frames[:4])
    times: dict[int, list[float]] = {32: [], 4: []}
    for _ in range(rounds):
        for step in times:
            _, t = timed(lambda s=step: [net(frames[i : i + s]) for i in range(0, 32, s)])
            times[step].append(t)
    return [
        (
            f"ResNet-152 float32, calls of {step} frames, median of {rounds}",
            f"{32 / np.median(t):.2f} frames/s",
            f"{np.median(t):.1f} s for 32 frames",
        )
        for step, t in times.items()
    ]


def child_cpu() -> float:
    """CPU seconds used by finished child processes (ffmpeg): steadier than wall time on shared cores."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_cpu(fn) -> tuple[float, float]:
    """(wall seconds, ffmpeg CPU seconds) of fn()."""
    cpu = child_cpu()
    _, wall = timed(fn)
    return wall, child_cpu() - cpu


def recipe_rows(video: Path, audio_file: Path, rounds: int) -> list[tuple[str, str, str]]:
    """soccernet vs rgb (decode alone, and end to end with its decode share), channel mean vs -ac 1, alternating."""
    from soccer_highlights.extract_features.pipeline import extract_file

    recipes = ("soccernet", "rgb")
    audio_ways = {
        "channel mean (every channel decoded, mean in NumPy)": lambda: sum(
            len(b) for b in decode.AudioDecoder(audio_file).samples()
        ),
        "ffmpeg -ac 1 (before)": lambda: old_downmix_samples(audio_file),
    }
    runs: dict[str, list[tuple[float, float]]] = {
        k: [] for k in (*recipes, *(f"e2e {r}" for r in recipes), *audio_ways)
    }
    count = {r: sum(len(c) for c in decode.VideoDecoder(video, threads=1, recipe=r).chunks(32)) for r in recipes}
    extract_file(video, weights="random", progress=False)  # build and trace the networks once
    for _ in range(rounds):
        for r in recipes:
            runs[r].append(
                timed_cpu(lambda r=r: sum(1 for _ in decode.VideoDecoder(video, threads=1, recipe=r).chunks(32)))
            )
            runs[f"e2e {r}"].append(
                timed_cpu(lambda r=r: extract_file(video, weights="random", recipe=r, progress=False))
            )
        for name, fn in audio_ways.items():
            runs[name].append(timed_cpu(fn))
    med = {k: np.median(np.array(v), axis=0) for k, v in runs.items()}
    rows = []
    for r in recipes:
        (wall, cpu), (e2e, _) = med[r], med[f"e2e {r}"]
        rows.append(
            (
                f"recipe {r}: decode alone (1 thread), median of {rounds}",
                f"{count[r] / wall:.1f} frames out/s",
                f"{wall:.2f} s wall, ffmpeg CPU {1000 * cpu / count[r]:.1f} ms per token, {count[r]} tokens",
            )
        )
        rows.append(
            (
                f"recipe {r}: end to end, median of {rounds}",
                f"{count[r] / e2e:.2f} tokens/s",
                f"{e2e:.1f} s; decode alone = {100 * wall / e2e:.1f} % of it",
            )
        )
    for name in audio_ways:
        wall, cpu = med[name]
        rows.append(
            (
                f"audio to 16 kHz mono: {name}, median of {rounds}",
                f"{wall:.2f} s wall",
                f"ffmpeg CPU {cpu:.2f} s, {audio_file.name}",
            )
        )
    return slice_rows(rounds) + rows


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--audio_minutes", type=float, default=45.0)
    p.add_argument("--bf16_frames", type=int, default=96)
    p.add_argument("--recipes", action="store_true", help="only the recipe comparison (5.)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    OUT.mkdir(exist_ok=True)
    rows = []
    video = generate(OUT / f"match_{args.minutes:g}min_720p25.mp4", args.minutes)
    if args.recipes:
        audio_file = generate(
            OUT / f"audio_{args.audio_minutes:g}min_stereo.m4a", args.audio_minutes, video=False, stereo=True
        )
        print_table(args.minutes, recipe_rows(video, audio_file, args.rounds))
        return

    frames, t_ff = timed(lambda: np.concatenate(list(decode.VideoDecoder(video, threads=1).chunks(32))))
    rows.append(
        (
            "decode: ffmpeg fps,scale,crop pipe (1 thread)",
            f"{len(frames) / t_ff:.1f} frames out/s",
            f"{t_ff:.1f} s for {len(frames)} frames",
        )
    )
    frames_all, t_ffall = timed(lambda: sum(len(c) for c in decode.VideoDecoder(video).chunks(32)))
    rows.append(("decode: ffmpeg pipe (auto threads)", f"{frames_all / t_ffall:.1f} frames out/s", f"{t_ffall:.1f} s"))
    kept, t_cv = timed(lambda: opencv_frames(video))
    rows.append(
        (
            "decode: OpenCV every frame, keep 1 in 12.5",
            f"{kept / t_cv:.1f} frames out/s",
            f"{t_cv:.1f} s for {kept} frames",
        )
    )

    from soccer_highlights.extract_features.pipeline import _resnet, extract_file
    from soccer_highlights.extract_features.video import BACKBONE

    feats = {}
    for dtype in ("float32", "bfloat16"):
        net = _resnet("random", None, 0, None, dtype, None, None)
        sample = frames[: args.bf16_frames]
        net(sample[:32])  # trace + warm up
        out, t = timed(
            lambda net=net, sample=sample: np.concatenate([net(sample[i : i + 32]) for i in range(0, len(sample), 32)])
        )
        feats[dtype] = out
        rows.append((f"ResNet-152 {dtype}, batch 32", f"{len(sample) / t:.1f} frames/s", f"{t:.1f} s"))
    diff = np.linalg.norm(feats["bfloat16"] - feats["float32"], axis=1) / np.linalg.norm(feats["float32"], axis=1)
    cos = np.sum(feats["bfloat16"] * feats["float32"], 1) / (
        np.linalg.norm(feats["bfloat16"], axis=1) * np.linalg.norm(feats["float32"], axis=1)
    )
    rows.append(
        (
            f"bf16 vs fp32 {BACKBONE.width}-d features (random weights)",
            f"rel. L2 median {np.median(diff):.3g}, max {diff.max():.3g}",
            f"cosine min {cos.min():.5f}",
        )
    )

    net = _resnet("random", None, 0, None, "float32", None, None)
    _, t_resnet = timed(lambda: [net(frames[i : i + 32]) for i in range(0, len(frames), 32)])
    rows.append(("ResNet-152 alone on decoded frames", f"{len(frames) / t_resnet:.1f} frames/s", f"{t_resnet:.1f} s"))
    result, t_e2e = timed(lambda: extract_file(video, weights="random", progress=False))
    rows.append(
        (
            "end to end (decode + ResNet + PCA + audio)",
            f"{t_e2e / t_resnet:.3f} x ResNet alone",
            f"{t_e2e:.1f} s, T = {len(result.video)}",
        )
    )

    from soccer_highlights.extract_features.audio import AudioEmbedder

    audio_file = generate(OUT / f"audio_{args.audio_minutes:g}min.m4a", args.audio_minutes, video=False)
    vggish = AudioEmbedder("random", need_embedding=False, seed=1)
    vggish.features(np.zeros((4, 8000), np.float32))

    def audio_features():
        return sum(len(vggish.features(decode.to_pieces(b))) for b in decode.AudioDecoder(audio_file).samples())

    pieces, t_audio = timed(audio_features)
    rows.append(
        (
            f"audio features, {args.audio_minutes:g}-min half (decode + log-mel + VGGish)",
            f"{t_audio:.1f} s",
            f"{pieces} pieces, {pieces / t_audio:.0f} pieces/s",
        )
    )

    print_table(args.minutes, rows)


def print_table(minutes: float, rows: list[tuple[str, str, str]]) -> None:
    print(f"| benchmark ({minutes:g}-min 720p video) | figure | detail |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
