"""Model zoo: NetVLAD-family pooling, fusion blocks and every architecture of README's table, built by name.

Importing the package registers every custom class with Keras, so `keras.models.load_model` works
on saved models without custom-object flags.
"""

from soccer_highlights.archis.fusion import (
    CMGA,
    GMU,
    BottleneckFusion,
    EncoderLayer,
    GatedBottleneck,
    TransformerFusion,
)
from soccer_highlights.archis.model import ArchiModel, build_model, load_model, make_spec, model_info
from soccer_highlights.archis.pooling import (
    POOLINGS,
    ContextGating,
    NetVLAD,
    NetVLADPlusPlus,
    TemporalPooling,
    canonical_pooling,
)
from soccer_highlights.archis.predict import predict_function
from soccer_highlights.archis.registry import ALIASES, ARCHITECTURES, canonical_architecture, list_architectures
from soccer_highlights.archis.soccernet_pooling import SoccerNetPooling
from soccer_highlights.common.modelspec import ModelSpec

__all__ = [
    "ALIASES",
    "ARCHITECTURES",
    "POOLINGS",
    "CMGA",
    "GMU",
    "ModelSpec",
    "ArchiModel",
    "BottleneckFusion",
    "ContextGating",
    "EncoderLayer",
    "GatedBottleneck",
    "NetVLAD",
    "NetVLADPlusPlus",
    "SoccerNetPooling",
    "TemporalPooling",
    "TransformerFusion",
    "build_model",
    "canonical_architecture",
    "canonical_pooling",
    "list_architectures",
    "load_model",
    "make_spec",
    "model_info",
    "predict_function",
]
