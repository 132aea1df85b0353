"""File I/O with user-facing errors: atomic outputs (temporary name, renamed when complete), a run's set of
output files made visible together, leftovers of killed runs swept, checked JSON reads.

Temporary names carry the writing process's id (`.<stem>.<pid>.<random><suffix>`, `.partial.<pid>.<random>/`),
so a later run can tell a dead run's leftovers (removed) from a live run's files (kept).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from soccer_highlights.common.errors import UserError

log = logging.getLogger("outputs")

# errno values that mean "the write failed" whatever file the OSError names
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}
_LEFTOVER = re.compile(r"^\..+?\.(\d+)\.[a-z0-9_]{8}(\..*)?$")


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")  # numpy's tofile on a full disk: no errno


def _megabytes(size: float) -> str:
    return f"{size / 1e6:.1f} MB" if size < 1e9 else f"{size / 1e9:.2f} GB"


def _full(path: Path, exc: OSError, needed: int | None) -> str | None:
    """The system's words when `exc` means the disk of `path` is full (also numpy's short write without errno,
    when the disk has less room than the write needed), else None."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return os.strerror(exc.errno)
    if exc.errno is None and _SHORT_WRITE.match(str(exc)):
        free = _free(path)
        if free is None or free < max(needed or 0, 1 << 20):
            return os.strerror(errno.ENOSPC)
    return None


def _free(path: Path) -> int | None:
    with contextlib.suppress(OSError):
        return shutil.disk_usage(_parent(path) if not path.is_dir() else path).free
    return None


def _write_error(path: Path, exc: OSError, needed: int | None = None) -> UserError:
    if exc.errno == errno.EISDIR or path.is_dir():
        return UserError(f"{path}: is a folder, cannot write the file there")
    full = _full(path, exc, needed)
    if full is not None:  # disk full: how much room there is, and how much the file needed when that is known
        free = _free(path)
        room = f"{_megabytes(free)} free on its disk" if free is not None else "its disk is full"
        room += f", the file needs {_megabytes(needed)}" if needed else ""
        return UserError(f"{path}: cannot write ({full}): {room}")
    return UserError(f"{path}: cannot write ({exc.strerror or exc})")


def check_output_file(path: str | os.PathLike) -> Path:
    """`path` as an output file: UserError now (before any work) if a folder is in the way."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, cannot write the file there")
    return path


def _mkstemp(path: Path, suffix: str | None, directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.{os.getpid()}.", suffix=suffix or "".join(path.suffixes) or ".tmp", dir=directory
        )
    except OSError as exc:
        raise UserError(f"{directory}: cannot write here ({exc.strerror or exc})") from exc
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` if the block succeeds, else delete it.

    The temporary name keeps the final extension (or `suffix`) so tools that infer the format
    from the name (numpy, Keras, ffmpeg) still work. A failed write (full disk, read-only disk) or
    rename (a folder in the way) becomes a one-line UserError naming `path`; a full disk's says how much room
    the write `needed` (bytes, when the caller knows) and how much is free.
    """
    path = check_output_file(path)
    tmp_path = _mkstemp(path, suffix, _parent(path))
    try:
        try:
            yield tmp_path
            if tmp_path.exists():  # mkstemp makes 0600 files; give outputs the usual umask-based mode
                os.chmod(tmp_path, 0o666 & ~_umask())
        except OSError as exc:
            short = exc.errno is None and _SHORT_WRITE.match(str(exc))
            if exc.errno in _WRITE_ERRNOS or short or exc.filename in (str(tmp_path), str(path)):
                with contextlib.suppress(OSError):
                    tmp_path.unlink()  # first: the room it took is free again when the message says what is free
                raise _write_error(path, exc, needed) from exc
            raise
        try:
            os.replace(tmp_path, path)
        except OSError as exc:
            raise _write_error(path, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def sweep_leftovers(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files and folders that killed runs left in `folder` (names carrying the id of a
    process that no longer runs); return their names."""
    folder = Path(folder)
    removed = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            m = _LEFTOVER.match(entry.name)
            if m is None or _alive(int(m.group(1))):
                continue
            with contextlib.suppress(OSError):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                removed.append(entry.name)
    if removed:
        log.warning("%s: removed %s left by an interrupted run", folder, ", ".join(sorted(removed)))
    return removed


MANIFEST = ".outputs.json"  # what runs of this project wrote into a folder: the only files a later run replaces
KEEP_OLD_FLAG = "--keep_old"


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies a file's content in the record: its size and SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def recorded_files(folder: str | os.PathLike) -> dict[str, dict]:
    """The files that runs of this project wrote in `folder`, each with its fingerprint when written (empty when
    there is no record, or it is unreadable). A name that an earlier version's record lists without a fingerprint
    (`written` only) comes as `{"legacy": <the record's mtime in ns>}`: see `is_ours`."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        recorded = path.stat().st_mtime_ns
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    files = data.get("files", {})
    files = {n: f for n, f in files.items() if isinstance(f, dict)} if isinstance(files, dict) else {}
    written = data.get("written", [])
    for name in written if isinstance(written, list) else []:
        if isinstance(name, str) and name not in files:
            files[name] = {"legacy": recorded}
    return files


def is_ours(folder: str | os.PathLike, name: str, record: dict[str, dict] | None = None) -> bool:
    """`folder/name` is a file a run of this project wrote there, and its content is still what that run wrote.

    An entry of an earlier version's record (names only) counts when the file's status has not changed since the
    record was written (its ctime, which renaming or writing a file sets and no tool can set back, not after the
    record's mtime): the run that wrote the record had just put that file there. A folder entry (`record_folder`)
    counts when the folder holds nothing but files whose names the entry's patterns allow."""
    path = Path(folder) / name
    entry = (recorded_files(folder) if record is None else record).get(name)
    if entry is None or path.is_symlink():
        return False
    if "holds" in entry:
        return path.is_dir() and _holds_only(path, entry["holds"])
    if not path.is_file():
        return False
    try:
        if "legacy" in entry:
            return isinstance(entry["legacy"], int) and path.stat().st_ctime_ns <= entry["legacy"]
        if path.stat().st_size != entry.get("size"):
            return False
        return fingerprint(path) == {"size": entry.get("size"), "sha256": entry.get("sha256")}
    except OSError:
        return False


def _holds_only(path: Path, patterns: Any) -> bool:
    """`path` (a folder) holds nothing but files whose paths inside it match one of `patterns` (and leftovers of
    killed runs, swept later)."""
    if not isinstance(patterns, list):
        return False
    try:
        for entry in path.rglob("*"):
            inside = entry.relative_to(path).as_posix()
            if entry.is_dir() and not entry.is_symlink():
                continue
            if _LEFTOVER.match(entry.name) or any(fnmatch.fnmatchcase(inside, str(p)) for p in patterns):
                continue
            return False
    except OSError:
        return False
    return True


def record_folder(folder: str | os.PathLike, name: str, holds: Iterable[str]) -> None:
    """Record `folder/name` as a folder this run writes, that holds only files matching `holds` (glob patterns of
    paths inside it): files written for as long as the run lasts (event logs, checkpoints) are not fingerprinted,
    the folder is a run's while it holds nothing else (`is_ours`)."""
    folder = Path(folder)
    files = _upgraded(folder)
    files[name] = {"holds": list(holds)}
    _write_record(folder, files)


def foreign(folder: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """The `names` that exist in `folder` but are not files this project wrote there unchanged (the user's own,
    or changed since): a run must not replace or remove them."""
    folder = Path(folder)
    record = recorded_files(folder)
    return [n for n in names if os.path.lexists(folder / n) and not is_ours(folder, n, record)]


def check_replaceable(folder: str | os.PathLike, names: Iterable[str], keep_old: bool = False) -> list[str]:
    """Before any work: UserError naming the files of `names` in `folder` that no run of this project wrote (or
    that changed since), with the ways out; with `keep_old` they are returned instead (`keep_aside` moves each
    out of the way, under a visible name, when the run's outputs are put in place)."""
    others = foreign(folder, names)
    if others and not keep_old:
        raise UserError(
            f"{Path(folder)}: {', '.join(others)} {'was' if len(others) == 1 else 'were'} not written by this "
            f"project (or changed since), so this run would replace {'it' if len(others) == 1 else 'them'}: "
            f"choose another --out, or add {KEEP_OLD_FLAG} to keep the old copies as NAME.old-N.EXT"
        )
    return others


def keep_aside(path: Path) -> Path:
    """Rename `path` to `<stem>.old-N<suffix>` beside it (the first N free); return the new path."""
    name = path.name
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    for n in range(1, 10_000):
        target = path.with_name(f"{stem}.old-{n}{dot}{ext}")
        if not os.path.lexists(target):
            os.replace(path, target)
            return target
    raise UserError(f"{path}: too many old copies beside it")


def record_files(folder: str | os.PathLike, names: Iterable[str], *, only: bool = False) -> None:
    """Record `folder/name` of each of `names` as written by this run, with its fingerprint, in the folder's
    record (`only`: the record then lists these alone, the earlier entries dropped). A record that cannot be
    written is one warning (the files are in place; a later run will take them for the user's)."""
    folder = Path(folder)
    files = {} if only else _upgraded(folder)
    for name in names:
        with contextlib.suppress(OSError):
            files[name] = fingerprint(folder / name)
    _write_record(folder, files)


def _upgraded(folder: Path) -> dict[str, dict]:
    """The folder's record, its earlier version's entries fingerprinted where they still count (`is_ours`) and
    dropped where they do not."""
    files = recorded_files(folder)
    for name, entry in list(files.items()):
        if "legacy" in entry:
            files.pop(name)
            if is_ours(folder, name, {name: entry}):
                with contextlib.suppress(OSError):
                    files[name] = fingerprint(folder / name)
    return files


def _write_record(folder: Path, files: dict[str, dict]) -> None:
    try:
        write_json(folder / MANIFEST, {"written": list(files), "files": files})
    except UserError as exc:
        log.warning("%s", exc)


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_writable_folder(out: Path, names: Iterable[str] = ()) -> None:
    """The output folder can be written, or made: checked without creating it, so a run stopped before its
    outputs (an error, Ctrl-C) leaves no empty folder behind; the output set makes it when it writes. Each of
    `names` in it must be a file that can be replaced."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    parent = out.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{out}: cannot create the output folder ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(
            f"{parent}: output folder is not writable"
            if parent == out.absolute()
            else f"{out}: cannot create the output folder ({parent} is not writable)"
        )
    for name in names:
        check_output_file(out / name)


def check_apart(
    folder: str | os.PathLike,
    names: Iterable[str],
    inputs: Iterable[str | os.PathLike | None] = (),
    root: str | os.PathLike | None = None,
) -> None:
    """UserError before any work when `folder` (after symlinks) leaves `root`, or when an input file is one of
    the outputs `folder/<name>` (a run would replace or remove it)."""
    folder = Path(folder)
    if root is not None and not folder.resolve().is_relative_to(Path(root).resolve()):
        raise UserError(f"{folder}: resolves to {folder.resolve()}, outside the output folder {root}")
    outputs = [folder / n for n in (*names, MANIFEST)]
    for given in inputs:
        if given is None:
            continue
        for out in outputs:
            if _same_file(Path(given), out):
                raise UserError(
                    f"{given}: an input of this run is also its output {out.name} (it would be replaced or "
                    "removed); move it or choose another --out"
                )


def read_manifest(folder: str | os.PathLike) -> list[str]:
    """The names runs of this project recorded in `folder` (whatever their content now)."""
    return list(recorded_files(folder))


class OutputSet:
    """The files one run writes into one folder, made visible together; the folder then describes that run.

    `names` are every file this kind of run may write. `path(name)` is where this run writes `name` (inside a
    hidden staging folder `.partial.<pid>.<random>/` of the output folder). Only files that a run of this
    project wrote in that folder, and whose content is still what it wrote (`.outputs.json` records each one's
    size and SHA-256), are ever replaced or removed: any other file with an output's name is refused when the
    set is made, before any work (`check_replaceable`), or, with `keep_old`, renamed to `NAME.old-N.EXT` when
    the outputs are put in place. `commit()` renames the written files into place together (restoring the
    earlier ones if a rename fails), records them in `.outputs.json`, then removes the files of `names` this
    run did not write that an earlier run wrote, unchanged, saying so in one line (any other is kept, with a
    warning). Leaving the `with` block by an exception, Ctrl-C or SIGTERM removes the staging folder, so the
    earlier run's files stay as they were; a killed run's staging folder is swept by the next run in that
    folder. `inputs` (files the run reads) and `root` (the folder every output must stay in, after symlinks)
    are checked by `check_apart`.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        names: Iterable[str],
        *,
        inputs: Iterable[str | os.PathLike | None] = (),
        root: str | os.PathLike | None = None,
        keep_old: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.names = tuple(names)
        check_apart(self.folder, self.names, inputs, root)
        for name in self.names:
            check_output_file(self.folder / name)
        check_replaceable(self.folder, self.names, keep_old)
        sweep_leftovers(self.folder)
        self._staging: Path | None = None
        self.written: list[str] = []

    def path(self, name: str) -> Path:
        """Where this run writes output `name` (renamed to `folder/name` by `commit()`)."""
        if name not in self.names:
            raise ValueError(f"{name!r} is not one of this run's outputs {self.names}")
        if self._staging is None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._staging = Path(tempfile.mkdtemp(prefix=f".partial.{os.getpid()}.", dir=self.folder))
            except OSError as exc:
                raise UserError(f"{self.folder}: cannot write here ({exc.strerror or exc})") from exc
        if name not in self.written:
            self.written.append(name)
        return self._staging / name

    def drop(self, name: str) -> None:
        """This run will not write `name` after all (a step that failed): forget it and remove what was staged."""
        if name in self.written:
            self.written.remove(name)
            if self._staging is not None:
                (self._staging / name).unlink(missing_ok=True)

    def commit(self) -> list[str]:
        """Move every written file into place; remove the earlier run's files this run did not replace.
        Returns the removed names."""
        for name in self.written:
            check_output_file(self.folder / name)
        done: list[str] = []
        current = self.folder
        record = recorded_files(self.folder)
        aside: list[tuple[Path, Path]] = []  # (output, where the file that was there went)
        try:
            for name in self.written:
                staged, final = self.path(name), self.folder / name
                current = final
                if not staged.exists():
                    raise UserError(f"{final}: was not written")
                if os.path.lexists(final) and not is_ours(self.folder, name, record):
                    aside.append((final, keep_aside(final)))  # --keep_old, or a file put there during the run
                if final.exists():
                    os.replace(final, staged.with_name(f".old.{name}"))
                done.append(name)
                os.replace(staged, final)
        except OSError as exc:
            self._restore(done, aside)
            self.discard()
            raise _write_error(current, exc) from exc
        except BaseException:
            self._restore(done, aside)
            self.discard()
            raise
        if aside:
            log.warning("%s: kept the earlier files as %s", self.folder, ", ".join(p.name for _, p in aside))
        self._record()
        left = [n for n in self.names if n not in self.written and (self.folder / n).is_file()]
        stale = [n for n in left if is_ours(self.folder, n, record)]
        if len(stale) < len(left):
            log.warning(
                "%s: kept %s: not written by this run, nor an earlier run's file as it wrote it",
                self.folder,
                ", ".join(n for n in left if n not in stale),
            )
        for name in stale:
            try:
                (self.folder / name).unlink()
            except OSError as exc:
                raise UserError(
                    f"{self.folder / name}: this run's outputs are in place, but this file of an "
                    f"earlier run could not be removed ({exc.strerror or exc})"
                ) from exc
        if stale:
            log.warning(
                "%s: removed %s of an earlier run (this run does not write them)", self.folder, ", ".join(stale)
            )
        self.discard()
        return stale

    def _record(self) -> None:
        record_files(self.folder, self.written, only=True)

    def _restore(self, done: list[str], aside: list[tuple[Path, Path]]) -> None:
        """Put the earlier run's files back (and this run's back in staging), and the files kept aside under
        their own names, after a failed commit."""
        assert self._staging is not None
        for name in reversed(done):
            final, backup = self.folder / name, self._staging / f".old.{name}"
            with contextlib.suppress(OSError):
                if final.exists() and not (self._staging / name).exists():
                    os.replace(final, self._staging / name)
                if backup.exists():
                    os.replace(backup, final)
        for final, kept in aside:
            with contextlib.suppress(OSError):
                if not os.path.lexists(final):
                    os.replace(kept, final)

    def discard(self) -> None:
        """Remove the staging folder and everything in it."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content, or a one-line UserError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from exc


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """`array` as a .npy file, atomically; a full disk is one line saying how much room it needed."""
    with atomic_path(path, needed=array.nbytes + 128) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
