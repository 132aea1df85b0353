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

from soccer_highlights.archis.fusion import CMGA, GMU, BottleneckFusion, GatedBottleneck, TransformerFusion
from soccer_highlights.archis.pooling import make_pooling
from soccer_highlights.common.errors import UserError
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
            dtype=self.policy,
            layer_name=self._name(name),
        )
        return layer(x)

    def dropout(self, x, name: str):
        """Dropout before the classifier at the spec's rate (the original's for this architecture by default)."""
        return keras.layers.Dropout(float(self.spec.dropout or 0.0), dtype=self.policy, name=self._name(name))(x)

    def classify(self, x, name: str = "logits"):
        """Final dense layer, always float32 so logits stay float32 under mixed precision. Initialised as the
        original's: Glorot-uniform and zero bias (TF1's fully_connected) or PyTorch's nn.Linear (`head_init`)."""
        init = {}
        if self.spec.head_init == "torch":
            bound = 1.0 / math.sqrt(int(x.shape[-1]))
            uniform = keras.initializers.RandomUniform(-bound, bound)
            init = {"kernel_initializer": uniform, "bias_initializer": uniform}
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

# The architectures of V&D's code; the others are the seed's.
VD_ARCHITECTURES = ("video", "audio", "late_avg", "concat", "concat_drop_after", "early_concat", "early_concat_512")

# Dropout before the classifier in the original each architecture comes from: V&D's keep_prob 0.6, the
# seed's nn.Dropout(0.5), and the seed's LateFusionArchi cls_dropout 0.6.
VD_DROPOUT, SEED_DROPOUT = 0.4, 0.5
DEFAULT_DROPOUT: dict[str, float] = {
    **dict.fromkeys(VD_ARCHITECTURES, VD_DROPOUT),
    **dict.fromkeys(("gmu", "cmga", "cmga_bottleneck", "cmga_early", "cmga_mean", "bottleneck"), SEED_DROPOUT),
    "transformer": 0.6,
}

# Batch-norm constants (Keras momentum, epsilon): V&D's loupe used TF1 slim's batch_norm (decay 0.999, epsilon 1e-3),
# the seed PyTorch's BatchNorm1d (momentum 0.1 = Keras 0.9, eps 1e-5); `keras` (0.99, 1e-3) is what files saved
# before the spec named them were trained with. Classifier heads: TF1's fully_connected (Glorot) in V&D, PyTorch's
# nn.Linear default in the seed.
BATCH_NORMS: dict[str, tuple[float, float]] = {"tf1_slim": (0.999, 1e-3), "pytorch": (0.9, 1e-5), "keras": (0.99, 1e-3)}
HEAD_INITS = ("glorot", "torch")


def default_batch_norm(architecture: str) -> str:
    return "tf1_slim" if canonical_architecture(architecture) in VD_ARCHITECTURES else "pytorch"


def default_head_init(architecture: str) -> str:
    return "glorot" if canonical_architecture(architecture) in VD_ARCHITECTURES else "torch"


# Context gating after pooling: V&D's loupe default; the seed built its fusion models with VLAD_gating=False.


def default_gating(architecture: str) -> bool:
    """Whether the original of the architecture gates its poolings (V&D's: yes; the seed's fusion models: no)."""
    return canonical_architecture(architecture) in VD_ARCHITECTURES


ALIASES: dict[str, str] = {
    "VideoNetwork": "video",
    "AudioVideoArchi10": "video",
    "AudioNetwork": "audio",
    "AudioVideoArchi11": "audio",
    "AudioVideoArchi4": "late_avg",
    "AudioVideoArchi5": "concat",
    "AudioVideoArchi6": "concat_drop_after",
    "AudioVideoArchi7": "early_concat",
    "AudioVideoArchi8": "early_concat_512",
    "GMU": "gmu",
    "CMGAArchi2": "cmga",
    "CMGAArchi1": "cmga_early",
    "CMGAArchi4": "cmga_mean",
    "CMGAArchi3": "cmga_bottleneck",
    "LateFusionArchi": "transformer",
}

# V&D's prediction-level ensembles (classes of its networks.py), run by `--mode other`: the method each one uses.
ENSEMBLES: dict[str, str] = {
    "Archi3Prediction": "mean_logits",
    "Archi12Prediction": "mean_logits",
    "Archi9Prediction": "product",
    "Archi18Prediction": "product",
}
# Spellings earlier versions of this port documented (V&D never had them): accepted, not advertised.
ENSEMBLE_ALIASES = {f"AudioVideoArchi{n}": f"Archi{n}Prediction" for n in (3, 9, 12, 18)}


def ensemble_method(name: str | None) -> str | None:
    """The method of a V&D ensemble architecture (V&D's name, or the old alias), None for any other name."""
    key = str(name or "").strip().lower()
    names = {n.lower(): n for n in ENSEMBLES} | {a.lower(): c for a, c in ENSEMBLE_ALIASES.items()}
    return ENSEMBLES[names[key]] if key in names else None


# Pooling rule of V&D's networks.py: Archi 4, 6, 7 and 8 build NetRVLAD whatever `--network` says; Archi 10 and 11
# pool only when the network name contains RVLAD (otherwise they have no pooling and cannot train).
POOLING_RULES = ("original", "network")
_RVLAD_ALWAYS = ("late_avg", "concat_drop_after", "early_concat", "early_concat_512")
_RVLAD_ONLY = ("audiovideoarchi10", "audiovideoarchi11")


def architecture_pooling(architecture: str, network: str, rule: str = "original") -> str:
    """The pooling an architecture gets for `--network`: V&D's rule (`original`) or `network` for every one."""
    from soccer_highlights.archis.pooling import canonical_pooling  # deferred: loads TensorFlow (start-up)

    if rule not in POOLING_RULES:
        raise UserError(f"unknown pooling rule {rule!r}; valid: {', '.join(POOLING_RULES)}")
    asked = canonical_pooling(network)
    if rule == "network":
        return asked
    if canonical_architecture(architecture) in _RVLAD_ALWAYS:
        return "NetRVLAD"
    if str(architecture).strip().lower() in _RVLAD_ONLY and asked != "NetRVLAD":
        raise UserError(
            f"{architecture} pools only with --network RVLAD in V&D's code (with {network} it has no pooling and "
            "cannot train); use --network RVLAD, VideoNetwork / AudioNetwork, or --pooling_rule network"
        )
    return asked


def origin(architecture: str) -> str:
    """`vd` for V&D's architectures (and its names), `seed` for the seed's fusion models."""
    return "vd" if canonical_architecture(architecture) in VD_ARCHITECTURES else "seed"


def list_architectures(include_aliases: bool = False) -> list[str]:
    """Canonical architecture names (plus the original aliases when asked)."""
    names = list(ARCHITECTURES)
    return names + list(ALIASES) if include_aliases else names


def default_dropout(architecture: str) -> float:
    """Dropout rate of the original code the architecture (canonical or original name) comes from."""
    return DEFAULT_DROPOUT[canonical_architecture(architecture)]


def canonical_architecture(name: str) -> str:
    """Canonical name for a canonical or original name (case-insensitive); UserError listing valid names."""
    key = str(name).strip().lower()
    lookup = {n.lower(): n for n in ARCHITECTURES} | {a.lower(): c for a, c in ALIASES.items()}
    if key not in lookup:
        raise UserError(
            f"unknown architecture {name!r}; valid: {', '.join(ARCHITECTURES)} (original names: {', '.join(ALIASES)})"
        )
    return lookup[key]
