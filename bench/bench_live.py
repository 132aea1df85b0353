"""Benchmark: live highlights on a generated match played in real time (or faster) to udp:// on loopback.

For each run: ffmpeg plays the match (`-readrate RATE`) to `udp://127.0.0.1:PORT` once `inference.py --live`
is listening (its networks built); the live run records, scores and cuts clips; the figures come from its
`spans.jsonl` (per clip: seconds from the event's moment in the stream to its clip, and the stream seconds the
decoder's online rule waited) and `live.json` (real-time factor, lag, network seconds per stream second).
Random weights (no downloads, the same compute), an untrained concat model (20 s windows, NetVLAD-64) and a
0.05 threshold. An untrained model scores above any low threshold all along, and with the seed's figures
(goal: 14 s before, 55 after, peaks 20 s apart) every class's spans then chain into one that is final only at
the end; so the bench decodes with spans of 5 s before and 10 s after, peaks at least 18 s apart and a 2 s
merge gap (no two spans of a class can merge: each is final 35 s + half a window after its event).

    flock /tmp/bench.lock .venv/bin/python bench/bench_live.py --minutes 10                 # real time, default runtime
    flock /tmp/bench.lock .venv/bin/python bench/bench_live.py --minutes 10 --dtype int8 --int8_model INT8/
    flock /tmp/bench.lock .venv/bin/python bench/bench_live.py --minutes 2 --rates 2 3 4    # keeping up at N x

Prints one Markdown row per run. A run "keeps up" when its scores never fell more than the live run's
BEHIND_SEC behind the recording (no falling-behind warning).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from soccer_highlights.common.ffmpeg import ffmpeg_exe, media_arg
from soccer_highlights.synthetic.video import make_match_video

OUT = Path(__file__).resolve().parent / "out" / "live"
ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("goal", "card", "kick", "subs")


def match_video(minutes: float) -> Path:
    path = OUT / f"match_{minutes:g}min.mp4"
    if not path.exists():
        seconds = minutes * 60
        events = [(t, CLASSES[i % 4]) for i, t in enumerate(np.arange(20.0, seconds - 10, 45.0))]
        make_match_video(path, seconds, events)
    return path


def model() -> Path:
    path = OUT / "concat_vlad64_20s.keras"
    if not path.exists():
        from soccer_highlights.common.quiet import import_tensorflow

        import_tensorflow(False)
        from soccer_highlights import archis

        archis.build_model("concat", vlad_k=64, window_seconds=20, seed=0).save(path)
    return path


def decoder_config() -> Path:
    path = OUT / "decoder.json"
    rule = {"before": 5, "after": 10, "min_peak_distance": 18, "merge_gap": 2, "min_length": 4, "max_length": 25}
    path.write_text(json.dumps({"default": rule, "rules": {c: rule for c in CLASSES}}))
    return path


def _port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(video: Path, rate: float, runtime: str, dtype: str, out: Path, int8: str | None = None) -> dict:
    """One live run; its figures."""
    port = _port()
    cmd = [sys.executable, str(ROOT / "inference.py"), "--model", str(model()), "--out", str(out)]
    cmd += ["--live", f"udp://127.0.0.1:{port}?fifo_size=1000000&overrun_nonfatal=1", "--weights", "random"]
    cmd += [
        "--decoder_config",
        str(decoder_config()),
        "--threshold",
        "0.05",
        "--fast",
        "--quiet",
        "--live_stall",
        "3",
        "--live_end_after",
        "6",
    ]
    cmd += ["--feature_runtime", runtime, "--feature_dtype", dtype, *(["--int8_model", int8] if int8 else [])]
    log = (out.parent / f"{out.name}.log").open("w")
    live = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    while not (out / "spans.jsonl").exists() and live.poll() is None:
        time.sleep(0.2)
    send = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-readrate", f"{rate:g}"]
    send += ["-i", media_arg(video), "-c", "copy", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
    t0 = time.monotonic()
    subprocess.run(send, check=True)
    played = time.monotonic() - t0
    live.wait()
    log.close()
    text = (out.parent / f"{out.name}.log").read_text()
    if live.returncode:
        raise SystemExit(f"live run failed ({live.returncode}):\n{text[-3000:]}")
    lines = [json.loads(x) for x in (out / "spans.jsonl").read_text().splitlines()]
    state = json.loads((out / "live.json").read_text())
    latency = np.array([x["latency_sec"] for x in lines])
    wait = np.array([x["wait_sec"] for x in lines])
    return {
        "rate": rate,
        "runtime": f"{runtime} {dtype}",
        "minutes": round(state["recorded_sec"] / 60, 2),
        "played_sec": round(played, 1),
        "clips": len(lines),
        "latency": (float(np.median(latency)), float(latency.max())) if len(lines) else (np.nan, np.nan),
        "wait": (float(np.median(wait)), float(wait.max())) if len(lines) else (np.nan, np.nan),
        "compute": _compute(lines, rate),
        "rtf": state["real_time_factor"],
        "net_per_sec": state["compute_per_stream_sec"],
        "lag": state["lag_sec"],
        "behind": "falling behind" in text,
    }


def _compute(lines: list[dict], rate: float) -> tuple[float, float]:
    """Wall seconds of each clip's latency beyond the stream's wait (played at `rate` x): the pipeline's own."""
    extra = np.array([x["latency_sec"] - x["wait_sec"] / rate for x in lines])
    return (float(np.median(extra)), float(extra.max())) if len(extra) else (np.nan, np.nan)


def row(r: dict) -> str:
    lat, wait, comp = r["latency"], r["wait"], r["compute"]
    return (
        f"| {r['runtime']} | {r['rate']:g}x | {r['minutes']:g} | {r['clips']} | {lat[0]:.1f} / {lat[1]:.1f} | "
        f"{wait[0]:.1f} / {wait[1]:.1f} | {comp[0]:.1f} / {comp[1]:.1f} | {r['rtf']:.2f} | {r['net_per_sec']:.2f} | "
        f"{'no' if r['behind'] else 'yes'} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the generated match")
    p.add_argument("--rates", type=float, nargs="+", default=[1.0], help="stream rates (x real time)")
    p.add_argument("--runtime", default="openvino", choices=("openvino", "tensorflow"))
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "int8"))
    p.add_argument("--int8_model", help="with --dtype int8: a folder from `python -m extract_features calibrate`")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    video = match_video(args.minutes)
    print(
        "| runtime | stream rate | minutes | clips | latency s (median / max) | stream wait s | pipeline s | "
        "real-time factor | network s per stream s | kept up |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rate in args.rates:
        out = OUT / f"run_{args.minutes:g}min_{rate:g}x_{args.runtime}_{args.dtype}_{int(time.time())}"
        print(row(run(video, rate, args.runtime, args.dtype, out, args.int8_model)), flush=True)


if __name__ == "__main__":
    main()
