"""Which share of a batch this process does: `--num_shards N --shard_index i`, else a Slurm array task's place.

Inside `sbatch --array=0-3` every task sees SLURM_ARRAY_TASK_ID (its index), SLURM_ARRAY_TASK_MIN / _STEP and
SLURM_ARRAY_TASK_COUNT, so `--array=0-3`, `1-4` and `0-6:2` all become shards 0..3 of 4 without a flag. A flag
given on the command line wins over the environment (each flag on its own). Shards are a round-robin over a
sorted list of keys (games), so every item belongs to exactly one shard whatever the task count.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from soccer_highlights.common.errors import UserError

T = TypeVar("T")
K = TypeVar("K", str, Path)


def add_shard_flags(p: argparse.ArgumentParser, what: str = "games") -> None:
    p.add_argument(
        "--num_shards",
        type=int,
        help=f"split the {what} into this many shards (default: the Slurm array's task count, else 1)",
    )
    p.add_argument(
        "--shard_index",
        type=int,
        help="which shard this process does, from 0 (default: the Slurm array task's place, else 0)",
    )


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise UserError(f"${name}={value!r}: not a whole number") from None


def slurm_array_shard(env: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(num_shards, shard_index) of the Slurm array task this process runs in, or None outside an array."""
    env = os.environ if env is None else env
    task, count = _env_int(env, "SLURM_ARRAY_TASK_ID"), _env_int(env, "SLURM_ARRAY_TASK_COUNT")
    if task is None or count is None:
        return None
    first = _env_int(env, "SLURM_ARRAY_TASK_MIN") or 0
    step = _env_int(env, "SLURM_ARRAY_TASK_STEP") or 1
    index, off_step = divmod(task - first, step)
    if off_step or not 0 <= index < count:
        raise UserError(
            f"Slurm array task {task} is not on the range {first}-{first + step * (count - 1)}:{step}; submit the "
            f"array as a range (--array=0-{count - 1}) or give --num_shards and --shard_index"
        )
    return count, index


def resolve_shard(
    num_shards: int | None, shard_index: int | None, env: Mapping[str, str] | None = None
) -> tuple[int, int]:
    """(num_shards, shard_index): the flags where given, the Slurm array's place for the rest, else (1, 0)."""
    from_env = slurm_array_shard(env) if num_shards is None or shard_index is None else None
    count = num_shards if num_shards is not None else (from_env[0] if from_env else 1)
    index = shard_index if shard_index is not None else (from_env[1] if from_env else 0)
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard_index must be in [0, {count}) and --num_shards >= 1 (got {index} of {count})")
    return count, index


def take_shard(items: Sequence[T], num_shards: int, shard_index: int, key: Callable[[T], K]) -> list[T]:
    """The items whose key falls in shard `shard_index`: the sorted distinct keys dealt round-robin."""
    keys = sorted({key(item) for item in items})
    mine = set(keys[shard_index::num_shards])
    return [item for item in items if key(item) in mine]
