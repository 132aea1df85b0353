"""Many matches in one process: each input checked first, scored through the core (`core.pipeline.run`), its
outputs written (`writers.outputs`), and one `index.html` linking every report. A failing input is reported on one
line and the others go on."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from soccer_highlights.common.atomic import MANIFEST, check_output_file
from soccer_highlights.common.errors import UserError
from soccer_highlights.core.pipeline import Config, Result, Session, check_match, run
from soccer_highlights.report.page import write_index
from soccer_highlights.writers.outputs import check_outputs, summary, write_outputs

log = logging.getLogger("inference")


def run_and_write(config: Config, session: Session | None = None) -> Result:
    """One input through the core, then every output of it written (the model loaded now unless a session is
    given)."""
    result = run(config, session)
    write_outputs(result)
    return result


def run_many(configs: Sequence[Config], index_of: Sequence[Config] | None = None) -> int:
    """Every video in one process, the model loaded and the extractor built once. All videos are checked first
    (so a run of bad files never loads the model); a video that fails is reported on one line and the others
    go on; a model that cannot be loaded stops the run (UserError). Returns 0 when all were done, else 1.
    `index_of` (a shard's whole batch): index.html links every report of it that exists, other shards' too."""
    failed: list[str] = []

    def attempt(config: Config, step: Callable[[], object]) -> bool:
        existed = config.out.exists()
        try:
            step()
            return True
        except UserError as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
            failed.append(str(config.video))
            if not existed and config.out.is_dir() and not any(config.out.iterdir()):
                config.out.rmdir()  # nothing half-made is left for a failed video
            return False

    if configs:
        check_output_file(configs[0].out.parent / "index.html")
    made = [c.out for c in configs if not c.out.exists()]
    ready = [c for c in configs if attempt(c, lambda c=c: _check(c))]
    try:
        session = Session.for_config(ready[0]) if ready else None
    except BaseException:
        for out in made:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        raise
    reports: list[Path] = []
    for config in ready:
        print(f"== {config.video} -> {config.out}/", file=sys.stderr, flush=True)
        if attempt(config, lambda c=config: print(summary(run_and_write(c, session)), flush=True)):
            reports.append(config.out / "report.html")
    root = configs[0].out.parent
    if reports:  # one page linking every match's report.html
        listed = [c.out / "report.html" for c in index_of or ()]
        write_index(root / "index.html", [p for p in listed if p.is_file()] or reports)
    print(
        f"{len(reports)} of {len(configs)} videos done: {root}/" + (f" (open {root}/index.html)" if reports else ""),
        file=sys.stderr,
    )
    _earlier_folders(root, configs)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


def _earlier_folders(root: Path, configs: Sequence[Config]) -> None:
    """One line naming the folders of `root` that earlier runs filled and this one did not (kept as they were)."""
    ours = {c.out.name for c in configs}
    with contextlib.suppress(OSError):
        others = sorted(p.name for p in root.iterdir() if p.name not in ours and (p / MANIFEST).is_file())
        if others:
            log.warning(
                "%s: %s hold results of an earlier run, not of this one (not in index.html; kept as they were)",
                root,
                ", ".join(others),
            )


def _check(config: Config) -> None:
    check_match(config)
    check_outputs(config)
