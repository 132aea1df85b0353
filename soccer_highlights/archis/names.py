"""The architectures' names and the facts of their originals, without building anything (no TensorFlow): the
canonical names, the original V&D / seed names (aliases, case-insensitive), which original each comes from, its
dropout, batch-norm constants, head initialiser and context gating there, V&D's ensembles and pooling rule.
`archis.registry` maps the same names to builders; help screens and presets read this module alone.
"""

from __future__ import annotations

from soccer_highlights.common.errors import UserError

# The poolings (`archis.pooling.make_pooling` builds each): V&D's and SoccerNet's NetVLAD++ family.
SOCCERNET_POOLINGS = ("NetVLAD++", "NetRVLAD++", "MAX++", "AVG++")
POOLINGS = ("NetVLAD", "NetRVLAD", "MAX", "AVERAGE", *SOCCERNET_POOLINGS, "NetVLAD++vd")
_POOLING_ALIASES = {
    "vlad": "NetVLAD",
    "rvlad": "NetRVLAD",
    "vlad++": "NetVLAD++",
    "netvladpp": "NetVLAD++",
    "rvlad++": "NetRVLAD++",
    "avg": "AVERAGE",
    "mean": "AVERAGE",
    "average++": "AVG++",
}


def canonical_pooling(name: str) -> str:
    """Canonical pooling name for `name` (case-insensitive, V&D's VLAD/RVLAD aliases); UserError otherwise."""
    key = str(name).strip().lower()
    by_lower = {p.lower(): p for p in POOLINGS}
    if key in by_lower:
        return by_lower[key]
    if key in _POOLING_ALIASES:
        return _POOLING_ALIASES[key]
    raise UserError(f"unknown pooling {name!r}; valid: {', '.join(POOLINGS)} (aliases: VLAD, RVLAD, VLAD++, RVLAD++)")


# Every architecture, canonical names (`archis.registry.ARCHITECTURES` builds each).
ARCHITECTURE_NAMES = (
    "video",
    "audio",
    "late_avg",
    "concat",
    "concat_drop_after",
    "early_concat",
    "early_concat_512",
    "gmu",
    "cmga",
    "cmga_bottleneck",
    "cmga_early",
    "cmga_mean",
    "bottleneck",
    "transformer",
)

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


# PyTorch's BatchNorm1d (the seed's) moves its running variance with the unbiased batch variance (n / (n - 1));
# TF1 slim's and Keras' with the biased one.
UNBIASED_VARIANCE = ("pytorch",)

# Batch-norm statistics at evaluation and prediction (`archis.stepnorm`): `batch`, those of the windows scored
# together, which are one half (V&D built every NetVLAD with is_training=True, and its evaluation and spotting
# batches were one half each); `moving`, the moving averages (the seed's model.eval(), Keras'); `population`, the
# moments of the training windows recomputed after each epoch; `corrected`, the moving averages with their
# initial (0, 1) removed (bias-corrected, as Adam's moments).
BN_EVALS = ("batch", "moving", "population", "corrected")

# The L2-normalisation floor of the NetVLAD family: V&D's tf.nn.l2_normalize floors the squared norm at 1e-12
# (x * rsqrt(max(sum x², 1e-12))), the seed's F.normalize the norm (x / max(||x||, 1e-12)).
L2_FLOORS = ("squared", "norm")


def default_bn_eval(architecture: str) -> str:
    """The batch-norm statistics the original of the architecture evaluated with (see BN_EVALS)."""
    return "batch" if canonical_architecture(architecture) in VD_ARCHITECTURES else "moving"


def default_l2_floor(architecture: str) -> str:
    return "squared" if canonical_architecture(architecture) in VD_ARCHITECTURES else "norm"


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
    names = list(ARCHITECTURE_NAMES)
    return names + list(ALIASES) if include_aliases else names


def default_dropout(architecture: str) -> float:
    """Dropout rate of the original code the architecture (canonical or original name) comes from."""
    return DEFAULT_DROPOUT[canonical_architecture(architecture)]


def canonical_architecture(name: str) -> str:
    """Canonical name for a canonical or original name (case-insensitive); UserError listing valid names."""
    key = str(name).strip().lower()
    lookup = {n.lower(): n for n in ARCHITECTURE_NAMES} | {a.lower(): c for a, c in ALIASES.items()}
    if key not in lookup:
        raise UserError(
            f"unknown architecture {name!r}; valid: {', '.join(ARCHITECTURE_NAMES)} (original names: "
            f"{', '.join(ALIASES)})"
        )
    return lookup[key]
