"""Audio features: VGGish in Keras (Google's layer names) and its weight loaders.

V&D's recipe (docs/DESIGN.md, stage 2): each 0.5 s piece -> 46 x 64 log-mel patch -> VGGish convolutions up to
`conv4_2` (512 channels) -> global average pooling -> 512-d. Optionally the standard 128-d VGGish
embedding (0.96 s examples, fc1_1, fc1_2, fc2; fc2 linear as in Google's current `vggish_slim.py`).

Keras 3 layer names cannot hold "/", so layers are named after the last part of Google's scope
(`conv3_1` for `vggish/conv3/conv3_1`); `GOOGLE_SCOPES` maps them. Weights come from
- Google's `vggish_model.ckpt` (read with `tf.train.load_checkpoint`, variables `<scope>/weights|biases`),
- a TF-Hub handle or SavedModel folder (its variables copied by the same names),
- a Keras weights file: `.weights.h5` saved from this model, or a Keras 2 `.h5` such as V&D's
  `vggish_audioset_weights_without_fc2.h5` (layers `conv3/conv3_1`, `vggish_fc1/fc1_1`, ...),
- "random" (smoke tests; seeded, recorded in extraction.json).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from soccer_highlights.common.constants import FEATURE_DIM
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.inputs import check_finite_weights
from soccer_highlights.extract_features import logmel
from soccer_highlights.extract_features import runtime as rt
from soccer_highlights.extract_features.runtime import arrays_digest, file_digest
from soccer_highlights.extract_features.weights import assign_random, download_or_fail, keras_home

CONV_LAYERS = {"conv1": 64, "conv2": 128, "conv3_1": 256, "conv3_2": 256, "conv4_1": 512, "conv4_2": 512}
FC_LAYERS = {"fc1_1": 4096, "fc1_2": 4096, "fc2": 128}
GOOGLE_SCOPES = {
    "conv1": "vggish/conv1",
    "conv2": "vggish/conv2",
    "conv3_1": "vggish/conv3/conv3_1",
    "conv3_2": "vggish/conv3/conv3_2",
    "conv4_1": "vggish/conv4/conv4_1",
    "conv4_2": "vggish/conv4/conv4_2",
    "fc1_1": "vggish/fc1/fc1_1",
    "fc1_2": "vggish/fc1/fc1_2",
    "fc2": "vggish/fc2",
}
CHECKPOINT_NAME = "vggish_model.ckpt"
CHECKPOINT_URL = "https://storage.googleapis.com/audioset/vggish_model.ckpt"
EMBEDDING_DIM = 128


def build_vggish() -> tuple[keras.Model, keras.Model]:
    """(features model [B,46,64,1] -> [B,512], embedding model [B,96,64,1] -> [B,128]) sharing layers."""
    conv = {
        name: keras.layers.Conv2D(ch, 3, padding="same", activation="relu", name=name)
        for name, ch in CONV_LAYERS.items()
    }
    pools = {
        name: keras.layers.MaxPooling2D(2, 2, padding="same", name=name)
        for name in ("pool1", "pool2", "pool3", "pool4")
    }

    def stack(x):
        x = pools["pool1"](conv["conv1"](x))
        x = pools["pool2"](conv["conv2"](x))
        x = pools["pool3"](conv["conv3_2"](conv["conv3_1"](x)))
        return conv["conv4_2"](conv["conv4_1"](x))

    patch = keras.Input((logmel.FEATURE_FRAMES, logmel.MEL_BANDS, 1), name="log_mel_46")
    features = keras.Model(
        patch, keras.layers.GlobalAveragePooling2D(name="avg_pool")(stack(patch)), name="vggish_conv4_2_avg"
    )
    example = keras.Input((logmel.EMBEDDING_FRAMES, logmel.MEL_BANDS, 1), name="log_mel_96")
    x = keras.layers.Flatten(name="flatten")(pools["pool4"](stack(example)))
    x = keras.layers.Dense(FC_LAYERS["fc1_1"], activation="relu", name="fc1_1")(x)
    x = keras.layers.Dense(FC_LAYERS["fc1_2"], activation="relu", name="fc1_2")(x)
    x = keras.layers.Dense(FC_LAYERS["fc2"], name="fc2")(x)
    return features, keras.Model(example, x, name="vggish")


# ---- weight sources: each returns {layer name: (kernel, bias)} -------------------------------------------


Tensors = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class VggishWeights:
    """Where the weights come from: tensors by layer name, a native Keras file, or neither (random)."""

    source: str  # recorded in extraction.json
    tensors: Tensors | None = None
    keras_file: Path | None = None


def _from_named(get, names: Iterable[str], source: str) -> Tensors:
    names = set(names)
    out = {}
    for layer, scope in GOOGLE_SCOPES.items():
        w, b = f"{scope}/weights", f"{scope}/biases"
        if w in names and b in names:
            out[layer] = (np.asarray(get(w)), np.asarray(get(b)))
    if not out:
        raise UserError(f"{source}: no VGGish variables (expected names like vggish/conv1/weights)")
    return out


def read_checkpoint(path: str | os.PathLike) -> Tensors:
    """Google's TF1 checkpoint (one `.ckpt` file, or a V2 prefix with `.index`), mapped by variable name."""
    try:
        reader = tf.train.load_checkpoint(str(path))
    except (tf.errors.OpError, ValueError) as exc:
        raise UserError(f"{path}: not a readable TensorFlow checkpoint ({str(exc).splitlines()[0]})") from exc
    return _from_named(reader.get_tensor, reader.get_variable_to_shape_map(), str(path))


def read_saved_model(handle: str) -> Tensors:
    """A TF-Hub handle (URL, resolved and cached by tensorflow_hub) or a SavedModel folder; variables by name."""
    path = handle
    if not Path(handle).is_dir():
        import tensorflow_hub as hub

        try:
            path = hub.resolve(handle)
        except Exception as exc:  # network / cache errors come in many types
            raise UserError(
                f"{handle}: cannot fetch the TF-Hub VGGish model ({exc}); download it once "
                f"and pass its folder, or pass --vggish {CHECKPOINT_NAME}"
            ) from exc
    try:
        loaded = tf.saved_model.load(path)
    except (OSError, tf.errors.OpError, ValueError) as exc:
        raise UserError(f"{path}: not a readable SavedModel ({str(exc).splitlines()[0]})") from exc
    values = {v.name.rsplit(":", 1)[0]: v for v in _variables(loaded)}
    return _from_named(lambda n: values[n].numpy(), values, str(path))


def _variables(root) -> list:
    """Every tf.Variable reachable from a loaded SavedModel object (hub models list them in `.variables`)."""
    found, seen, todo = [], set(), [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, tf.Variable):
            found.append(obj)
        elif isinstance(obj, (list, tuple)):
            todo.extend(obj)
        elif isinstance(obj, dict):
            todo.extend(obj.values())
        elif hasattr(obj, "__dict__") and not callable(obj):
            todo.extend(v for k, v in vars(obj).items() if not k.startswith("_"))
    return found


def read_keras_h5(path: str | os.PathLike) -> Tensors:
    """A Keras 2 weights `.h5` (e.g. V&D's): layers matched by the last part of their name."""
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise UserError(f"{path}: not a readable HDF5 weights file") from exc
    with h5:
        root = h5.get("model_weights", h5)
        out = {}
        for layer_name in root.attrs.get("layer_names", []):
            layer_name = layer_name.decode() if isinstance(layer_name, bytes) else layer_name
            key = layer_name.split("/")[-1].removeprefix("vggish_")
            group = root[layer_name]
            weight_names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("weight_names", [])]
            if key in GOOGLE_SCOPES and len(weight_names) == 2:
                out[key] = (np.asarray(group[weight_names[0]]), np.asarray(group[weight_names[1]]))
    if not out:
        raise UserError(f"{path}: no VGGish layers (conv1 ... conv4_2) in this weights file")
    return out


def auto_checkpoint() -> Path:
    """$VGGISH_CHECKPOINT, else the Keras cache `models/vggish_model.ckpt` (downloaded there if online)."""
    env = os.environ.get("VGGISH_CHECKPOINT")
    if env:
        if not Path(env).exists():
            raise UserError(f"{env}: no such file (from $VGGISH_CHECKPOINT)")
        return Path(env)
    return download_or_fail(CHECKPOINT_NAME, CHECKPOINT_URL, what="VGGish weights", flag="--vggish")


def resolve_weights(spec: str) -> VggishWeights:
    """VGGish weights for `spec`: "auto", "random", a checkpoint, a SavedModel folder / hub URL, a Keras .h5."""
    if spec == "random":
        return VggishWeights("random")
    if spec == "auto":
        path = auto_checkpoint()
        return VggishWeights(f"checkpoint:{path}", read_checkpoint(path))
    if spec.startswith(("http://", "https://")) or Path(spec).is_dir():
        return VggishWeights(f"saved_model:{spec}", read_saved_model(spec))
    p = Path(spec)
    if not p.exists() and not Path(spec + ".index").exists():
        raise UserError(
            f"{spec}: no such VGGish weights file (give {CHECKPOINT_NAME}, a TF-Hub handle/folder, "
            f"or a Keras .h5; it is looked for in {keras_home() / 'models'} when --vggish is auto)"
        )
    if p.name.endswith(".weights.h5"):
        return VggishWeights(f"keras:{p}", keras_file=p)
    if p.suffix in (".h5", ".hdf5"):
        return VggishWeights(f"keras_h5:{p}", read_keras_h5(p))
    return VggishWeights(f"checkpoint:{p}", read_checkpoint(p))


# On OpenVINO, VGGish beside ResNet-152 (extraction) runs on one thread: each compiled network has its own
# thread pool, and two pools of all the cores oversubscribe them (2-minute video, 2 cores: 124 s -> 93 s).
BESIDE_RESNET_THREADS = 1


class AudioEmbedder:
    """0.5 s pieces -> 512-d VGGish conv4_2 features (and 0.96 s examples -> 128-d embeddings).

    `runtime` "openvino" runs the networks converted once and cached (extract_features/runtime.py), in
    `compute_dtype`; "tensorflow" runs the Keras networks in float32; None picks OpenVINO on a CPU. `threads`:
    OpenVINO's threads (0: all cores).
    """

    def __init__(
        self,
        spec: str = "auto",
        *,
        need_embedding: bool = False,
        seed: int = 0,
        batch_size: int = 256,
        runtime: str | None = None,
        compute_dtype: str = "float32",
        cache_dir: str | os.PathLike | None = None,
        int8_model: str | os.PathLike | None = None,
        threads: int = 0,
    ):
        self.weights = resolve_weights(spec)
        self.source = self.weights.source
        self.need_embedding = need_embedding
        self.seed = seed
        self.batch_size = batch_size
        self.runtime = rt.resolve_runtime(runtime, compute_dtype)
        if self.weights.tensors is not None:
            wanted = list(CONV_LAYERS) + (list(FC_LAYERS) if need_embedding else [])
            missing = [GOOGLE_SCOPES[n] + "/weights" for n in wanted if n not in self.weights.tensors]
            if missing:
                raise UserError(f"VGGish weights ({self.source}) lack {', '.join(missing)}")
        self._silence: np.ndarray | None = None
        self._models: tuple[keras.Model, keras.Model] | None = None
        if self.runtime == "tensorflow":
            features, embedding = self.keras_models()
            self._features = tf.function(lambda x: features(x, training=False), reduce_retracing=True)
            self._embed = tf.function(lambda x: embedding(x, training=False), reduce_retracing=True)
            return
        key = self.cache_key()
        if compute_dtype == "int8":
            xml = rt.load_int8(int8_model, "vggish", key)
        else:
            xml = rt.cached_model("vggish", key, lambda: rt.convert(self.keras_function("features")), cache_dir)
        self.xml = xml
        self._features = rt.CompiledNetwork(xml, compute_dtype, threads=threads)
        if need_embedding:
            dtype = "float32" if compute_dtype == "int8" else compute_dtype
            emb_key = {**key, "output": "embedding 128"}
            xml = rt.cached_model("vggish128", emb_key, lambda: rt.convert(self.keras_function("embedding")), cache_dir)
            self._embed = rt.CompiledNetwork(xml, dtype, threads=threads)

    def cache_key(self) -> dict:
        """What the converted network depends on: the weights actually loaded (hash) or the random seed."""

        w = self.weights
        if w.keras_file is not None:
            digest = f"file:{file_digest(w.keras_file)}"
        elif w.tensors is not None:
            names = sorted(n for n in w.tensors if self.need_embedding or n in CONV_LAYERS)
            digest = "tensors:" + arrays_digest([a for n in names for a in w.tensors[n]] + [np.array(names)])
        else:
            digest = f"random:{self.seed}"
        return {"network": "VGGish conv4_2 avg", "weights": digest, "input": "log-mel [B,46,64,1] float32"}

    def keras_models(self) -> tuple[keras.Model, keras.Model]:
        """(features model, embedding model) with the weights loaded (built on first use)."""
        if self._models is None:
            self._models = build_vggish()
            self._load(self.weights, self.need_embedding, self.seed)
        return self._models

    @property
    def features_model(self) -> keras.Model:
        return self.keras_models()[0]

    @property
    def embedding_model(self) -> keras.Model:
        return self.keras_models()[1]

    def keras_function(self, which: str):
        """The features (or embedding) network as a function with a fixed input signature, for conversion."""
        features, embedding = self.keras_models()
        model, frames = (
            (features, logmel.FEATURE_FRAMES) if which == "features" else (embedding, logmel.EMBEDDING_FRAMES)
        )
        spec = tf.TensorSpec([None, frames, logmel.MEL_BANDS, 1], tf.float32)
        return tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def _load(self, weights: VggishWeights, need_embedding: bool, seed: int) -> None:
        assert self._models is not None
        embedding_model = self._models[1]
        if weights.keras_file is not None:
            try:
                embedding_model.load_weights(weights.keras_file)
            except ValueError as exc:
                raise UserError(f"{weights.keras_file}: does not fit this VGGish model ({exc})") from exc
            check_finite_weights(embedding_model, str(weights.keras_file))
            return
        tensors = weights.tensors
        if tensors is None:
            assign_random(embedding_model, seed)
            return
        for name, (kernel, bias) in tensors.items():
            layer = embedding_model.get_layer(name)
            expected = tuple(layer.kernel.shape)
            if tuple(kernel.shape) != expected:
                raise UserError(
                    f"VGGish weights ({self.source}): {GOOGLE_SCOPES[name]}/weights has shape "
                    f"{tuple(kernel.shape)}, expected {expected}"
                )
            layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])

    def _run(self, fn, x: np.ndarray) -> np.ndarray:
        x = x[..., None].astype(np.float32)
        if self.runtime == "openvino":
            outs = [fn(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        else:
            outs = [fn(tf.constant(x[i : i + self.batch_size])).numpy() for i in range(0, len(x), self.batch_size)]
        return np.concatenate(outs).astype(np.float32)

    def features(self, pieces: np.ndarray) -> np.ndarray:
        """[K, 8000] waveforms -> [K, 512] float32."""
        if len(pieces) == 0:
            return np.zeros((0, FEATURE_DIM), np.float32)
        return self._run(self._features, logmel.log_mel(pieces, logmel.FEATURE_FRAMES))

    def silence(self) -> np.ndarray:
        """The 512-d feature of a silent 0.5 s piece (pads audio shorter than the video, --silent_audio)."""
        if self._silence is None:
            self._silence = self.features(np.zeros((1, int(logmel.SAMPLE_RATE / 2)), np.float32))[0]
        return self._silence

    def embeddings(self, examples: np.ndarray) -> np.ndarray:
        """[K, 15600] waveforms -> [K, 128] float32 (Google's embedding before its PCA/quantisation)."""
        if len(examples) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return self._run(self._embed, logmel.log_mel(examples, logmel.EMBEDDING_FRAMES))


def align(features: np.ndarray, tokens: int, fill: np.ndarray) -> np.ndarray:
    """Cut or pad (with `fill` rows) per-piece features to the video's token count."""
    if len(features) >= tokens:
        return features[:tokens]
    return np.concatenate([features, np.repeat(fill[None], tokens - len(features), axis=0)])


def embeddings_to_tokens(embeddings: np.ndarray, tokens: int) -> np.ndarray:
    """Resample 0.96 s embeddings to 2 per second: token i takes the example holding its centre (i/2 + 0.25 s)."""
    if len(embeddings) == 0:
        return np.zeros((tokens, EMBEDDING_DIM), np.float32)
    hop = logmel.EMBEDDING_HOP_SAMPLES / logmel.SAMPLE_RATE
    index = np.minimum(((np.arange(tokens) * 0.5 + 0.25) / hop).astype(int), len(embeddings) - 1)
    return embeddings[index]
