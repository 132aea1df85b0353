"""Model zoo: NetVLAD-family pooling, fusion blocks and every architecture, built by name.

The names below are loaded on first use, so that `soccer_highlights.archis.names` (the architectures' names and
originals' facts) and help screens need no TensorFlow. Loading a model (`load_model`, `build_model`) imports the
layers, which registers every custom class with Keras: `keras.models.load_model` then works on saved models without
custom-object flags (`register_layers()` does it alone).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from soccer_highlights.common.lazy import lazy_attributes

if TYPE_CHECKING:
    from soccer_highlights.archis.fusion import (
        CMGA,
        GMU,
        BottleneckFusion,
        EncoderLayer,
        GatedBottleneck,
        TransformerFusion,
    )
    from soccer_highlights.archis.model import ArchiModel, build_model, load_model, make_spec, model_info
    from soccer_highlights.archis.names import (
        ALIASES,
        POOLINGS,
        canonical_architecture,
        canonical_pooling,
        list_architectures,
    )
    from soccer_highlights.archis.pooling import ContextGating, NetVLAD, NetVLADPlusPlus, TemporalPooling
    from soccer_highlights.archis.predict import SetPredictor, predict_function, set_predictor
    from soccer_highlights.archis.registry import ARCHITECTURES
    from soccer_highlights.archis.soccernet_pooling import SoccerNetPooling
    from soccer_highlights.archis.stepnorm import population_statistics
    from soccer_highlights.common.modelspec import ModelSpec

_EXPORTS = {
    "ALIASES": "soccer_highlights.archis.names",
    "ARCHITECTURES": "soccer_highlights.archis.registry",
    "POOLINGS": "soccer_highlights.archis.names",
    "CMGA": "soccer_highlights.archis.fusion",
    "GMU": "soccer_highlights.archis.fusion",
    "ModelSpec": "soccer_highlights.common.modelspec",
    "ArchiModel": "soccer_highlights.archis.model",
    "BottleneckFusion": "soccer_highlights.archis.fusion",
    "ContextGating": "soccer_highlights.archis.pooling",
    "EncoderLayer": "soccer_highlights.archis.fusion",
    "GatedBottleneck": "soccer_highlights.archis.fusion",
    "NetVLAD": "soccer_highlights.archis.pooling",
    "NetVLADPlusPlus": "soccer_highlights.archis.pooling",
    "SoccerNetPooling": "soccer_highlights.archis.soccernet_pooling",
    "TemporalPooling": "soccer_highlights.archis.pooling",
    "TransformerFusion": "soccer_highlights.archis.fusion",
    "build_model": "soccer_highlights.archis.model",
    "canonical_architecture": "soccer_highlights.archis.names",
    "canonical_pooling": "soccer_highlights.archis.names",
    "list_architectures": "soccer_highlights.archis.names",
    "load_model": "soccer_highlights.archis.model",
    "make_spec": "soccer_highlights.archis.model",
    "model_info": "soccer_highlights.archis.model",
    "predict_function": "soccer_highlights.archis.predict",
    "set_predictor": "soccer_highlights.archis.predict",
    "SetPredictor": "soccer_highlights.archis.predict",
    "population_statistics": "soccer_highlights.archis.stepnorm",
}
__all__ = [
    "register_layers",
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
    "set_predictor",
    "SetPredictor",
    "population_statistics",
]


__getattr__ = lazy_attributes(__name__, _EXPORTS)


def register_layers() -> None:
    """Register every custom layer with Keras (importing them does it), so `keras.models.load_model` reads our
    files without custom objects."""
    for module in ("fusion", "pooling", "soccernet_pooling", "stepnorm", "model"):
        importlib.import_module(f"soccer_highlights.archis.{module}")
