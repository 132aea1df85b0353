"""Batch extraction over a SoccerNet-layout tree or a list of videos: shards, resume, one failure never stops the rest.

SoccerNet video names: `1_224p.mkv` / `2_224p.mkv` (the low-quality release, what SoccerNet's ResNET_TF2
features were computed from), `1_720p.mkv`, older `1.mkv`, V&D's `1_HQ.mkv`. When a game folder has
several, `quality` picks (default: 224p first). Features go next to each half (or under `out_root`,
mirroring the tree). A half is skipped when extraction.json records it with the same settings and its
files exist; files are written atomically and the record last, so a killed run redoes only the half it was
on. Shards split by game folder (both halves of a game in one shard: no two machines touch one folder).
A half that fails is recorded in its folder's `extraction_errors.json` (removed once it succeeds), so
`summary` can say, across every shard, which games are done, failed (and why) or not yet extracted.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from soccer_highlights.common.atomic import check_apart, write_json
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.features import read_record
from soccer_highlights.common.names import safe_name
from soccer_highlights.common.shards import resolve_shard, take_shard
from soccer_highlights.extract_features.pipeline import ExtractConfig, Extractor, is_done, write_outputs

ERRORS_FILE = "extraction_errors.json"

# The one list of file extensions taken for videos (folders given to inference.py, SoccerNet trees).
VIDEO_EXTENSIONS = ("mp4", "mkv", "avi", "mov", "webm", "ts", "m4v", "mpg", "mpeg")
VIDEO_NAME = re.compile(
    rf"^(?P<half>[12])(?:_(?P<quality>224p|720p|HQ|LQ))?\.(?:{'|'.join(VIDEO_EXTENSIONS)})$", re.IGNORECASE
)
QUALITY_ORDER = ("224p", "", "LQ", "720p", "HQ")


@dataclass(frozen=True)
class Job:
    video: Path
    out_dir: Path
    prefix: str


def _quality_rank(quality: str | None, preferred: str | None) -> tuple[int, int]:
    q = quality or ""
    return (
        0 if preferred is not None and q.lower() == preferred.lower() else 1,
        QUALITY_ORDER.index(q) if q in QUALITY_ORDER else len(QUALITY_ORDER),
    )


def tree_jobs(root: str | Path, *, out_root: str | Path | None = None, quality: str | None = None) -> list[Job]:
    """One job per (game folder, half) holding a SoccerNet-named video, best quality first."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder")
    best: dict[tuple[Path, str], tuple[tuple[int, int], Path]] = {}
    for video in sorted(root.rglob("*")):
        m = VIDEO_NAME.match(video.name)
        if not m or not video.is_file():
            continue
        key = (video.parent, m.group("half"))
        rank = _quality_rank(m.group("quality"), quality)
        if key not in best or rank < best[key][0]:
            best[key] = (rank, video)
    jobs = []
    for (folder, half), (_, video) in sorted(best.items()):
        out_dir = Path(out_root) / folder.relative_to(root) if out_root else folder
        jobs.append(Job(video, out_dir, half))
    if not jobs:
        raise UserError(f"{root}: no SoccerNet videos found (names like 1_224p.mkv, 2_720p.mkv, 1.mkv)")
    return jobs


def is_video(path: Path) -> bool:
    """True when the file name has one of VIDEO_EXTENSIONS (any case)."""
    return path.suffix[1:].lower() in VIDEO_EXTENSIONS


def read_video_list(list_path: str | Path) -> list[tuple[int, Path]]:
    """(line number, video path) of a .txt list: one path a line, relative to the list's folder; blank lines and
    `#` comments skipped, Windows line ends accepted. The videos are not checked here."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise UserError(f"{list_path}: no such list file")
    out = []
    for n, line in enumerate(list_path.read_text().splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            out.append((n, Path(line) if Path(line).is_absolute() else list_path.parent / line))
    return out


def expand_inputs(items: list[str]) -> list[Path]:
    """Videos named by command-line inputs: a video file, a folder (its video files, sorted; not recursive) or a
    .txt list. UserError for a missing file or list, or a folder without videos; listed videos are not checked."""
    videos: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and is_video(p))
            if not found:
                raise UserError(f"{item}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
            videos += found
        elif item.suffix.lower() == ".txt":
            listed = [video for _, video in read_video_list(item)]
            if not listed:
                raise UserError(f"{item}: the list names no videos")
            videos += listed
        elif not item.is_file():
            raise UserError(f"{item}: no such file")
        else:
            videos.append(item)
    return videos


def feature_home(video: Path) -> tuple[Path, str]:
    """(folder, file prefix) where a listed video's features go: a SoccerNet name (`1_224p.mkv`) writes into its
    own folder with its half as prefix, any other name into `<folder>/<stem>/` with prefix 1 (the stem made a
    safe folder name: `...mp4` writes into `<folder>/video/`, never beside its folder)."""

    m = VIDEO_NAME.match(video.name)
    return (video.parent, m.group("half")) if m else (video.parent / safe_name(video.stem), "1")


def list_jobs(list_path: str | Path, *, out_root: str | Path | None = None) -> list[Job]:
    """A .txt of video paths (relative to the list's folder). SoccerNet names write into their folder with
    their half as prefix; any other name gets its own folder `<stem>/` with prefix 1."""
    list_path = Path(list_path)
    base = list_path.parent
    jobs = []
    for n, video in read_video_list(list_path):
        folder, prefix = feature_home(video)
        if out_root:
            rel = folder.relative_to(base) if folder.is_relative_to(base) else Path(folder.name)
            folder = Path(out_root) / rel
        jobs.append(Job(video, folder, prefix))
        if not video.exists():
            raise UserError(f"{list_path}:{n}: {video}: no such file")
    if not jobs:
        raise UserError(f"{list_path}: no videos listed")
    return jobs


def shard(jobs: list[Job], num_shards: int, shard_index: int) -> list[Job]:
    """The jobs of shard `shard_index` of `num_shards`, split by output folder (see common.shards)."""

    num_shards, shard_index = resolve_shard(num_shards, shard_index, env={})
    return take_shard(jobs, num_shards, shard_index, key=lambda j: j.out_dir)


def check_outputs_apart(job: Job, config: ExtractConfig, overwrite: bool = False) -> None:
    """UserError before any work when an input of the job (its video, the PCA, the weights files) is one of the
    files it writes (a video named `1_VGGish.npy` in --out was replaced by its own features), or a file it writes
    is there and no extraction wrote it (`check_ours`; `overwrite`: replace it)."""

    names = [*config.file_names(job.prefix).values(), "extraction.json"]
    check_apart(job.out_dir, names, [job.video, config.pca, config.resnet_weights, config.vggish])
    check_ours(job.out_dir, list(config.file_names(job.prefix).values()), overwrite)


def check_ours(out_dir: Path, names: list[str], overwrite: bool) -> None:
    """UserError before any work when a file the job writes is already in `out_dir` but no extraction recorded it
    there (extraction.json does not list it): the user's own file, or features another tool made (SoccerNet's
    released `1_ResNET_TF2_PCA512.npy` in a game folder), which the job would replace. `overwrite`: replace."""
    if overwrite:
        return
    record = read_record(out_dir) or {}
    halves = record.get("halves") if isinstance(record.get("halves"), dict) else {}
    listed = {
        str(f)
        for h in (halves or {}).values()
        if isinstance(h, dict) and isinstance(h.get("files"), dict)
        for f in h["files"].values()
    }
    others = [n for n in names if os.path.lexists(out_dir / n) and n not in listed]
    if others:
        raise UserError(
            f"{out_dir}: {', '.join(others)} {'is' if len(others) == 1 else 'are'} not recorded in extraction.json "
            "as written by an extraction, so this run would replace "
            f"{'it' if len(others) == 1 else 'them'}: choose another --out, or --overwrite to replace "
            f"{'it' if len(others) == 1 else 'them'}"
        )


def remove_stale_temporaries(out_dir: Path, config: ExtractConfig, prefix: str) -> None:
    """Temporary files a killed run left (`.<name>.<random><ext>`, see common.atomic)."""
    for name in [*config.file_names(prefix).values(), "extraction.json", ERRORS_FILE]:
        stem = Path(name).stem
        for stale in out_dir.glob(f".{stem}.*"):
            with contextlib.suppress(OSError):
                stale.unlink()


def run_batch(
    jobs: list[Job],
    config: ExtractConfig,
    *,
    overwrite: bool = False,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Extract every job not already done; returns counts {"done", "skipped", "failed"}."""
    from tqdm import tqdm

    counts = {"done": 0, "skipped": 0, "failed": 0}
    failures: list[str] = []
    extractor = None  # built on the first job that needs it: a fully resumed run never loads TensorFlow
    bar = tqdm(jobs, desc="videos", unit="video", disable=not progress, dynamic_ncols=True)
    for job in bar:
        remove_stale_temporaries(job.out_dir, config, job.prefix)
        if not overwrite and is_done(job.out_dir, job.prefix, config):
            counts["skipped"] += 1
            continue
        try:
            extractor = extractor or Extractor(config)
            result = extractor.run(job.video, batch_size=batch_size, progress=progress)
            write_outputs(job.out_dir, job.prefix, result, config)
        except UserError as exc:
            counts["failed"] += 1
            failures.append(str(exc))
            print(f"error: {exc}", file=sys.stderr)
            record_error(job.out_dir, job.prefix, str(exc))
            continue
        record_error(job.out_dir, job.prefix, None)
        counts["done"] += 1
        bar.set_postfix_str(f"{result.extra['tokens'] / max(result.extra['seconds'], 1e-9):.1f} tokens/s")
    if failures:
        raise UserError(f"{len(failures)} of {len(jobs)} videos failed (first: {failures[0]})")
    return counts


def read_errors(out_dir: Path) -> dict[str, str]:
    """{half prefix: error line} of the halves that failed in `out_dir` (empty when none or unreadable)."""
    import json

    try:
        errors = json.loads((out_dir / ERRORS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return errors if isinstance(errors, dict) else {}


def record_error(out_dir: Path, prefix: str, error: str | None) -> None:
    """Record (or, with None, clear) the failure of one half; the file goes once no half has failed."""
    errors = read_errors(out_dir)
    if error is None and prefix not in errors:
        return
    errors.pop(prefix, None)
    if error is not None:
        errors[prefix] = error.splitlines()[0] if error else "failed"
    if errors:
        write_json(out_dir / ERRORS_FILE, errors)
    else:
        with contextlib.suppress(OSError):
            (out_dir / ERRORS_FILE).unlink()


def _half_state(job: Job, config: ExtractConfig) -> str:
    try:
        if is_done(job.out_dir, job.prefix, config):
            return "done"
    except UserError:
        return "other settings"
    return "failed" if job.prefix in read_errors(job.out_dir) else "missing"


def summary(jobs: list[Job], config: ExtractConfig, *, root: Path | None = None) -> tuple[str, bool]:
    """(report, every half done) over all `jobs` (every shard): a count line, then one line per game that is
    not done saying which halves failed (with their error line) or are missing."""
    games: dict[Path, list[tuple[Job, str]]] = {}
    for job in jobs:
        games.setdefault(job.out_dir, []).append((job, _half_state(job, config)))
    counts = {"done": 0, "failed": 0, "missing": 0}
    lines = []
    for folder, halves in games.items():
        name = folder.relative_to(root) if root and folder.is_relative_to(root) else folder
        states = {state for _, state in halves}
        state = "done" if states == {"done"} else "failed" if "failed" in states else "missing"
        counts[state] += 1
        errors = read_errors(folder)
        for job, half_state in halves:
            if half_state == "failed":
                lines.append(f"failed   {name}  half {job.prefix}: {errors[job.prefix]}")
            elif half_state != "done":
                lines.append(f"{half_state:<8} {name}  half {job.prefix} ({job.video.name})")
    head = f"{len(games)} games: {counts['done']} done, {counts['failed']} failed, {counts['missing']} missing"
    return "\n".join([head, *lines]), counts["done"] == len(games)
