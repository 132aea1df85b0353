"""A clean first screen: TensorFlow's C++ start-up lines hidden unless asked for.

Importing TensorFlow and initialising its devices prints lines straight to file descriptor 2 from C++
(absl's "All log messages before absl::InitializeLog()", oneDNN and CPU-instruction notes, and on every
machine without a GPU "failed call to cuInit: ... CUDA error"), which Python cannot filter. `import_tensorflow`
points fd 2 at a temporary file for exactly that step; if the step fails, what was hidden is written out
before the exception goes on, so real errors are still seen. `verbose=True` (the CLIs' `--verbose`) shows
everything.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType

# Packages that importing TensorFlow (through Keras) pulls in only for helpers this project never calls: Keras'
# scikit-learn wrappers, image-gallery plots and bounding-box drawing, each imported under `except ImportError`.
# They cost ~4 s of a 16 s `import keras` on the 2-core machine (scikit-learn 2.6 s, matplotlib.pyplot 1.5 s),
# so they are hidden for that one step; a later import (the timeline's matplotlib) loads them as usual.
KERAS_OPTIONAL = ("sklearn", "matplotlib", "cv2")


class _Hidden(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is not imported while TensorFlow starts", name=fullname)
        return None


@contextlib.contextmanager
def packages_hidden(names: Sequence[str]) -> Iterator[None]:
    """Within the block, importing any of `names` (not yet imported) raises ModuleNotFoundError."""
    finder = _Hidden({n for n in names if n not in sys.modules})
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


@contextlib.contextmanager
def stderr_hidden(enabled: bool = True) -> Iterator[None]:
    """Send fd 2 (C, C++ and Python writes alike) to a temporary file; replay it if the body raises."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow(verbose: bool = False) -> ModuleType:
    """TensorFlow, imported and with its devices listed (the step that logs cuInit), start-up lines hidden
    unless `verbose`. Later C++ info and warning lines are hidden too (TF_CPP_MIN_LOG_LEVEL=2 unless set)."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with stderr_hidden(not verbose), packages_hidden(KERAS_OPTIONAL):
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf
