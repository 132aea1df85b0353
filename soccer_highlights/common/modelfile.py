"""Read a `.keras` model file without importing TensorFlow or Keras: its spec, and where its weights lie.

A model saved by `archis` keeps its spec (architecture, sizes, class names, class map, feature recipe) in the
archive's `config.json`; tools that only need those facts (evaluate.py, early input checks) read them here.

A model file is untrusted input, so every member read from the archive has a size cap: `config.json` and
`metadata.json` hold about a kilobyte (capped at `SMALL_MEMBER_CAP`), and the weights member may not exceed what
the spec's sizes imply (`weights_cap`). The spec's fields are range-checked by `ModelSpec` itself.

`weight_arrays` maps the weights (`model.weights.h5`, stored uncompressed by Keras) straight out of the file:
the file is memory-mapped copy-on-write, and each contiguous HDF5 dataset becomes a NumPy view of its bytes, so
loading reads each byte once, from the page cache, into nothing. `archis.load_model` hands those views to the
variables. `align_weights` rewrites a saved file so that every large dataset starts on a 4096-byte boundary of
the file, which is what lets TensorFlow use the mapped bytes without copying them (it requires 64-byte alignment);
the result is an ordinary `.keras` file that `keras.saving.load_model` opens as before.
"""

from __future__ import annotations

import ctypes
import io
import json
import mmap
import os
import shutil
import struct
import tempfile
import weakref
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soccer_highlights.common.errors import UserError
from soccer_highlights.common.modelspec import ModelSpec

CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
SMALL_MEMBER_CAP = 4 << 20  # config.json / metadata.json / anything else: an archis spec is about a kilobyte
ALIGN = 4096  # large datasets of an aligned file start on this boundary of the file (TensorFlow needs 64)
_ALIGN_THRESHOLD = 1 << 16  # datasets from this size on are aligned (smaller ones are copied: cheap)
_PAD_ID = 0xD935  # extra-field id that pads a zip member's local header (the one Android's zipalign uses)


def weights_cap(spec: ModelSpec) -> int:
    """The most bytes the weights member of a model with this spec can need, generously: every architecture's
    parameters are bounded by two NetVLAD projections (K x D rows of at most max(D, 1024) columns), a few dense
    layers of D x D, and the classifier, each at 8 bytes a number, plus 64 MiB of HDF5 overhead."""
    d, k, c = spec.feature_dim, spec.vlad_k, len(spec.class_names)
    numbers = 2 * (k * d * max(d, 1024) + 2 * k * d + 64 * d * d + 4 * d * c + 16 * d)
    return 8 * numbers + (64 << 20)


@dataclass(frozen=True)
class ModelArchive:
    """What a `.keras` file holds, each member checked against its cap: the parsed `config.json`, the archis spec
    (None for a Keras model not built by archis), and where the weights member's bytes lie (`weights_offset`:
    None when the member is compressed or absent)."""

    path: Path
    config: dict[str, Any]
    spec: ModelSpec | None
    weights_offset: int | None
    weights_size: int


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, path: Path) -> bytes:
    if info.file_size > cap:
        raise UserError(
            f"{path}: not a Keras model ({info.filename} is {info.file_size:,} bytes, more than the "
            f"{cap:,} it can need)"
        )
    with archive.open(info) as fh:
        data = fh.read(cap + 1)  # the declared size may lie: never read past the cap
    if len(data) > cap:
        raise UserError(f"{path}: not a Keras model ({info.filename} is larger than the {cap:,} bytes it can need)")
    return data


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int | None:
    """Byte offset of a stored member's data in the file (after its local header); None if compressed."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise UserError(f"{path}: not a Keras model (damaged zip header of {info.filename})")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > path.stat().st_size:
        raise UserError(f"{path}: not a Keras model ({info.filename} runs past the end of the file)")
    return start


def open_model(path: str | os.PathLike) -> ModelArchive:
    """The checked contents of a `.keras` file; UserError (one line naming the file) if it is missing, not a zip,
    or a member is over its cap; the spec's fields are range-checked when it is an archis model."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            if CONFIG not in members:
                raise UserError(f"{path}: not a Keras model (no {CONFIG} in the archive)")
            config = json.loads(_read_member(archive, members[CONFIG], SMALL_MEMBER_CAP, path))
            for name in sorted(set(members) - {CONFIG, WEIGHTS}):  # metadata.json, assets: Keras reads them whole
                if members[name].file_size > SMALL_MEMBER_CAP:
                    raise UserError(
                        f"{path}: not a Keras model ({name} is {members[name].file_size:,} bytes, more than the "
                        f"{SMALL_MEMBER_CAP:,} it can need)"
                    )
    except (zipfile.BadZipFile, ValueError, OSError, RuntimeError, NotImplementedError) as exc:
        raise UserError(f"{path}: not a Keras model ({' '.join(str(exc).split())[:200]})") from exc
    if not isinstance(config, dict):
        raise UserError(f"{path}: not a Keras model ({CONFIG} is not an object)")
    inner = config.get("config")
    raw = inner.get("spec") if isinstance(inner, dict) else None
    spec = ModelSpec.from_json(raw, str(path)) if isinstance(raw, dict) else None
    info = members.get(WEIGHTS)
    offset, size = (None, 0) if info is None else (_data_offset(path, info), info.file_size)
    if spec is not None and info is not None and info.file_size > weights_cap(spec):
        raise UserError(
            f"{path}: not a Keras model ({WEIGHTS} is {info.file_size:,} bytes; a model of this spec needs at "
            f"most {weights_cap(spec):,})"
        )
    return ModelArchive(path, config, spec, offset, size)


def read_spec(path: str | os.PathLike) -> ModelSpec:
    """The archis spec stored in a `.keras` file; UserError if it is missing or not an archis model."""
    archive = open_model(path)
    if archive.spec is None:
        raise UserError(f"{archive.path}: not a model built by archis (no spec in config.json)")
    return archive.spec


# ---- the weights, mapped ----------------------------------------------------------------------------------------


def map_copy_on_write(path: Path) -> np.ndarray:
    """The whole file as a writable uint8 array over a private mapping of it (writes stay in this process and
    never reach the file), its page tables filled at once from the page cache. Mapped read-only with
    MAP_POPULATE, then made writable: populating a writable private mapping would copy every page; here only
    a page written to is copied. Without MAP_POPULATE (not Linux): Python's copy-on-write mmap."""
    size = path.stat().st_size
    populate = getattr(mmap, "MAP_POPULATE", 0)
    libc = ctypes.CDLL(None, use_errno=True) if populate and size else None
    if libc is None:
        with open(path, "rb") as fh:
            return np.frombuffer(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY), np.uint8)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_PRIVATE | populate, fd, 0)
    finally:
        os.close(fd)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), f"mmap of {path} failed")
    if libc.mprotect(addr, size, mmap.PROT_READ | mmap.PROT_WRITE) != 0:
        libc.munmap(addr, size)
        raise OSError(ctypes.get_errno(), f"mprotect of {path} failed")
    buf = (ctypes.c_char * size).from_address(addr)
    weakref.finalize(buf, libc.munmap, addr, size)  # unmapped when the last array over it is gone
    return np.frombuffer(memoryview(buf).cast("B"), np.uint8)


class _Window(io.RawIOBase):
    """A read-only file over `size` bytes of a buffer from `start`: what h5py reads the file's structure through
    (only the few kilobytes of HDF5 metadata are read; the datasets are viewed in place)."""

    def __init__(self, buf: memoryview, start: int, size: int):
        super().__init__()
        self._buf, self._start, self._size, self._pos = buf, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        lo = self._start + self._pos
        view[:n] = self._buf[lo : lo + n]
        self._pos += n
        return n


@dataclass
class WeightGroup:
    """One layer's variables in the file: the layer's name (Keras records it) and its arrays, in order."""

    name: str | None
    arrays: list[np.ndarray] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


class MappedWeights:
    """The weights member of a model file, memory-mapped copy-on-write: `groups` maps each HDF5 group path that
    holds a layer's variables (`layers/net_vlad`, `layers/net_vlad/gating`, ...) to its `WeightGroup`. Contiguous
    datasets are views of the mapping (writing to them never reaches the file); small or compact ones are copies.
    `mapped_bytes` counts the bytes viewed in place."""

    def __init__(self, archive: ModelArchive):
        import h5py  # deferred: only loading weights needs it

        if archive.weights_offset is None:
            raise ValueError("weights member missing or compressed")
        self.archive = archive
        self.bytes = map_copy_on_write(archive.path)
        self.groups: dict[str, WeightGroup] = {}
        self.mapped_bytes = 0
        start, size = archive.weights_offset, archive.weights_size
        with h5py.File(_Window(self.bytes.data, start, size), "r") as h5:
            h5.visititems(lambda name, obj: self._visit(name, obj, h5py, start, size))
        for group in self.groups.values():
            order = sorted(range(len(group.paths)), key=lambda i: int(group.paths[i].rsplit("/", 1)[1]))
            group.arrays = [group.arrays[i] for i in order]
            group.paths = [group.paths[i] for i in order]
            if [int(p.rsplit("/", 1)[1]) for p in group.paths] != list(range(len(group.paths))):
                raise ValueError(f"variables of {group.name} are not numbered 0..n-1")

    def _visit(self, name: str, obj: Any, h5py: Any, start: int, size: int) -> None:
        parent, _, leaf = name.rpartition("/")
        if isinstance(obj, h5py.Group):
            if leaf == "vars":
                label = obj.attrs.get("name")
                self.groups[parent] = WeightGroup(label if isinstance(label, str) else None)
            return
        owner, _, kind = parent.rpartition("/")
        if kind != "vars" or not leaf.isdigit():
            raise ValueError(f"unexpected dataset {name}")
        group = self.groups.setdefault(owner, WeightGroup(None))
        group.arrays.append(self._array(obj, h5py, start, size, name))
        group.paths.append(name)

    def _array(self, ds: Any, h5py: Any, start: int, size: int, name: str) -> np.ndarray:
        dtype = ds.dtype
        if dtype.kind not in "biuf" or dtype.byteorder == ">" or ds.shape is None:
            raise ValueError(f"{name}: unsupported dtype {dtype}")
        nbytes = int(np.prod(ds.shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > size:
            raise ValueError(f"{name}: {nbytes} bytes in a {size}-byte member")
        offset = ds.id.get_offset()
        plist = ds.id.get_create_plist()
        contiguous = plist.get_layout() == h5py.h5d.CONTIGUOUS and plist.get_nfilters() == 0
        if offset is None or not contiguous or nbytes < 4096:
            if nbytes > _ALIGN_THRESHOLD and not contiguous:
                raise ValueError(f"{name}: chunked or filtered dataset")
            return np.array(ds[()], dtype=dtype).reshape(ds.shape)
        if offset + nbytes > size:
            raise ValueError(f"{name}: data past the end of the member")
        self.mapped_bytes += nbytes
        return self.bytes[start + offset : start + offset + nbytes].view(dtype).reshape(ds.shape)


def has_non_finite(array: np.ndarray) -> bool:
    """True when `array` holds a NaN or an infinity; reads the array once and allocates nothing of its size
    (a float sum is finite unless a value is not, or the sum overflows, which the exact check then tells apart)."""
    if array.dtype.kind != "f" or not array.size:
        return False
    if np.isfinite(array.sum(dtype=np.float64 if array.dtype.itemsize < 4 else array.dtype)):
        return False
    flat = array.reshape(-1)
    step = 1 << 20
    return any(not np.isfinite(flat[i : i + step]).all() for i in range(0, flat.size, step))


# ---- writing aligned files --------------------------------------------------------------------------------------


def _copy_h5(src: Any, dst: Any) -> None:
    """Every group, dataset and attribute of `src` into `dst`, datasets in blocks of about 16 MB (a training
    process saving its model holds no second copy of a projection)."""
    import h5py

    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for name, obj in src.items():
        if isinstance(obj, h5py.Group):
            _copy_h5(obj, dst.create_group(name))
            continue
        out = dst.create_dataset(name, shape=obj.shape, dtype=obj.dtype)
        if obj.ndim == 0:
            out[()] = obj[()]
        elif obj.size:
            rows = max(1, (16 << 20) // max(1, obj.nbytes // obj.shape[0]))
            for lo in range(0, obj.shape[0], rows):
                out[lo : lo + rows] = obj[lo : lo + rows]
        for key, value in obj.attrs.items():
            out.attrs[key] = value


def _padded_info(name: str, header_offset: int, template: zipfile.ZipInfo, zip64: bool) -> zipfile.ZipInfo:
    """A ZipInfo whose local header ends on an ALIGN boundary when written at `header_offset` (zipfile appends a
    20-byte zip64 field to the extra data of a member written with `force_zip64`)."""
    info = zipfile.ZipInfo(name, date_time=template.date_time)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = template.external_attr
    bare = header_offset + 30 + len(name.encode()) + (20 if zip64 else 0)
    pad = (-(bare + 4)) % ALIGN
    info.extra = struct.pack("<HH", _PAD_ID, pad) + bytes(pad)
    return info


def align_weights(path: str | os.PathLike) -> bool:
    """Rewrite the `.keras` file at `path` in place (through a temporary file and a rename) so that its weights
    member starts on an ALIGN boundary and every dataset of 64 KiB or more inside it does too. The members and
    their content are unchanged; False (file left as it was) when it has no weights member."""
    import h5py

    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        if WEIGHTS not in names:
            return False
        zip64 = archive.getinfo(WEIGHTS).file_size > 0.9 * zipfile.ZIP64_LIMIT  # zipfile's own rule, with margin
        fd, tmp_name = tempfile.mkstemp(prefix=".align-", suffix=".keras", dir=path.parent)
        os.close(fd)
        tmp, h5_tmp = Path(tmp_name), Path(tmp_name + ".h5")
        try:
            with archive.open(WEIGHTS) as fh, h5py.File(fh, "r") as src:
                kwargs = {"alignment_threshold": _ALIGN_THRESHOLD, "alignment_interval": ALIGN}
                with h5py.File(h5_tmp, "w", **kwargs) as dst:
                    _copy_h5(src, dst)
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as out:
                for info in infos:
                    if info.filename == WEIGHTS:
                        continue
                    out.writestr(info, archive.read(info))
                assert out.fp is not None  # open for writing
                header = _padded_info(WEIGHTS, out.fp.tell(), infos[0], zip64)
                with open(h5_tmp, "rb") as fh, out.open(header, "w", force_zip64=zip64) as w:
                    shutil.copyfileobj(fh, w, 16 << 20)
            os.chmod(tmp, path.stat().st_mode & 0o7777)  # the file's own mode, not mkstemp's 0600
            os.replace(tmp, path)
        finally:
            for p in (tmp, h5_tmp):
                p.unlink(missing_ok=True)
    return True


def dataset_alignment(path: str | os.PathLike) -> Iterator[tuple[str, int]]:
    """(dataset path, its byte offset in the file modulo ALIGN) for each contiguous dataset of the weights member
    of 64 KiB or more; every residue 0 means TensorFlow can use the mapped bytes as they are."""
    weights = MappedWeights(open_model(path))
    base = weights.bytes.ctypes.data
    for group in weights.groups.values():
        for array, name in zip(group.arrays, group.paths, strict=True):
            if array.nbytes >= _ALIGN_THRESHOLD and array.base is not None:
                yield name, (array.ctypes.data - base) % ALIGN
