"""Console entry points (see `[project.scripts]` in pyproject.toml): each runs one CLI's `main` through
`run_cli`, so an installed command reports user mistakes as one `error:` line and exit code 2, like
`python inference.py`."""

from __future__ import annotations

import importlib
from typing import NoReturn

from soccer_highlights.common.cli import COMMAND_MODULES
from soccer_highlights.common.errors import run_cli

COMMANDS = COMMAND_MODULES  # each command's module: one table, in common.cli (which names the commands too)


def run_command(command: str) -> NoReturn:
    """Run the command installed as `command` (a key of COMMANDS): its `main` through `run_cli`."""
    run_cli(importlib.import_module(COMMANDS[command]).main)


def highlights() -> NoReturn:
    run_command("soccer-highlights")


def spot() -> NoReturn:
    run_command("soccer-spot")


def train() -> NoReturn:
    run_command("soccer-train")


def evaluate() -> NoReturn:
    run_command("soccer-evaluate")


def extract() -> NoReturn:
    run_command("soccer-extract")


def synthetic() -> NoReturn:
    run_command("soccer-synthetic")


def synthetic_video() -> NoReturn:
    run_command("soccer-synthetic-video")


def trainset() -> NoReturn:
    run_command("soccer-trainset")
