"""Generated data for tests and the demo: SoccerNet-layout games whose events leave a learnable trace
(`synthetic.games`, `python -m soccer_highlights.synthetic.games`) and a demo match video with events at the same times
(`synthetic.video`, `python -m soccer_highlights.synthetic.video`).

The names of `synthetic.games` are loaded on first use, not on import: `python -m soccer_highlights.synthetic.games` imports this
package first, and a package that had already imported the module being run makes Python warn about it."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "SyntheticDataset",
    "SyntheticGame",
    "generate_dataset",
    "make_game",
    "signatures",
    "split_counts",
    "write_game",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("soccer_highlights.synthetic.games"), name)
    if name in ("games", "video"):
        return importlib.import_module(f"soccer_highlights.synthetic.{name}")
    raise AttributeError(f"module 'synthetic' has no attribute {name!r}")
