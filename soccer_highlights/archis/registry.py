"""The architectures, each composed from the pooling and fusion blocks in a few lines.

One table maps canonical names and the original V&D / seed names (case-insensitive) to builders.
A builder gets a `Blocks` (the model's spec bound to layer factories) and the two symbolic inputs,
and returns float32 logits [B, C].

Each architecture follows the code it comes from: V&D's (TF1) trained with dropout 0.4 (`keep_prob`
0.6) and context gating after pooling; the seed's fusion models (PyTorch) use dropout 0.5 (0.6 before
the transformer's classifier) and build their poolings without context gating. `default_dropout`
gives that figure (`--dropout` overrides it), `default_gating` the gating.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
from keras import ops

from soccer_highlights.archis.dropout import KeyedDropout
from soccer_highlights.archis.fusion import CMGA, GMU, BottleneckFusion, GatedBottleneck, TransformerFusion
from soccer_highlights.archis.names import (
    ARCHITECTURE_NAMES,
    BATCH_NORMS,
    UNBIASED_VARIANCE,
)
from soccer_highlights.archis.pooling import make_pooling
from soccer_highlights.common.modelspec import ModelSpec


@dataclass
class Blocks:
    """Layer factories bound to one model spec, so builders only say what connects to what."""

    spec: ModelSpec
    policy: str
    _used: set = field(default_factory=set)

    @property
    def dim(self) -> int:
        return self.spec.feature_dim

    def _name(self, name: str) -> str:
        if name in self._used:
            raise ValueError(f"layer name {name!r} used twice")  # builder bug, not a user error
        self._used.add(name)
        return name

    def pool(self, x, name: str, *, output_dim: int | None = None):
        """The spec's pooling over time; output size `output_dim` (default D) for the VLAD family, with context
        gating after it when the spec says so (V&D's architectures; not the seed's fusion models)."""
        layer = make_pooling(
            self.spec.pooling,
            vlad_k=self.spec.vlad_k,
            output_dim=output_dim or self.dim,
            context_gating=bool(self.spec.context_gating),
            batch_norm=BATCH_NORMS[self.spec.batch_norm or "keras"],
            bn_eval=self.spec.bn_eval or "moving",
            unbiased_variance=(self.spec.batch_norm or "keras") in UNBIASED_VARIANCE,
            l2_floor=self.spec.l2_floor or "squared",
            dtype=self.policy,
            layer_name=self._name(name),
        )
        return layer(x)

    def dropout(self, x, name: str):
        """Dropout before the classifier at the spec's rate (the original's for this architecture by default)."""
        return KeyedDropout(float(self.spec.dropout or 0.0), dtype=self.policy, name=self._name(name))(x)

    def classify(self, x, name: str = "logits"):
        """Final dense layer, always float32 so logits stay float32 under mixed precision. Initialised as the
        original's: Glorot-uniform and zero bias (TF1's fully_connected) or PyTorch's nn.Linear (`head_init`)."""
        init = {}
        if self.spec.head_init == "torch":
            bound = 1.0 / math.sqrt(int(x.shape[-1]))
            init = {  # one object each: a shared one would start the bias as the kernel's first row
                "kernel_initializer": keras.initializers.RandomUniform(-bound, bound),
                "bias_initializer": keras.initializers.RandomUniform(-bound, bound),
            }
        return keras.layers.Dense(len(self.spec.class_names), dtype="float32", name=self._name(name), **init)(x)

    def layer(self, cls, name: str, *args, **kwargs):
        return cls(*args, dtype=self.policy, name=self._name(name), **kwargs)


def _single(stream: str):
    def build(b: Blocks, video, audio):
        x = video if stream == "video" else audio
        return b.classify(b.dropout(b.pool(x, f"{stream}_pool"), "dropout"))

    return build


def _late_avg(b: Blocks, video, audio):
    logits = [
        b.classify(b.dropout(b.pool(x, f"{m}_pool"), f"{m}_dropout"), f"{m}_logits")
        for m, x in (("video", video), ("audio", audio))
    ]
    return keras.layers.Average(dtype="float32", name=b._name("logits_average"))(logits)


def _concat(b: Blocks, video, audio):
    parts = [b.dropout(b.pool(x, f"{m}_pool"), f"{m}_dropout") for m, x in (("video", video), ("audio", audio))]
    return b.classify(ops.concatenate(parts, axis=-1))


def _concat_drop_after(b: Blocks, video, audio):
    joined = ops.concatenate([b.pool(video, "video_pool"), b.pool(audio, "audio_pool")], axis=-1)
    return b.classify(b.dropout(joined, "dropout"))


def _early_concat(out_factor: int):
    def build(b: Blocks, video, audio):
        frames = ops.concatenate([video, audio], axis=-1)  # per frame: video and audio of the same instant
        return b.classify(b.dropout(b.pool(frames, "pool", output_dim=out_factor * b.dim), "dropout"))

    return build


def _gmu(b: Blocks, video, audio):
    fused = b.layer(GMU, "gmu", b.dim)([b.pool(video, "video_pool"), b.pool(audio, "audio_pool")])
    return b.classify(b.dropout(fused, "dropout"))


def _pooled_fusion(cls, name: str):
    """Each stream pooled to one token, the two fused by `cls`, the fused token classified (the seed's CMGAArchi2/3)."""

    def build(b: Blocks, video, audio):
        tokens = [b.pool(x, f"{m}_pool")[:, None] for m, x in (("video", video), ("audio", audio))]
        return b.classify(b.dropout(b.layer(cls, name)(tokens)[:, 0], "dropout"))

    return build


def _cmga_early(b: Blocks, video, audio):
    return b.classify(b.dropout(b.pool(b.layer(CMGA, "cmga")([video, audio]), "pool"), "dropout"))


def _cmga_mean(b: Blocks, video, audio):
    return b.classify(b.dropout(ops.mean(b.layer(CMGA, "cmga")([video, audio]), axis=1), "dropout"))


def _bottleneck(b: Blocks, video, audio):
    video, audio = b.layer(BottleneckFusion, "bottleneck", ff_dim=2 * b.dim)([video, audio])
    return _concat_drop_after(b, video, audio)


def _transformer(b: Blocks, video, audio):
    fused = b.layer(TransformerFusion, "transformer", ff_dim=2 * b.dim)(
        [b.pool(video, "video_pool"), b.pool(audio, "audio_pool")]
    )
    return b.classify(b.dropout(fused, "dropout"))


Builder = Callable[[Blocks, object, object], object]

ARCHITECTURES: dict[str, Builder] = {
    "video": _single("video"),
    "audio": _single("audio"),
    "late_avg": _late_avg,
    "concat": _concat,
    "concat_drop_after": _concat_drop_after,
    "early_concat": _early_concat(2),
    "early_concat_512": _early_concat(1),
    "gmu": _gmu,
    "cmga": _pooled_fusion(CMGA, "cmga"),
    "cmga_bottleneck": _pooled_fusion(GatedBottleneck, "cmga_bottleneck"),
    "cmga_early": _cmga_early,
    "cmga_mean": _cmga_mean,
    "bottleneck": _bottleneck,
    "transformer": _transformer,
}

assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES  # one list of names: archis.names
