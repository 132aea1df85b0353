"""One way to report a user mistake: a one-line message and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


class UserError(Exception):
    """A problem the user can fix (bad flag, missing file, wrong shape). Message is one line."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> NoReturn:
    """Run a CLI entry point; turn UserError into `error: <message>` on stderr and exit code 2."""
    try:
        code = main(argv)
    except UserError as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
