"""PCA 2048 -> 512 for video features, stored as a plain `.npz` (mean [2048], components [512, 2048]).

transform(x) = (x - mean) @ components.T. SoccerNet computed `PCA(512, svd_solver="full").transform(x - average)`
with `average` the mean training feature; its pickles convert exactly: mean = average + pca.mean_,
components = pca.components_ (divided by sqrt(explained_variance_) if the PCA whitened).

Fitting streams over feature files (sums of x and x^T x in float64), so many halves never sit in memory;
the eigenvectors match scikit-learn's full-SVD PCA, signs included (largest |entry| of each positive).
The `.npz` may also hold `recipe`, the video recipe of the features it was fitted on (extraction warns when
it differs from the one in use): "soccernet" for SoccerNet's pickles, the fitted features' own otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soccer_highlights.common.atomic import atomic_path
from soccer_highlights.common.cli import spelled
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.inputs import check_finite

INPUT_DIM = 2048
OUTPUT_DIM = 512


@dataclass(frozen=True)
class Pca:
    mean: np.ndarray  # [D]
    components: np.ndarray  # [K, D]
    source: dict = field(default_factory=dict)  # recorded in extraction.json

    def __post_init__(self) -> None:
        if self.mean.ndim != 1 or self.components.ndim != 2 or self.components.shape[1] != self.mean.shape[0]:
            raise UserError(
                f"PCA {self.source.get('path', '')}: mean {self.mean.shape} and components "
                f"{self.components.shape} do not fit together"
            )

    @property
    def output_dim(self) -> int:
        return self.components.shape[0]

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components.T).astype(np.float32)

    @property
    def recipe(self) -> str | None:
        """The video recipe of the features this PCA was fitted on (None when the file does not say)."""
        return self.source.get("recipe")


def save_pca(path: str | os.PathLike, pca: Pca) -> None:
    mean, components = pca.mean.astype(np.float32), pca.components.astype(np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        if pca.recipe:
            np.savez(fh, mean=mean, components=components, recipe=np.array(pca.recipe))
        else:
            np.savez(fh, mean=mean, components=components)


def load_pca(path: str | os.PathLike, input_dim: int = INPUT_DIM) -> Pca:
    """A `.npz` written by `save_pca` / `fit_pca` / `convert_pca`, checked to take `input_dim`-wide features
    (cheap: called before any extraction work); pickles are refused here (run convert_pca)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such PCA file")
    if p.suffix == ".pkl":
        raise UserError(
            f"{p}: a pickle; convert SoccerNet's pickles once with `{spelled('python -m extract_features')} "
            "convert_pca --average average_512_TF2.pkl --pca pca_512_TF2.pkl --allow_pickle --out pca.npz`"
        )
    try:
        with np.load(p, allow_pickle=False) as data:
            mean, components = data["mean"], data["components"]
            recipe = str(data["recipe"]) if "recipe" in data.files else None
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{p}: not a PCA .npz with arrays 'mean' and 'components'") from exc
    check_finite(np.atleast_2d(mean), f"{p}: mean")
    check_finite(np.atleast_2d(components), f"{p}: components")
    source = {"kind": "npz", "path": str(p), **({"recipe": recipe} if recipe else {})}
    pca = Pca(mean.astype(np.float32), components.astype(np.float32), source)
    if pca.mean.shape != (input_dim,):
        raise UserError(
            f"{p}: a PCA of {pca.mean.shape[0]}-d features (mean {pca.mean.shape}, components "
            f"{pca.components.shape}); the video backbone gives {input_dim}-d features"
        )
    return pca


def random_pca(seed: int = 0, input_dim: int = INPUT_DIM, output_dim: int = OUTPUT_DIM) -> Pca:
    """A random orthonormal projection (for `--weights random` smoke runs only)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((input_dim, output_dim)))
    return Pca(np.zeros(input_dim, np.float32), q.T.astype(np.float32), {"kind": "random_orthonormal", "seed": seed})


class PcaFitter:
    """Streaming PCA: add feature blocks, then `fit()`."""

    def __init__(self, dim: int = INPUT_DIM):
        self.count = 0
        self.total = np.zeros(dim)
        self.outer = np.zeros((dim, dim))

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.total):
            raise UserError(f"PCA input of shape {x.shape}: expected [N, {len(self.total)}]")
        self.count += len(x)
        self.total += x.sum(0)
        self.outer += x.T @ x

    def fit(self, output_dim: int = OUTPUT_DIM) -> Pca:
        if self.count <= output_dim:
            raise UserError(
                f"PCA to {output_dim} dimensions needs more than {output_dim} feature rows (got {self.count})"
            )
        mean = self.total / self.count
        cov = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        values, vectors = np.linalg.eigh(cov)
        top = vectors[:, np.argsort(values)[::-1][:output_dim]].T  # [K, D]
        signs = np.sign(top[np.arange(len(top)), np.abs(top).argmax(1)])
        return Pca(
            mean.astype(np.float32), (top * signs[:, None]).astype(np.float32), {"kind": "fit", "rows": self.count}
        )


def fit_pca(blocks: Iterable[np.ndarray], output_dim: int = OUTPUT_DIM, *, recipe: str | None = None) -> Pca:
    """Fit on every block of [N, D] features; `recipe` (the features' video recipe) is recorded in the PCA."""
    blocks = iter(blocks)
    first = next(blocks, None)
    if first is None:
        raise UserError("fit_pca: no feature files to fit on")
    fitter = PcaFitter(first.shape[1])
    fitter.add(first)
    for block in blocks:
        fitter.add(block)
    pca = fitter.fit(output_dim)
    return Pca(pca.mean, pca.components, {**pca.source, **({"recipe": recipe} if recipe else {})})


def convert_soccernet(average_pkl: str | os.PathLike, pca_pkl: str | os.PathLike, *, allow_pickle: bool) -> Pca:
    """SoccerNet's `average_512_TF2.pkl` (NumPy array) + `pca_512_TF2.pkl` (scikit-learn PCA) -> Pca."""
    if not allow_pickle:
        raise UserError(
            f"reading pickles runs code stored in them: pass --allow_pickle if you trust {average_pkl} and {pca_pkl}"
        )
    import pickle

    def unpickle(path):
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{p}: no such file")
        try:
            with open(p, "rb") as fh:
                return pickle.load(fh)  # noqa: S301 - opt-in via --allow_pickle
        except Exception as exc:  # unpickling can raise nearly anything
            raise UserError(f"{p}: cannot unpickle ({type(exc).__name__}: {exc})") from exc

    average = _numbers(unpickle(average_pkl), average_pkl, "the average feature").reshape(-1)
    model = unpickle(pca_pkl)
    if not hasattr(model, "components_"):
        raise UserError(f"{pca_pkl}: not a scikit-learn PCA (no components_; holds a {type(model).__name__})")
    components = _numbers(model.components_, pca_pkl, "components_")
    model_mean = _numbers(getattr(model, "mean_", 0.0), pca_pkl, "mean_").reshape(-1)
    if (
        average.shape != (INPUT_DIM,)
        or components.ndim != 2
        or components.shape[1] != INPUT_DIM
        or model_mean.size not in (1, INPUT_DIM)
    ):
        raise UserError(
            f"{average_pkl}, {pca_pkl}: not a PCA of {INPUT_DIM}-d features (average {average.shape}, "
            f"components {components.shape}, mean_ {model_mean.shape})"
        )
    if getattr(model, "whiten", False):
        variance = _numbers(getattr(model, "explained_variance_", None), pca_pkl, "explained_variance_").reshape(-1)
        if variance.shape != (len(components),):
            raise UserError(
                f"{pca_pkl}: explained_variance_ {variance.shape} does not fit {len(components)} components"
            )
        components = components / np.sqrt(variance)[:, None]
    mean = average + model_mean
    return Pca(
        mean.astype(np.float32),
        components.astype(np.float32),
        {"kind": "soccernet", "average": str(average_pkl), "pca": str(pca_pkl), "recipe": "soccernet"},
    )


def _numbers(value, path: str | os.PathLike, what: str) -> np.ndarray:
    """`value` as a float64 array, or a one-line UserError (a pickle can hold anything)."""
    try:
        return np.asarray(value, np.float64)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: {what} is not an array of numbers (a {type(value).__name__})") from exc
