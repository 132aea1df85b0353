"""Command-line flags that several tools share, defined and checked in one place.

- `add_progress_flags`: `--quiet` (no progress bars) and `--verbose` (TensorFlow's start-up lines, see
  common/quiet.py), for every CLI.
- `add_spotting_flags` / `check_spotting_flags`: how a window model is run over a half and how its
  per-token probabilities become spots (inference.py and ClassificationSecondBased.py).

Flag vocabulary of the project's own commands (V&D's two commands keep V&D's spellings): snake_case; a flag
that takes a file or folder says so in its help, a flag that takes a name ends in `_name`; what a command writes
goes to `--out`. `parse_args` keeps the previous spellings working for one release, with one deprecation line.

Three tools batch three different things, so each batch flag has its own name: training's `--batch_size`
(halves of games, V&D's flag) and `--batch_windows`, spotting's `--windows_per_call` (windows per model
call) and extraction's `--frames_per_call` (frames per ResNet call).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence

from soccer_highlights.common.errors import UserError

NMS_RULES = ("vd", "symmetric")
SYSTEM_HELP = "accepted for compatibility with V&D's command; has no effect (paths are portable)"  # V&D's --system


def vd_none(value: str) -> str | None:
    """V&D spells "no value" as the string "None" (its --config default): that string, or "", is None."""
    return None if value in ("None", "") else value


def warn_deprecated(old: str, new: str) -> None:
    """The one deprecation line of an earlier spelling, on stderr."""
    print(f"warning: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


def renamed_flags(argv: Sequence[str] | None, renamed: Mapping[str, str]) -> list[str]:
    """`argv` (default: the command line) with each old spelling of `renamed` replaced by its new one, and one
    `warning:` line on stderr per old spelling used. Tokens after `--` are left alone."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    for i, token in enumerate(argv):
        if token == "--":
            return out + argv[i:]
        flag, eq, value = token.partition("=")
        if flag in renamed:
            warn_deprecated(flag, renamed[flag])
            token = renamed[flag] + eq + value
        out.append(token)
    return out


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, renamed: Mapping[str, str]
) -> argparse.Namespace:
    """`parser.parse_args` that also accepts the old spellings in `renamed` (old -> new), see `renamed_flags`."""
    return parser.parse_args(renamed_flags(argv, renamed))


def add_progress_flags(parser: argparse.ArgumentParser, *, quiet: bool = True, verbose: bool = True) -> None:
    """`--quiet` for tools with progress bars, `--verbose` for tools that load TensorFlow."""
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bars")
    if verbose:
        parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log lines")


def add_spotting_flags(parser: argparse.ArgumentParser, *, title: str = "scoring and spotting") -> None:
    """The scoring flags (stride, windows per call, compute dtype) and the spotting NMS flags, as one group."""
    g = parser.add_argument_group(title)
    g.add_argument("--stride", type=int, default=2, help="tokens between window centres (2 = one per second)")
    g.add_argument("--windows_per_call", type=int, default=256, help="windows per model call (memory vs speed)")
    g.add_argument("--compute_dtype", choices=("float32", "bfloat16"), help="default: the model's")
    g.add_argument("--nms_window", type=float, default=60.0, help="spotting NMS window, seconds (V&D: 60)")
    g.add_argument(
        "--nms_threshold",
        type=float,
        default=0.0,
        help="NMS threshold on the probability (V&D swept 0.05-0.95 inside its own metric)",
    )
    g.add_argument(
        "--nms_rule",
        choices=NMS_RULES,
        default="vd",
        help="vd: > the previous 30 s, >= the next 29 s, no spot in a half's first or last 30 s; "
        "symmetric: the maximum within +-30 s, up to the edges",
    )


def check_positive(value: int, flag: str) -> None:
    """UserError unless `value` >= 1."""
    if value < 1:
        raise UserError(f"{flag} must be >= 1, got {value}")


def check_nms(window_sec: float, threshold: float) -> None:
    """UserError for an NMS window that is not a finite number >= 0 or a threshold outside [0, 1]."""
    if not (math.isfinite(window_sec) and window_sec >= 0):
        raise UserError(f"--nms_window must be a number of seconds >= 0, got {window_sec}")
    if not 0 <= threshold <= 1:
        raise UserError(f"--nms_threshold must be in [0, 1], got {threshold}")


def check_spotting_flags(args: argparse.Namespace) -> None:
    """The checks of `add_spotting_flags`' values: one `error:` line for the first bad one."""
    check_positive(args.stride, "--stride")
    check_positive(args.windows_per_call, "--windows_per_call")
    check_nms(args.nms_window, args.nms_threshold)
