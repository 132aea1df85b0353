"""Projections whose outputs the passes of a whole-step batch-norm compute once and reuse.

A step with whole-step batch-norm statistics (`training.wholestep`) goes over its micro-batches several times.
NetVLAD's projection (`hidden_weights`, [K·D, O]: most of the arithmetic at VLAD-512) gives the same [B, O] output
in every pass after the one where the batch-norms upstream of it have their whole-step moments. While a step
keeper is active (`reusing(keeper)`), `project(layer, x, w, after_level)` hands the product to it: it computes and
keeps the output in the first such pass and reads it back in the later ones, with the product's own gradient
(dx = dy wᵀ, dw = xᵀ dy). Outside a step it is `x @ w`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from keras import ops

_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("archis_reused_projections", default=None)


@contextlib.contextmanager
def reusing(keeper: Any) -> Iterator[None]:
    """Calls traced inside hand their `project` products to `keeper.project(layer, x, w, after_level)`."""
    token = _ACTIVE.set(keeper)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def project(layer: Any, x, w, after_level: int):
    """`x @ w` ([B, I] x [I, O]) of `layer`, whose batch-norms upstream are at most `after_level` deep (-1: none);
    kept and reused across the passes of a whole-step batch-norm when one is active."""
    keeper = _ACTIVE.get()
    if keeper is None:
        return ops.matmul(x, w)
    return keeper.project(layer, x, w, after_level)
