"""Many matches in one process: every match checked first, then each scored by one `Pipeline` (loaded once), its
files written (`writers.outputs`), and one `index.html` linking every report. A failing match is reported on one
line and the others go on."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from soccer_highlights.common.atomic import (
    MANIFEST,
    check_output_file,
    check_replaceable,
    is_ours,
    keep_aside,
    record_files,
)
from soccer_highlights.common.errors import UserError
from soccer_highlights.core.match import Match, Result
from soccer_highlights.core.pipeline import Pipeline, check_match
from soccer_highlights.report.page import write_index
from soccer_highlights.writers.outputs import Output, Written, check_outputs, summary, write_outputs

log = logging.getLogger("inference")


@dataclass(frozen=True)
class Job:
    """One match of a run and where its files go."""

    match: Match
    output: Output


def check_job(job: Job) -> None:
    """The checks of one job that need no network: its match, and that its folder can take its outputs."""
    check_match(job.match)
    check_outputs(job.match, job.output)


def run_and_write(pipeline: Pipeline, job: Job) -> tuple[Result, Written]:
    """One match through the core, then every file of it written."""
    result = pipeline(job.match)
    return result, write_outputs(result, job.output)


def run_many(
    jobs: Sequence[Job],
    load: Callable[[], Pipeline],
    index_of: Sequence[Job] | None = None,
    check: Callable[[Job], None] = check_job,
) -> int:
    """Every match in one process, the pipeline loaded (`load()`) once. All matches are checked first (so a run of
    bad files never loads the model); a match that fails is reported on one line and the others go on; a model
    that cannot be loaded stops the run (UserError). Returns 0 when all were done, else 1. `index_of` (a shard's
    whole batch): index.html links every report of it that exists, other shards' too. `check`: the checks of one
    job before anything loads (default `check_job`)."""
    failed: list[str] = []

    def attempt(job: Job, step: Callable[[], object]) -> bool:
        existed = job.output.out.exists()
        try:
            step()
            return True
        except UserError as exc:
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
            failed.append(str(job.match.source))
            out = job.output.out
            if not existed and out.is_dir() and not any(out.iterdir()):
                out.rmdir()  # nothing half-made is left for a failed video
            return False

    if jobs:  # index.html: a file of the user's with that name is never replaced (unless kept aside: --keep_old)
        check_output_file(jobs[0].output.out.parent / "index.html")
        check_replaceable(jobs[0].output.out.parent, ["index.html"], jobs[0].output.keep_old)
    made = [j.output.out for j in jobs if not j.output.out.exists()]
    ready = [j for j in jobs if attempt(j, functools.partial(check, j))]
    try:
        pipeline = load() if ready else None
    except BaseException:
        for out in made:
            if out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        raise
    reports: list[Path] = []
    for job in ready:
        assert pipeline is not None
        print(f"== {job.match.source} -> {job.output.out}/", file=sys.stderr, flush=True)
        if attempt(job, functools.partial(_run_one, pipeline, job)):
            reports.append(job.output.out / "report.html")
    root = jobs[0].output.out.parent
    if reports:  # one page linking every match's report.html
        listed = [j.output.out / "report.html" for j in index_of or ()]
        if (root / "index.html").exists() and not is_ours(root, "index.html"):
            log.warning("%s: kept the earlier index.html as %s", root, keep_aside(root / "index.html").name)
        write_index(root / "index.html", [p for p in listed if p.is_file()] or reports)
        record_files(root, ["index.html"])
    print(
        f"{len(reports)} of {len(jobs)} videos done: {root}/" + (f" (open {root}/index.html)" if reports else ""),
        file=sys.stderr,
    )
    _earlier_folders(root, jobs)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


def _earlier_folders(root: Path, jobs: Sequence[Job]) -> None:
    """One line naming the folders of `root` that earlier runs filled and this one did not (kept as they were)."""
    ours = {j.output.out.name for j in jobs}
    with contextlib.suppress(OSError):
        others = sorted(p.name for p in root.iterdir() if p.name not in ours and (p / MANIFEST).is_file())
        if others:
            log.warning(
                "%s: %s hold results of an earlier run, not of this one (not in index.html; kept as they were)",
                root,
                ", ".join(others),
            )


def _run_one(pipeline: Pipeline, job: Job) -> None:
    print(summary(*run_and_write(pipeline, job)), flush=True)
