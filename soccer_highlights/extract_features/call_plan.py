"""How the OpenVINO ResNet-152 is called on this machine: frames per call and requests in flight, measured.

OpenVINO offers two ways to fill a CPU: one request using every core (the latency hint) or several
requests in flight, each on a share of the cores (the throughput hint). Which is faster, and with how many
frames per call, depends on the machine (cores, caches), the model's precision and OpenVINO's version, so the
first extraction on a machine measures a few plans on the network itself (random frames, about ten seconds,
once) and stores the fastest beside the converted model in `call_plans.json`, keyed by the machine; later
runs read it.

Plans within `TIE` of the fastest count as equal, and among them the throughput hint with the largest calls
wins. Measured alone, the plans tie on a 2-core machine; inside the pipeline, where decoding and VGGish share
the cores, independent requests with calls of 8 frames beat one request on every core by 9 % (float32) to
19 % (int8) end to end, and calls of 2 lose (bench/results_runtime.md): one request waits at every layer for
its slowest core, two requests each go at their own core's pace.

Calls never exceed `MAX_CALL` frames, so Ctrl-C waits for at most one such call. An unreadable or foreign
`call_plans.json` is measured again, never trusted; a folder that cannot be written (an int8 model on a
read-only share) keeps the plan for this run only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soccer_highlights.common.atomic import write_json
from soccer_highlights.common.errors import UserError

PLANS_NAME = "call_plans.json"
MAX_CALL = 8  # frames per call at most on a CPU (a stop request waits for one call)
FIXED_CALL = 4  # --frames_per_call not given and measuring turned off: the latency hint, calls of 4
TIE = 0.05  # plans this close to the fastest count as equal; the throughput hint with the largest calls wins
# Bumped when the choice among measured plans changes: plans stored by an earlier rule are measured again.
CHOICE_VERSION = 2
MEASURE_FRAMES = 8  # each plan runs at least this many frames (and two calls) after one warm-up call


@dataclass(frozen=True)
class CallPlan:
    """`hint` LATENCY or THROUGHPUT, `requests` in flight, `frames` per call; `fps` as measured (0: not)."""

    hint: str = "LATENCY"
    requests: int = 1
    frames: int = FIXED_CALL
    fps: float = 0.0

    def describe(self) -> str:
        how = "one request" if self.requests == 1 else f"{self.requests} requests in flight"
        measured = f", {self.fps:.1f} frames/s measured" if self.fps else ""
        frames = "1 frame" if self.frames == 1 else f"{self.frames} frames"
        return f"{self.hint.lower()} hint, {how}, calls of {frames}{measured}"


def machine_key(compute_dtype: str) -> str:
    """What a measured plan holds for: the CPU model, the cores this process may use, the precision, OpenVINO,
    and the rule that chose it."""
    import openvino as ov

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model or 'cpu'} | {cores} cores | {compute_dtype} | openvino {ov.get_version()} | rule {CHOICE_VERSION}"


def candidates(optimal_requests: int) -> list[tuple[str, int, int]]:
    """(hint, requests, frames per call) to try: the latency hint with 1, 4 and 8 frames; the throughput hint
    with one to four frames per request in flight (at most MAX_CALL frames)."""
    plans = [("LATENCY", 1, n) for n in (1, FIXED_CALL, MAX_CALL)]
    n = max(1, optimal_requests)
    if n > 1:
        plans += [("THROUGHPUT", n, k * n) for k in (1, 2, 4) if k * n <= MAX_CALL]
    return list(dict.fromkeys(plans))


def choose(measured: dict[tuple[str, int, int], float]) -> CallPlan:
    """The fastest plan, or of those within TIE of it the one that holds up best beside the pipeline's other
    threads: the throughput hint first, then the most frames per call, then the most requests."""
    best = max(measured.values())
    close = [p for p, fps in measured.items() if fps >= best * (1 - TIE)]
    hint, requests, frames = max(close, key=lambda p: (p[0] == "THROUGHPUT", p[2], p[1]))
    return CallPlan(hint, requests, frames, measured[(hint, requests, frames)])


def _time(net: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, size: int) -> float:
    """Frames/s of calls of `size` frames, after one warm-up call."""
    net(frames[:size])
    done, calls = 0, 0
    started = time.perf_counter()
    while done < MEASURE_FRAMES or calls < 2:
        net(frames[:size])
        done, calls = done + size, calls + 1
    return done / (time.perf_counter() - started)


def measure(compile_net: Callable[[str, int], Any], shape: tuple[int, ...]) -> dict:
    """Frames/s of every candidate plan; `compile_net(hint, requests)` compiles the network for a plan."""
    frames = np.random.default_rng(0).integers(0, 256, (MAX_CALL, *shape), dtype=np.uint8)
    latency = compile_net("LATENCY", 1)
    optimal = compile_net("THROUGHPUT", 0)
    measured = {}
    for hint, requests, size in candidates(optimal.requests):
        measured[(hint, requests, size)] = _time(latency if hint == "LATENCY" else optimal, frames, size)
    return measured


def read_plans(folder: Path) -> dict:
    try:
        plans = json.loads((folder / PLANS_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return plans if isinstance(plans, dict) else {}


def stored_plan(folder: Path, key: str) -> CallPlan | None:
    """The plan stored for this machine, or None (missing, unreadable, or not a plan)."""
    entry: Any = read_plans(folder).get(key)
    try:
        plan = CallPlan(entry["hint"], int(entry["requests"]), int(entry["frames"]), float(entry["fps"]))
    except (TypeError, KeyError, ValueError):
        return None
    ok = plan.hint in ("LATENCY", "THROUGHPUT") and plan.requests >= 1 and 1 <= plan.frames <= MAX_CALL
    return plan if ok else None


def plan_for(
    folder: Path,
    compute_dtype: str,
    compile_net: Callable[[str, int], Any],
    shape: tuple[int, ...],
    name: str = "the network",
) -> CallPlan:
    """The stored plan of this machine for the model in `folder`, measured and stored first when missing."""
    key = machine_key(compute_dtype)
    plan = stored_plan(folder, key)
    if plan:
        return plan
    print(f"measuring how to call {name} ({compute_dtype}) fastest on this machine (once, about 10 s)", file=sys.stderr)
    measured = measure(compile_net, shape)
    plan = choose(measured)
    entry = {
        **asdict(plan),
        "measured": {f"{h} x{r} requests, calls of {n}": fps for (h, r, n), fps in measured.items()},
    }
    try:
        write_json(folder / PLANS_NAME, {**read_plans(folder), key: entry})
    except (OSError, UserError) as exc:
        print(
            f"warning: {folder}: cannot store the call plan ({getattr(exc, 'strerror', None) or exc}); it is used for this run only",
            file=sys.stderr,
        )
    return plan
