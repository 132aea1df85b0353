"""Video features: Keras ResNet-152 (ImageNet, no top, global average pooling) on 224 x 224 RGB frames -> 2048-d.

SoccerNet's ResNET_TF2 features took the `avg_pool` output of the full ImageNet model: the same vector as
`include_top=False, pooling="avg"`. Frames are preprocessed in-graph with Keras' `resnet.preprocess_input`
("caffe": RGB -> BGR, ImageNet mean subtracted, no scaling).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras.applications import resnet

from common.errors import UserError
from extract_features.decode import SIZE
from extract_features.weights import assign_random, download_or_fail

FEATURE_DIM = 2048
NOTOP_FILE = "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5"
COMPUTE_DTYPES = ("float32", "bfloat16")


@contextlib.contextmanager
def dtype_policy(compute_dtype: str):
    """Build layers under `mixed_bfloat16` (float32 variables, bfloat16 maths) without leaking the global policy."""
    if compute_dtype not in COMPUTE_DTYPES:
        raise UserError(f"unknown compute dtype {compute_dtype!r}; choose one of {', '.join(COMPUTE_DTYPES)}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if compute_dtype == "bfloat16" else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def imagenet_weights() -> Path:
    """The ImageNet no-top weights from the Keras cache (downloaded once, hash-checked)."""
    from keras.src.applications.resnet import BASE_WEIGHTS_PATH, WEIGHTS_HASHES

    return download_or_fail(NOTOP_FILE, BASE_WEIGHTS_PATH + NOTOP_FILE, what="ResNet-152 ImageNet weights",
                            flag="--resnet_weights", file_hash=WEIGHTS_HASHES["resnet152"][1])


class ResNetEmbedder:
    """uint8 frames [B, 224, 224, 3] -> float32 [B, 2048]."""

    def __init__(self, weights: str = "imagenet", *, resnet_weights: str | os.PathLike | None = None,
                 compute_dtype: str = "float32", seed: int = 0):
        if resnet_weights is not None:
            path = Path(resnet_weights)
            if not path.is_file():
                raise UserError(f"{path}: no such ResNet-152 weights file")
            self.source = f"file:{path}"
        elif weights == "imagenet":
            path = imagenet_weights()
            self.source = "imagenet"
        elif weights == "random":
            path = None
            self.source = "random"
        else:
            raise UserError(f"unknown --weights {weights!r}; choose imagenet or random (or give --resnet_weights)")
        self.compute_dtype = compute_dtype
        with dtype_policy(compute_dtype):
            self.model = resnet.ResNet152(include_top=False, weights=None, pooling="avg",
                                          input_shape=(SIZE, SIZE, 3))
        if path is None:
            assign_random(self.model, seed)
        else:
            try:
                self.model.load_weights(str(path))
            except (ValueError, OSError) as exc:
                raise UserError(f"{path}: not ResNet-152 no-top weights ({str(exc).splitlines()[0][:200]})") from exc
        spec = tf.TensorSpec([None, SIZE, SIZE, 3], tf.uint8)
        self._call = tf.function(self._forward, input_signature=[spec])

    def _forward(self, frames):
        x = resnet.preprocess_input(tf.cast(frames, tf.float32))
        return tf.cast(self.model(x, training=False), tf.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if len(frames) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        return self._call(tf.constant(frames)).numpy()
