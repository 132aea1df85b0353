"""How far features computed at a lower precision (bfloat16, int8) are from float32's, in figures a user can judge.

Per stream (video, audio) and token: the relative L2 distance `|x - x32| / |x32|` (median, 95th percentile,
maximum), the same after the PCA (what the models see), and the nearest-neighbour agreement (the share of
tokens whose nearest other token is the same under both precisions: does the geometry survive?). Given a
spotting model, also the change in its per-token scores and in the spans decoded from them.

The report is stored beside an int8 model as `fidelity.json` (written by `calibrate`, refreshed by
`check_precision`) and copied into every extraction.json made with that model. A bfloat16 report (from
`check_precision`) is stored in the converted-model cache under the key of the networks, PCA and recipe it
was measured with, and copied into every bfloat16 extraction.json made with exactly those. Its `drift` (the
worst median relative L2 the models see) is what inference compares with `common.features.DRIFT_WARN`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from soccer_highlights.common.atomic import write_json
from soccer_highlights.common.features import FIDELITY_NAME
from soccer_highlights.extract_features.runtime import cache_root

NN_TOKENS = 2000  # nearest-neighbour agreement on at most this many evenly spaced tokens (quadratic cost)


def _summary(values: np.ndarray) -> dict:
    return {
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
        "max": float(np.max(values)),
    }


def relative_l2(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Per-row |other - reference| / |reference| (rows of zeros count as 0 when equal)."""
    norm = np.linalg.norm(reference, axis=1)
    return np.linalg.norm(other - reference, axis=1) / np.maximum(norm, 1e-12)


def nearest_neighbours(x: np.ndarray) -> np.ndarray:
    """Index of each row's nearest other row (Euclidean)."""
    sq = np.sum(x.astype(np.float64) ** 2, axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x.astype(np.float64) @ x.astype(np.float64).T)
    np.fill_diagonal(d, np.inf)
    return np.argmin(d, axis=1)


def nn_agreement(reference: np.ndarray, other: np.ndarray) -> float | None:
    """Share of tokens whose nearest neighbour is the same in both (None with fewer than 3 tokens)."""
    if len(reference) < 3:
        return None
    take = np.linspace(0, len(reference) - 1, min(len(reference), NN_TOKENS)).astype(int)
    return float(np.mean(nearest_neighbours(reference[take]) == nearest_neighbours(other[take])))


def compare(reference: np.ndarray, other: np.ndarray, project=None) -> dict:
    """Figures of one stream: relative L2 (raw and, with `project`, after the PCA), nearest-neighbour agreement."""
    out = {"tokens": len(reference), "rel_l2": _summary(relative_l2(reference, other))}
    seen_ref, seen_other = (project(reference), project(other)) if project else (reference, other)
    if project:
        out["pca_rel_l2"] = _summary(relative_l2(seen_ref, seen_other))
    out["nn_agreement"] = nn_agreement(seen_ref, seen_other)
    return out


def drift(report: dict) -> float:
    """The worst median relative L2 of the features the models see (after the PCA where there is one)."""
    medians = [s.get("pca_rel_l2", s["rel_l2"])["median"] for k, s in report.items() if k in ("video", "audio")]
    return max(medians) if medians else 0.0


def score_change(reference: np.ndarray, other: np.ndarray) -> dict:
    """Change in per-token class probabilities [T, C]."""
    diff = np.abs(other - reference)
    return {"mean_abs": float(diff.mean()), "max_abs": float(diff.max())}


def span_change(reference: list, other: list) -> dict:
    """How many decoded spans (same label, start and end to 0.1 s) are kept, lost and new under the other precision."""

    def keys(spans):
        return {(s.label, round(s.start, 1), round(s.end, 1)) for s in spans}

    ref, oth = keys(reference), keys(other)
    return {"float32": len(ref), "same": len(ref & oth), "lost": len(ref - oth), "new": len(oth - ref)}


def write_report(folder: str | os.PathLike, report: dict) -> Path:
    """Store a report as the folder's fidelity.json (atomically)."""
    path = Path(folder) / FIDELITY_NAME
    write_json(path, report)
    return path


def read_report(folder: str | os.PathLike) -> dict | None:
    """The fidelity report beside an int8 model, or None when missing or unreadable."""
    try:
        report = json.loads((Path(folder) / FIDELITY_NAME).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def _precision_path(cache_dir: str | os.PathLike | None, key: dict) -> Path:
    import hashlib

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root(cache_dir) / "fidelity" / f"{key.get('runtime')}-{key.get('compute_dtype')}-{digest}.json"


def store_for_networks(cache_dir: str | os.PathLike | None, key: dict, report: dict) -> Path:
    """Store a bfloat16 report in the converted-model cache under the networks' key (weights, PCA, recipe,
    runtime, precision: `Extractor.fidelity_key`), where every later extraction with them finds it."""
    path = _precision_path(cache_dir, key)
    write_json(path, {**report, "key": key})
    return path


def read_for_networks(cache_dir: str | os.PathLike | None, key: dict) -> dict | None:
    """The report `check_precision` stored for exactly these networks, or None."""
    try:
        report = json.loads(_precision_path(cache_dir, key).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.pop("key", None) != key:
        return None
    return report


def format_report(report: dict) -> str:
    """A few readable lines of a report."""
    lines = [f"{report.get('compute_dtype')} vs float32 ({report.get('source')}): drift {report['drift']:.2e}"]
    for stream in ("video", "audio"):
        s = report.get(stream)
        if not s:
            continue
        seen = s.get("pca_rel_l2")
        nn = s.get("nn_agreement")
        lines.append(
            f"  {stream}: {s['tokens']} tokens, relative L2 median {s['rel_l2']['median']:.2e} "
            f"(p95 {s['rel_l2']['p95']:.2e})"
            + (f", after PCA {seen['median']:.2e}" if seen else "")
            + (f", nearest-neighbour agreement {nn:.1%}" if nn is not None else "")
        )
    if "scores" in report:
        sc, sp = report["scores"], report.get("spans", {})
        lines.append(f"  scores: mean |change| {sc['mean_abs']:.2e}, max {sc['max_abs']:.2e}")
        if sp:
            lines.append(f"  spans: {sp['same']} of {sp['float32']} unchanged, {sp['lost']} lost, {sp['new']} new")
    return "\n".join(lines)
