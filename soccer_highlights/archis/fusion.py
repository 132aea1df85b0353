"""Fusion blocks joining the video and audio streams: GMU, CMGA, attention bottleneck, transformer.

Each block is one Keras layer taking `(video, audio)`; the architectures in `registry.py` compose them.

Initial weights follow the seed's PyTorch code: Xavier-uniform over PyTorch's fused q/k/v matrices
([3D, D], so a bound of sqrt(6 / 4D) for each of q, k, v), PyTorch's default `nn.Linear` init where the
seed kept it (the CMGA gate and message biases, the encoder's feed-forward layers), a N(0, 1)
modality embedding (`nn.Embedding`) and a N(0, 0.02) CLS token. What still differs is listed in
README (departures): Keras' attention layer has zero-initialised q/k/v biases and one initialiser for
its q/k/v and output kernels, where the seed's CMGA fusion attention has no q/k/v bias.
"""

from __future__ import annotations

import math
import warnings

import keras
from keras import ops

from soccer_highlights.archis.dropout import KeyedDropout
from soccer_highlights.common.errors import UserError


def _dense(units: int, name: str, policy, *, use_bias: bool = True, activation=None) -> keras.layers.Dense:
    """Xavier-uniform weights, zero biases (the seed's and PyTorch-port convention for fusion blocks)."""
    return keras.layers.Dense(
        units, activation=activation, use_bias=use_bias, kernel_initializer="glorot_uniform", dtype=policy, name=name
    )


def _fused_qkv_init(dim: int) -> keras.initializers.Initializer:
    """Xavier-uniform of a PyTorch fused [3D, D] q/k/v projection, for one of its [D, D] blocks."""
    limit = math.sqrt(6.0 / (4 * dim))
    return keras.initializers.RandomUniform(-limit, limit)


def _torch_linear(units: int, fan_in: int, name: str, policy, *, activation=None) -> keras.layers.Dense:
    """PyTorch's default `nn.Linear` init: weights and bias uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return keras.layers.Dense(
        units,
        activation=activation,
        dtype=policy,
        name=name,
        kernel_initializer=keras.initializers.RandomUniform(-bound, bound),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
    )


@keras.saving.register_keras_serializable(package="archis")
class KeyedAttention(keras.layers.MultiHeadAttention):
    """Keras' multi-head attention whose dropout is a `KeyedDropout` (masks keyed by seed, step and window, see
    `archis.dropout`), applied where Keras, `nn.MultiheadAttention` and the seed's CMGA fusion apply theirs: to the
    attention probabilities. Keras' own layer draws its masks per call, so the weights followed the micro-batch.

    Same weights, same attribute (`_dropout_layer`, whose path in a weights file holds no variable) and the same one
    draw from Python's generator for the layer's seed, so files saved with Keras' layer load and initial weights are
    unchanged."""

    def _build_attention(self, rank):
        rate, self._dropout = self._dropout, 0.0  # Keras' Dropout at rate 0: no seed drawn, no generator made
        try:
            super()._build_attention(rank)
        finally:
            self._dropout = rate
        self._tracker.untrack(self._dropout_layer)
        self._dropout_layer = KeyedDropout(rate, seed=self.seed, dtype=self.dtype_policy, name="attention_dropout")


def _check_heads(dim: int, heads: int, what: str) -> None:
    if dim % heads:
        raise UserError(f"{what} needs a feature size divisible by {heads} heads, got {dim}")


@keras.saving.register_keras_serializable(package="archis")
class GMU(keras.layers.Layer):
    """Gated multimodal unit (Arevalo et al. 2017): h = z ⊙ tanh(W_v v) + (1 − z) ⊙ tanh(W_a a), z = σ(W_z [v; a])."""

    def __init__(self, hidden: int = 512, **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        policy = self.dtype_policy
        self.video_proj = _dense(self.hidden, "video_proj", policy, activation="tanh")
        self.audio_proj = _dense(self.hidden, "audio_proj", policy, activation="tanh")
        self.gate = _dense(self.hidden, "gate", policy, activation="sigmoid")

    def build(self, input_shape):
        v_shape, a_shape = input_shape
        self.video_proj.build(v_shape)
        self.audio_proj.build(a_shape)
        self.gate.build((*v_shape[:-1], v_shape[-1] + a_shape[-1]))

    def call(self, inputs):
        video, audio = inputs
        z = self.gate(ops.concatenate([video, audio], axis=-1))
        return z * self.video_proj(video) + (1.0 - z) * self.audio_proj(audio)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.hidden)

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden}


@keras.saving.register_keras_serializable(package="archis")
class CMGA(keras.layers.Layer):
    """Cross-modality gated attention (Jiang & Ji 2022) on [B, N, D] sequences (N = 1 for a pooled token).

    Audio queries attend over video (`A = softmax(q_a k_vᵀ / sqrt(D)) v_v`), a forget gate
    `f = σ(W_f [A; z_a])` filters the message, `h = relu(z_v + (W_m A) ⊙ f)`, then an 8-head
    self-attention over `h` (with output projection) and dropout fuse it. Output [B, N, D].
    """

    def __init__(self, num_heads: int = 8, dropout: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.attention_dropout = KeyedDropout(self.dropout, dtype=self.dtype_policy, name="attention_dropout")
        self.output_dropout = KeyedDropout(self.dropout, dtype=self.dtype_policy, name="output_dropout")

    def build(self, input_shape):
        v_shape, a_shape = input_shape
        dim = int(v_shape[-1])
        if int(a_shape[-1]) != dim:
            raise UserError(f"CMGA needs video and audio of the same width, got {dim} and {a_shape[-1]}")
        _check_heads(dim, self.num_heads, "CMGA")
        policy = self.dtype_policy
        self.query, self.key, self.value = (
            keras.layers.Dense(dim, use_bias=False, kernel_initializer=_fused_qkv_init(dim), dtype=policy, name=n)
            for n in ("query", "key", "value")
        )
        # Xavier weights; the biases keep PyTorch's default init, as in the seed
        bias_init = keras.initializers.RandomUniform(-1 / math.sqrt(2 * dim), 1 / math.sqrt(2 * dim))
        self.forget = keras.layers.Dense(
            dim, activation="sigmoid", bias_initializer=bias_init, dtype=policy, name="forget"
        )
        bias_init = keras.initializers.RandomUniform(-1 / math.sqrt(dim), 1 / math.sqrt(dim))
        self.message = keras.layers.Dense(dim, bias_initializer=bias_init, dtype=policy, name="message")
        self.fusion = KeyedAttention(
            self.num_heads,
            dim // self.num_heads,
            dropout=self.dropout,
            kernel_initializer=_fused_qkv_init(dim),
            dtype=policy,
            name="fusion",
        )
        for layer in (self.query, self.key, self.value, self.message):
            layer.build(v_shape)
        self.forget.build((*v_shape[:-1], 2 * dim))
        self.fusion.build(v_shape, v_shape)

    def call(self, inputs, training=None):
        with warnings.catch_warnings():  # one pooled token: a softmax over one key is 1 by design, not a mistake
            warnings.filterwarnings("ignore", message="You are using a softmax over axis", category=UserWarning)
            return self._attend(*inputs, training=training)

    def _attend(self, video, audio, training=None):
        q, k, v = self.query(audio), self.key(video), self.value(video)
        logits = ops.einsum("bqd,bkd->bqk", q, k) / math.sqrt(q.shape[-1])
        attended = ops.matmul(self.attention_dropout(ops.softmax(logits, axis=-1), training=training), v)
        f = self.forget(ops.concatenate([attended, audio], axis=-1))
        h = ops.relu(video + self.message(attended) * f)
        return self.output_dropout(self.fusion(h, h, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="archis")
class GatedBottleneck(CMGA):
    """The seed's cross-modality gated bottleneck attention (its `CMGAArchi3` fusion), with its two bugs fixed:
    the bottleneck tokens are learned weights (the seed drew fresh random ones, N(0, 0.2²), at every call) and the
    forget gate sees [message; audio] along the features (the seed concatenated along the batch, which fails).

    max(1, N // 3) bottleneck tokens attend over the video keys; audio queries attend over the tokens; each message
    is brought back to the N video positions (the first through a softmax of the video against it) and the two
    are averaged; then CMGA's forget gate, residual and fusion self-attention. Inputs and output [B, N, D].
    """

    def build(self, input_shape):
        super().build(input_shape)
        v_shape = input_shape[0]
        dim, n = int(v_shape[-1]), v_shape[1]
        self.num_tokens = max(1, int(n or 1) // 3)
        self.tokens = self.add_weight(
            name="bottleneck_tokens", shape=(self.num_tokens, dim), initializer=keras.initializers.RandomNormal(0, 0.2)
        )
        policy = self.dtype_policy
        self.bottleneck_qkv = [
            keras.layers.Dense(dim, use_bias=False, kernel_initializer=_fused_qkv_init(dim), dtype=policy, name=n)
            for n in ("bottleneck_query", "bottleneck_key", "bottleneck_value")
        ]
        for layer in self.bottleneck_qkv:
            layer.build((None, self.num_tokens, dim))

    def _attend(self, video, audio, training=None):
        scale = 1.0 / math.sqrt(video.shape[-1])
        tokens = ops.broadcast_to(
            ops.cast(self.tokens, video.dtype)[None], (ops.shape(video)[0], self.num_tokens, video.shape[-1])
        )
        q_b, k_b, v_b = (layer(tokens) for layer in self.bottleneck_qkv)
        k_v, v_v, q_a = self.key(video), self.value(video), self.query(audio)

        def attend(q, k, v):
            weights = ops.softmax(ops.einsum("bqd,bkd->bqk", q, k) * scale, axis=-1)
            return ops.matmul(self.attention_dropout(weights, training=training), v)

        from_video = attend(q_b, k_v, v_v)  # [B, tokens, D]
        back = ops.softmax(ops.einsum("bnd,btd->bnt", video, from_video) * scale, axis=-1)
        attended = 0.5 * (ops.matmul(back, from_video) + attend(q_a, k_b, v_b))  # [B, N, D]
        f = self.forget(ops.concatenate([attended, audio], axis=-1))
        h = ops.relu(video + self.message(attended) * f)
        return self.output_dropout(self.fusion(h, h, training=training), training=training)


@keras.saving.register_keras_serializable(package="archis")
class EncoderLayer(keras.layers.Layer):
    """Post-norm transformer encoder layer (PyTorch `nn.TransformerEncoderLayer` defaults): GELU, LayerNorm eps 1e-5.

    Initial weights as PyTorch's: Xavier over the fused q/k/v projection, default `nn.Linear` feed-forward.
    """

    def __init__(self, num_heads: int = 8, ff_dim: int = 1024, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.ff_dim, self.dropout = int(num_heads), int(ff_dim), float(dropout)
        policy = self.dtype_policy
        self.drop_attn = KeyedDropout(self.dropout, dtype=policy, name="drop_attn")
        self.drop_ff = KeyedDropout(self.dropout, dtype=policy, name="drop_ff")
        self.drop_mid = KeyedDropout(self.dropout, dtype=policy, name="drop_mid")
        self.norm_attn = keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name="norm_attn")
        self.norm_ff = keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name="norm_ff")

    def build(self, input_shape):
        dim = int(input_shape[-1])
        _check_heads(dim, self.num_heads, "the transformer encoder")
        policy = self.dtype_policy
        self.attention = KeyedAttention(
            self.num_heads,
            dim // self.num_heads,
            dropout=self.dropout,
            kernel_initializer=_fused_qkv_init(dim),
            dtype=policy,
            name="attention",
        )
        self.ff_in = _torch_linear(self.ff_dim, dim, "ff_in", policy, activation="gelu")
        self.ff_out = _torch_linear(dim, self.ff_dim, "ff_out", policy)
        self.attention.build(input_shape, input_shape)
        self.norm_attn.build(input_shape)
        self.norm_ff.build(input_shape)
        self.ff_in.build(input_shape)
        self.ff_out.build((*input_shape[:-1], self.ff_dim))

    def call(self, x, training=None):
        x = self.norm_attn(x + self.drop_attn(self.attention(x, x, training=training), training=training))
        ff = self.ff_out(self.drop_mid(self.ff_in(x), training=training))
        return self.norm_ff(x + self.drop_ff(ff, training=training))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "ff_dim": self.ff_dim, "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="archis")
class TransformerFusion(keras.layers.Layer):
    """Late fusion of two pooled vectors: [CLS, v + e_v, a + e_a] -> encoder layers -> CLS output [B, D]."""

    def __init__(self, num_layers: int = 2, num_heads: int = 8, ff_dim: int = 1024, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.num_heads, self.ff_dim, self.dropout = (
            int(num_layers),
            int(num_heads),
            int(ff_dim),
            float(dropout),
        )
        self.encoders = [
            EncoderLayer(num_heads, ff_dim, dropout, dtype=self.dtype_policy, name=f"encoder_{i}")
            for i in range(self.num_layers)
        ]

    def build(self, input_shape):
        dim = int(input_shape[0][-1])
        # the seed: trunc_normal_(std=0.02) cut at +-2 (absolute, i.e. never) and nn.Embedding's N(0, 1)
        self.cls_token = self.add_weight(
            name="cls_token", shape=(1, 1, dim), initializer=keras.initializers.RandomNormal(stddev=0.02)
        )
        self.modality_embedding = self.add_weight(
            name="modality_embedding", shape=(2, dim), initializer=keras.initializers.RandomNormal(stddev=1.0)
        )
        for encoder in self.encoders:
            encoder.build((None, 3, dim))

    def call(self, inputs, training=None):
        video, audio = inputs
        emb = ops.cast(self.modality_embedding, video.dtype)
        cls = ops.broadcast_to(ops.cast(self.cls_token, video.dtype), (ops.shape(video)[0], 1, video.shape[-1]))
        tokens = ops.concatenate([cls, (video + emb[0])[:, None], (audio + emb[1])[:, None]], axis=1)
        for encoder in self.encoders:
            tokens = encoder(tokens, training=training)
        return tokens[:, 0]

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="archis")
class BottleneckFusion(keras.layers.Layer):
    """Attention bottleneck (Nagrani et al. 2021) over two [B, N, D] sequences with LEARNABLE bottleneck tokens.

    In each layer video tokens attend over [video, bottleneck] and audio tokens over [audio, bottleneck]
    (separate encoders); the two updated bottleneck copies are averaged. Returns (video, audio) sequences.
    """

    def __init__(
        self,
        num_layers: int = 2,
        num_tokens: int = 4,
        num_heads: int = 8,
        ff_dim: int = 1024,
        dropout: float = 0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers, self.num_tokens = int(num_layers), int(num_tokens)
        self.num_heads, self.ff_dim, self.dropout = int(num_heads), int(ff_dim), float(dropout)
        policy = self.dtype_policy
        self.video_encoders, self.audio_encoders = (
            [
                EncoderLayer(num_heads, ff_dim, dropout, dtype=policy, name=f"{m}_encoder_{i}")
                for i in range(self.num_layers)
            ]
            for m in ("video", "audio")
        )

    def build(self, input_shape):
        dim = int(input_shape[0][-1])
        self.bottleneck = self.add_weight(
            name="bottleneck", shape=(self.num_tokens, dim), initializer=keras.initializers.TruncatedNormal(stddev=0.02)
        )
        for encoder in (*self.video_encoders, *self.audio_encoders):
            encoder.build((None, None, dim))

    def call(self, inputs, training=None):
        video, audio = inputs
        n_video, n_audio = video.shape[1], audio.shape[1]
        b = ops.broadcast_to(
            ops.cast(self.bottleneck, video.dtype)[None], (ops.shape(video)[0], self.num_tokens, video.shape[-1])
        )
        for enc_v, enc_a in zip(self.video_encoders, self.audio_encoders, strict=True):
            out_v = enc_v(ops.concatenate([video, b], axis=1), training=training)
            out_a = enc_a(ops.concatenate([audio, b], axis=1), training=training)
            video, audio = out_v[:, :n_video], out_a[:, :n_audio]
            b = 0.5 * (out_v[:, n_video:] + out_a[:, n_audio:])
        return video, audio

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_layers": self.num_layers,
            "num_tokens": self.num_tokens,
            "num_heads": self.num_heads,
            "ff_dim": self.ff_dim,
            "dropout": self.dropout,
        }
