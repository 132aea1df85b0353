"""Video features: an ImageNet backbone (ResNet-152) on 224 x 224 frames -> one 2048-d vector per token.

`BACKBONE` is the one place that names the network: how to build it, its input size, its preprocessing,
its output width and where its weights come from; swapping ResNet-152 for another Keras application means
a new `Backbone` there. SoccerNet's ResNET_TF2 features took the `avg_pool` output of the full ImageNet
ResNet-152: the same vector as `include_top=False, pooling="avg"`. Frames are preprocessed in-graph with
Keras' `resnet.preprocess_input` ("caffe": channels reversed, ImageNet mean subtracted, no scaling). That
function expects RGB; the `soccernet` recipe hands it BGR frames, exactly as SoccerNet's extraction did.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from soccer_highlights.common.errors import UserError
from soccer_highlights.common.inputs import check_finite_weights
from soccer_highlights.extract_features import runtime as rt
from soccer_highlights.extract_features.call_plan import FIXED_CALL, MAX_CALL, CallPlan, plan_for
from soccer_highlights.extract_features.decode import SIZE
from soccer_highlights.extract_features.runtime import file_digest
from soccer_highlights.extract_features.weights import assign_random, download_or_fail

TF_COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class Backbone:
    """An ImageNet network with global average pooling: everything the extractor needs to know about it."""

    name: str
    build: Callable[[tuple[int, int, int]], keras.Model]  # input shape -> model [B, H, W, 3] -> [B, width]
    preprocess: Callable  # float32 frames (0-255) -> network input
    input_size: int
    width: int
    weights_file: str  # ImageNet no-top weights, cached in $KERAS_HOME/models
    weights_url: str
    weights_md5: str


RESNET152 = Backbone(
    name="ResNet-152",
    build=lambda shape: keras.applications.ResNet152(include_top=False, weights=None, pooling="avg", input_shape=shape),
    preprocess=keras.applications.resnet.preprocess_input,
    input_size=224,
    width=2048,
    weights_file="resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
    weights_url="https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    "resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5",
    weights_md5="ee4c566cf9a93f14d82f913c2dc6dd0c",
)
BACKBONE = RESNET152
assert BACKBONE.input_size == SIZE, "the decoder's frame size must be the backbone's input size"


@contextlib.contextmanager
def dtype_policy(compute_dtype: str):
    """Build layers under `mixed_bfloat16` (float32 variables, bfloat16 maths) without leaking the global policy."""
    if compute_dtype not in TF_COMPUTE_DTYPES:
        raise UserError(f"unknown compute dtype {compute_dtype!r}; choose one of {', '.join(TF_COMPUTE_DTYPES)}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if compute_dtype == "bfloat16" else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def imagenet_weights(backbone: Backbone = BACKBONE) -> Path:
    """The backbone's ImageNet no-top weights from the Keras cache (downloaded once, hash-checked)."""
    return download_or_fail(
        backbone.weights_file,
        backbone.weights_url,
        what=f"{backbone.name} ImageNet weights",
        flag="--resnet_weights",
        file_hash=backbone.weights_md5,
    )


class FrameEmbedder:
    """uint8 frames [B, 224, 224, 3] (in the recipe's channel order) -> float32 [B, backbone width].

    `runtime` "openvino" runs the network converted once and cached (see extract_features/runtime.py; on a
    cache hit the Keras network is never built), "tensorflow" runs the Keras network; None picks OpenVINO on
    a CPU and TensorFlow on a GPU. `int8_model` is the folder `calibrate` wrote (needed for int8).
    """

    def __init__(
        self,
        weights: str = "imagenet",
        *,
        resnet_weights: str | os.PathLike | None = None,
        compute_dtype: str = "float32",
        seed: int = 0,
        backbone: Backbone = BACKBONE,
        runtime: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        int8_model: str | os.PathLike | None = None,
    ):
        self.backbone = backbone
        self.path = self._weights_path(weights, resnet_weights)
        self.seed = seed
        self.compute_dtype = compute_dtype
        self.runtime = rt.resolve_runtime(runtime, compute_dtype)
        self.on_gpu = bool(tf.config.list_logical_devices("GPU"))
        self.plan: CallPlan | None = None
        self._given: CallPlan | None = None  # the plan the last set_call_plan was given (None: measured)
        if self.runtime == "tensorflow":
            self._call = self.keras_function(compute_dtype)
            return
        if compute_dtype == "int8":
            xml = rt.load_int8(int8_model, "resnet", self.cache_key())
        else:
            xml = rt.cached_model("resnet152", self.cache_key(), lambda: rt.convert(self.keras_function()), cache_dir)
        self.xml = xml
        self._network: rt.CompiledNetwork | None = None  # compiled by its call plan, on first need

    def cache_key(self) -> dict:
        """What the converted network depends on: the backbone, its weights (hash, or the random seed), the input."""

        weights = f"random:{self.seed}" if self.path is None else f"sha256:{file_digest(self.path)}"
        return {"network": self.backbone.name, "weights": weights, "input": "uint8 frames, preprocess in graph"}

    def keras_function(self, compute_dtype: str = "float32"):
        """The Keras network with its weights, as a traced-on-first-call function of uint8 frames."""
        size = self.backbone.input_size
        with dtype_policy(compute_dtype):
            model = self.backbone.build((size, size, 3))
        if self.path is None:
            assign_random(model, self.seed)
        else:
            try:
                model.load_weights(str(self.path))
            except (ValueError, OSError) as exc:
                raise UserError(
                    f"{self.path}: not {self.backbone.name} no-top weights ({str(exc).splitlines()[0][:200]})"
                ) from exc
            check_finite_weights(model, str(self.path))

        def forward(frames):
            x = self.backbone.preprocess(tf.cast(frames, tf.float32))
            return tf.cast(model(x, training=False), tf.float32)

        spec = tf.TensorSpec([None, size, size, 3], tf.uint8)
        return tf.function(forward, input_signature=[spec])

    def _weights_path(self, weights: str, resnet_weights: str | os.PathLike | None) -> Path | None:
        """Where the weights come from (None = seeded random); sets `source`, recorded in extraction.json."""
        if resnet_weights is not None:
            path = Path(resnet_weights)
            if not path.is_file():
                raise UserError(f"{path}: no such {self.backbone.name} weights file")
            self.source = f"file:{path}"
            return path
        if weights == "imagenet":
            self.source = "imagenet"
            return imagenet_weights(self.backbone)
        if weights == "random":
            self.source = "random"
            return None
        raise UserError(f"unknown --weights {weights!r}; choose imagenet or random (or give --resnet_weights)")

    def set_call_plan(self, frames_per_call: int | None = None) -> CallPlan:
        """Fix how the network is called on a CPU and return the plan: `frames_per_call` given, calls of that
        many frames (at most MAX_CALL) with the latency hint; None, the plan measured once on this machine
        (OpenVINO, `extract_features.call_plan`) or calls of FIXED_CALL (TensorFlow). Called again with the
        same argument it keeps the plan it has."""
        given = None if frames_per_call is None else CallPlan(frames=min(frames_per_call, MAX_CALL))
        # None after a given size goes back to the machine's plan: the network is shared by every extraction
        # of a process, and one run's --frames_per_call must not stay for the next
        if self.plan is not None and given == self._given:
            return self.plan
        self._given = given

        size = self.backbone.input_size
        if given is not None or self.runtime != "openvino":
            self.plan = given or CallPlan(frames=FIXED_CALL)
        else:
            compile_net = functools.partial(rt.CompiledNetwork, self.xml, self.compute_dtype)
            compile_plan = lambda h, r: compile_net(hint=h, requests=r)  # noqa: E731
            self.plan = plan_for(self.xml.parent, self.compute_dtype, compile_plan, (size, size, 3), self.backbone.name)
        if self.runtime == "openvino":
            self._network = rt.CompiledNetwork(
                self.xml, self.compute_dtype, hint=self.plan.hint, requests=self.plan.requests
            )
        return self.plan

    def stream(self, calls: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """`self(call)` for each call of `calls`, in order; on OpenVINO the calls are pipelined over the plan's
        requests (`runtime.CompiledNetwork.stream`: the same features, no wait at the end of every call). Empty
        calls are skipped."""
        if self.runtime != "openvino":
            yield from (self(frames) for frames in calls if len(frames))
            return
        if self._network is None:
            self.set_call_plan()
        assert self._network is not None
        uint8 = (np.ascontiguousarray(frames, np.uint8) for frames in calls if len(frames))
        yield from self._network.stream(uint8)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if len(frames) == 0:
            return np.zeros((0, self.backbone.width), np.float32)
        if self.runtime == "openvino":
            if self._network is None:
                self.set_call_plan()
            assert self._network is not None
            return self._network(np.ascontiguousarray(frames, np.uint8))
        return self._call(tf.constant(frames)).numpy()
