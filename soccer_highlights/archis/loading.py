"""A `.keras` file built by archis loaded with each weight read once, straight into its variable.

Keras' own loader copies the weights member out of the archive (to a temporary file or into memory), reads each
dataset into a new NumPy array, and TensorFlow copies that array again into the variable, which was first filled
by its initializer; on a machine where fresh memory costs about a second a gigabyte, a VLAD-512 model (1.08 GB)
took 9-16 s. Here the model is built from its spec with NetVLAD's variables on untouched zero pages
(`UntouchedZeros`), the weights member is memory-mapped (`common.modelfile.MappedWeights`), and each dataset's
bytes become the variable's buffer through DLPack when they are 64-byte aligned (files written through
`common.modelfile.align_weights` are), or are copied once when not. Which layer a group of datasets fills is
its path in the file, named as Keras names it: the attribute that holds a sub-layer, or, in a list of layers
(`layers/...` of the model), the item's class name in snake case with a counter; every group and every variable
must be matched and every shape agree, or `assign_weights` raises and the caller falls back to Keras' loader
(ValueError) or reports the file (UserError).
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from soccer_highlights.common.errors import UserError
from soccer_highlights.common.modelfile import MappedWeights, ModelArchive, has_non_finite

_SHAREABLE_KINDS = "fiu"


def tensor_of(array: np.ndarray) -> Any:
    """A TensorFlow tensor over `array`'s own memory when it is 64-byte aligned, contiguous and writable (no
    copy: the tensor keeps the array alive); a copy otherwise (TensorFlow aborts on unaligned foreign memory)."""
    import tensorflow as tf

    if (
        array.ctypes.data % 64 == 0
        and array.flags.c_contiguous
        and array.flags.writeable
        and array.dtype.kind in _SHAREABLE_KINDS
        and array.size
    ):
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.convert_to_tensor(array)


class UntouchedZeros(keras.initializers.Initializer):
    """Zeros on pages nobody has touched (an anonymous mapping used as the variable's buffer): a variable whose
    value the file is about to replace costs no memory traffic. Small or NumPy-less dtypes: ordinary zeros."""

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> Any:
        try:
            dt = np.dtype(keras.backend.standardize_dtype(dtype or "float32"))
        except TypeError:  # bfloat16 and the like
            return keras.ops.zeros(shape, dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if nbytes < 1 << 20:
            return keras.ops.zeros(shape, dtype)
        return tensor_of(np.frombuffer(mmap.mmap(-1, nbytes), dt).reshape(tuple(shape)))


def _snake(name: str) -> str:
    """A class name as Keras names it in a weights file (`EncoderLayer` -> `encoder_layer`)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _child(obj: Any, part: str) -> Any:
    """The object at `part` under `obj`: an attribute of a layer, or, in a list or dict of layers, the item
    Keras names `part` (its class name in snake case, `_1`, `_2`, ... for the second, third of a class;
    `container`, `container_1`, ... for nested lists)."""
    if not isinstance(obj, Mapping | list | tuple):
        return getattr(obj, part)
    used: dict[str, int] = {}
    for item in obj.values() if isinstance(obj, Mapping) else obj:
        if isinstance(item, Mapping | list | tuple):
            base = "container"
        elif hasattr(item, "load_own_variables"):
            base = _snake(type(item).__name__)
        else:
            continue
        used[base] = used.get(base, -1) + 1
        if (base if used[base] == 0 else f"{base}_{used[base]}") == part:
            return item
    raise ValueError(f"nothing named {part} in a list of layers")


def _check_shapes(where: str, layer: Any, arrays: list[np.ndarray], classes: int) -> None:
    """UserError naming the file when a leaf layer's variables and the file's arrays differ in shape (the
    classifier's width against the spec's class count said as such)."""
    weights = list(getattr(layer, "weights", []))
    if len(weights) != len(arrays):
        return  # a layer with sub-layers: Keras' own check applies
    for var, arr in zip(weights, arrays, strict=True):
        want, got = tuple(var.shape), tuple(arr.shape)
        if want == got:
            continue
        if want and got and want[-1] == classes and got[-1] != classes and want[:-1] == got[:-1]:
            raise UserError(
                f"{where}: the spec in config.json names {classes} classes but the weights of layer "
                f"{layer.name!r} give {got[-1]} outputs"
            )
        raise UserError(
            f"{where}: the weights do not fit the spec in config.json: variable {var.path} is {list(want)} in "
            f"the model the spec describes, {list(got)} in the file"
        )


def assign_weights(model: keras.Model, archive: ModelArchive) -> int:
    """Fill every variable of `model` (built from `archive`'s spec) from the file; returns the bytes used in
    place. ValueError when the file's layout is not the one expected (the caller uses Keras' loader instead);
    UserError (naming the file) for weights that are not finite or do not fit the spec."""
    weights = MappedWeights(archive)
    where = str(archive.path)
    classes = len(archive.spec.class_names) if archive.spec else -1
    objects: dict[str, Any] = {"": model}
    assigned = 0
    for path in sorted(weights.groups, key=lambda p: (p.count("/"), p)):
        group = weights.groups[path]
        if path:
            parent = max((p for p in objects if p == "" or path.startswith(p + "/")), key=len)
            obj = objects[parent]
            parts = path[len(parent) :].strip("/").split("/")
            for part in parts:
                obj = _child(obj, part)
            if not isinstance(obj, keras.layers.Layer):
                raise ValueError(f"{path} is not a layer")
            objects[path] = obj
        obj = objects[path]
        for array, name in zip(group.arrays, group.paths, strict=True):
            if has_non_finite(array):
                raise UserError(f"{where}: NaN or infinite value in weights {name} (layer {obj.name})")
        _check_shapes(where, obj, group.arrays, classes)
        obj.load_own_variables({str(i): tensor_of(a) for i, a in enumerate(group.arrays)})
        assigned += len(group.arrays)
    if assigned != len(model.weights):
        raise ValueError(f"{assigned} arrays in the file for {len(model.weights)} variables")
    return weights.mapped_bytes
