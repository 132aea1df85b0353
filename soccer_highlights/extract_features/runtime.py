"""The feature networks' CPU runtime: OpenVINO models converted once from the Keras networks and cached on disk.

On a CPU, OpenVINO runs ResNet-152 and VGGish with the same float32 maths as TensorFlow (the same features to
~1e-7) but faster, and starts in about a second from a converted model instead of rebuilding the network
and tracing it. TensorFlow stays the runtime on GPUs and on request (`--feature_runtime tensorflow`).

A converted model lives in `<cache>/openvino/<network>-<key>/` (`model.xml`, `model.bin`, `manifest.json`),
where the key is a hash of everything that makes the network compute what it computes: the network, the
hash of its weights (or the seed of random weights), the conversion recipe and OpenVINO's version. The
folder is written under a temporary name and renamed when complete; on load the manifest's hashes of both
model files are checked, so a damaged or half-written cache is rebuilt (with one warning line), never used.
The int8 models that `calibrate` writes are stored the same way, in the folder the user names.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from soccer_highlights.common.cli import FEATURE_DTYPES, FEATURE_RUNTIMES, spelled
from soccer_highlights.common.errors import UserError
from soccer_highlights.extract_features.weights import keras_home

log = logging.getLogger("extract_features")

RUNTIMES = FEATURE_RUNTIMES
COMPUTE_DTYPES = FEATURE_DTYPES
# Bumped when the conversion itself changes (inputs, preprocessing in the graph): old caches are then unused.
CONVERT_VERSION = 1
MODEL_FILES = ("model.xml", "model.bin")
_PRECISION_HINT = {"float32": "f32", "bfloat16": "bf16", "int8": "f32"}  # int8: unquantised ops stay float32


def default_runtime() -> str:
    """TensorFlow when a GPU is visible to it, OpenVINO otherwise."""
    import tensorflow as tf

    return "tensorflow" if tf.config.list_logical_devices("GPU") else "openvino"


def resolve_runtime(runtime: str | None, compute_dtype: str) -> str:
    """The runtime to use (None = the default for this machine); UserError for a precision it cannot run."""
    runtime = runtime or default_runtime()
    if runtime not in RUNTIMES:
        raise UserError(f"unknown --feature_runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if compute_dtype not in COMPUTE_DTYPES:
        raise UserError(f"unknown --feature_dtype {compute_dtype!r}; choose one of {', '.join(COMPUTE_DTYPES)}")
    if compute_dtype == "int8" and runtime != "openvino":
        raise UserError("--feature_dtype int8 runs on OpenVINO only (--feature_runtime openvino)")
    return runtime


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`--cache_dir`, else the Keras cache folder's `models/openvino`."""
    if cache_dir:
        return Path(cache_dir)

    return keras_home() / "models" / "openvino"


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file, or of every file in a folder (names and contents, in sorted order)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else "").encode())
        with open(f, "rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def arrays_digest(arrays: list[np.ndarray]) -> str:
    """sha256 of a list of arrays (shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_key(key: dict) -> str:
    """A short stable name for a key dict (the dict itself is stored in the manifest)."""
    import openvino as ov

    full = {**key, "convert": CONVERT_VERSION, "openvino": ov.get_version()}
    return hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:20]


# ---- stored models ---------------------------------------------------------------------------------------------


def load_stored(folder: Path, key: dict) -> Path | None:
    """`folder/model.xml` when the folder holds a complete model made for `key`, else None (missing or damaged)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("key") != key:
            return None
        for name in MODEL_FILES:
            if file_digest(folder / name) != manifest["files"][name]:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return folder / "model.xml"


def store(model, folder: Path, key: dict, extra: dict | None = None) -> Path:
    """Save an OpenVINO model with its manifest into `folder`, atomically (temporary folder, then rename); when
    another process (the tasks of an array job share one cache) stored the same model first, keep that one."""
    import openvino as ov

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{os.getpid()}.", dir=folder.parent))
    try:
        ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)
        files = {name: file_digest(tmp / name) for name in MODEL_FILES}
        (tmp / "manifest.json").write_text(json.dumps({"key": key, "files": files, **(extra or {})}, indent=2))
        os.chmod(tmp, 0o777 & ~_umask())
        if load_stored(folder, key):  # another process (an array task beside this one) stored it meanwhile
            return folder / "model.xml"
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not load_stored(folder, key):  # not one that another process stored just now
                raise
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the converted model ({exc.strerror or exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / "model.xml"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cached_model(name: str, key: dict, convert: Callable[[], object], cache_dir: str | os.PathLike | None) -> Path:
    """The converted model for `key` from the cache, converted with `convert()` and stored first when missing
    or damaged (a damaged one is reported in one warning line and rebuilt)."""
    folder = cache_root(cache_dir) / f"{name}-{cache_key(key)}"
    found = load_stored(folder, key)
    if found:
        return found
    if folder.exists():
        print(f"warning: {folder}: damaged or stale converted model, converting again", file=sys.stderr)
    return store(convert(), folder, key)


def int8_key(key: dict) -> dict:
    """The key of the int8 model quantised from the float32 network of `key`."""
    return {**key, "quantised": "int8"}


def load_int8(folder: str | os.PathLike | None, network: str, key: dict) -> Path:
    """The int8 model of `network` in a folder written by `calibrate`, made from these weights (else UserError)."""
    if not folder:
        raise UserError(
            spelled("--feature_dtype int8 needs --int8_model DIR, made once by `python -m extract_features calibrate`")
        )
    sub = Path(folder) / network
    found = load_stored(sub, int8_key(key))
    if found:
        return found
    try:
        stored = json.loads((sub / "manifest.json").read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        raise UserError(
            f"{folder}: no int8 {network} model here (run `{spelled('python -m extract_features')} calibrate`)"
        ) from None
    if stored != int8_key(key):
        raise UserError(f"{folder}: its int8 {network} model was calibrated for other weights; calibrate again")
    raise UserError(f"{folder}: the int8 {network} model is damaged; calibrate again")


def convert(fn):
    """An OpenVINO model from a `tf.function` with an input signature (dynamic batch)."""
    import openvino as ov

    return ov.convert_model(fn)


# ---- running -----------------------------------------------------------------------------------------------------


_BRIDGE_LOCK = threading.Lock()


def _numpy_bridge_ready() -> None:
    """Make OpenVINO's numpy bridge once, in one thread at a time. Its first use (pybind11's once-only numpy API
    lookup) deadlocks when two threads reach it together (the ResNet and the VGGish calls of one extraction run
    in two threads), so every network makes it here, before its first call."""
    import openvino as ov

    with _BRIDGE_LOCK:
        ov.Tensor(np.zeros(1, np.float32)).data  # noqa: B018 (the attribute's first read is the point)


def cpu_has_bfloat16() -> bool:
    """Whether OpenVINO computes bfloat16 on this CPU (AVX512-BF16 or AMX); without, a bfloat16 hint runs float32."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


_warned_bf16 = False


def _warn_no_bfloat16() -> None:
    global _warned_bf16
    if not _warned_bf16:
        _warned_bf16 = True
        log.warning(
            "this CPU has no bfloat16 units: OpenVINO computes the feature networks in float32 "
            "(--feature_dtype bfloat16 gives float32's features here)"
        )


class CompiledNetwork:
    """A converted network compiled for the CPU: numpy batch in, float32 numpy out (safe to call from one thread
    at a time per instance; calls are serialised by a lock)."""

    def __init__(
        self, xml: Path, compute_dtype: str = "float32", *, hint: str = "LATENCY", threads: int = 0, requests: int = 0
    ):
        import openvino as ov

        core = ov.Core()
        if compute_dtype == "bfloat16" and not cpu_has_bfloat16():
            _warn_no_bfloat16()
        config: dict[str, str | int] = {
            "INFERENCE_PRECISION_HINT": _PRECISION_HINT[compute_dtype],
            "PERFORMANCE_HINT": hint,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(core.read_model(xml), "CPU", config)
        except RuntimeError as exc:
            raise UserError(f"{xml}: OpenVINO cannot load this model ({str(exc).splitlines()[0][:200]})") from exc
        self.requests = requests or max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._queue = ov.AsyncInferQueue(self.compiled, self.requests)
        self._lock = threading.Lock()
        _numpy_bridge_ready()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """One batch; in throughput mode it is split over the requests in flight."""
        with self._lock:
            if self.requests == 1 or len(x) < 2:
                self._queue[0].infer({0: x})
                return np.array(self._queue[0].get_output_tensor(0).data, np.float32)
            parts = np.array_split(x, min(self.requests, len(x)))
            out: list = [None] * len(parts)

            def done(request, i):
                out[i] = np.array(request.get_output_tensor(0).data, np.float32)

            self._queue.set_callback(done)
            for i, part in enumerate(parts):
                self._queue.start_async({0: part}, i)
            self._queue.wait_all()
            return np.concatenate(out)

    def stream(self, calls: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """The outputs of `calls`, in order, each computed exactly as `self(call)` computes it (the same parts on
        the same requests), but with no wait between calls: a request takes the next part as soon as it is free,
        so in throughput mode the requests never wait for each other at the end of every call (with decoding and
        VGGish beside it, one request is often slowed by them while the other would idle). At most `requests`
        parts are in flight; when the caller stops early, those finish before the generator closes."""

        with self._lock:
            done: dict[int, np.ndarray] = {}
            self._queue.set_callback(lambda request, i: done.__setitem__(i, _output(request)))
            sent = given = 0  # parts started / handed on
            shapes: collections.deque[int] = collections.deque()  # parts per call, for calls not yet handed on
            try:
                for call in calls:
                    one = self.requests == 1 or len(call) < 2
                    parts = [call] if one else np.array_split(call, min(self.requests, len(call)))
                    for part in parts:
                        self._queue.start_async({0: part}, sent)  # waits for a free request (GIL released)
                        sent += 1
                    shapes.append(len(parts))
                    while shapes and all(given + k in done for k in range(shapes[0])):
                        yield np.concatenate([done.pop(given + k) for k in range(shapes[0])])
                        given += shapes.popleft()
                self._queue.wait_all()
                while shapes:
                    yield np.concatenate([done.pop(given + k) for k in range(shapes[0])])
                    given += shapes.popleft()
            finally:
                self._queue.wait_all()


def _output(request) -> np.ndarray:
    return np.array(request.get_output_tensor(0).data, np.float32)
