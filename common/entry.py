"""Console entry points (see `[project.scripts]` in pyproject.toml): each runs one CLI's `main` through
`run_cli`, so an installed command reports user mistakes as one `error:` line and exit code 2, like
`python inference.py`."""

from __future__ import annotations

import importlib
from typing import NoReturn

from common.errors import run_cli

COMMANDS = {
    "soccer-highlights": "inference",
    "soccer-spot": "ClassificationSecondBased",
    "soccer-train": "ClassificationMinuteBased",
    "soccer-evaluate": "evaluate",
    "soccer-extract": "extract_features.__main__",
    "soccer-synthetic": "synthetic.games",
    "soccer-synthetic-video": "synthetic.video",
}


def _run(command: str) -> NoReturn:
    run_cli(importlib.import_module(COMMANDS[command]).main)


def highlights() -> NoReturn:
    _run("soccer-highlights")


def spot() -> NoReturn:
    _run("soccer-spot")


def train() -> NoReturn:
    _run("soccer-train")


def evaluate() -> NoReturn:
    _run("soccer-evaluate")


def extract() -> NoReturn:
    _run("soccer-extract")


def synthetic() -> NoReturn:
    _run("soccer-synthetic")


def synthetic_video() -> NoReturn:
    _run("soccer-synthetic-video")
