"""The argument list of a tiny training run (ClassificationMinuteBased.py, training's CLI), shared by the tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# What most tests train: NetVLAD-4 over PCA features, 10 s windows, 2 halves a batch, the window cache built anew.
TINY: dict[str, object] = {
    "architecture": "concat",
    "PCA": True,
    "network": "VLAD",
    "VLAD_k": 4,
    "WindowSize": 10,
    "batch_size": 2,
    "formatdataset": 1,
    "quiet": True,
}

Lists = Mapping[str, object] | str | Path | None


def train_argv(lists: Lists, tflog: str | Path | None, *extra: str, **flags: object) -> list[str]:
    """`--training/--validation/--testing` from `lists` (a mapping with keys train, valid and test, one list for
    all three, or None for none), the flags of TINY updated by `flags` (True: the bare flag, None or False: left
    out), `--tflog tflog` with `--cache_dir tflog/cache` unless `cache_dir` is given, then `extra` as it is."""
    values = {**TINY, **flags}
    if tflog is not None:
        values = {**values, "tflog": tflog, "cache_dir": values.get("cache_dir", Path(tflog) / "cache")}
    if isinstance(lists, Mapping):
        splits = {"training": lists["train"], "validation": lists["valid"], "testing": lists["test"]}
    else:
        splits = dict.fromkeys(("training", "validation", "testing"), lists)
    argv = ["--architecture", str(values.pop("architecture"))]
    for name, value in {**splits, **values}.items():
        if value is True:
            argv.append(f"--{name}")
        elif value is not None and value is not False:
            argv += [f"--{name}", str(value)]
    return [*argv, *extra]
