"""Issue 28, items 1, 4, 12, 13, 14: batch-norm at evaluation, the seed's loss scale, independent initial weights,
the running variance and the L2 floor, each against numbers worked out in NumPy from the original's code.

Originals: V&D = bastienvanderplaetse/SoccerNetMultimodalActionSpotting (TF1), the seed =
Donghwan127/video-highlight-extraction (PyTorch).
"""

from __future__ import annotations

import numpy as np
import pytest

from soccer_highlights import archis
from soccer_highlights.archis.pooling import L2_EPS, NetVLAD, double_l2_normalize
from soccer_highlights.archis.stepnorm import SetStatistics, StepBatchNorm, model_forward, population_statistics

TINY = {"vlad_k": 4, "window_seconds": 4, "class_names": ("background", "a", "b")}  # 8 tokens, 3 classes


def _bn(eval_mode="moving", unbiased=False, momentum=0.9, k=3):
    layer = StepBatchNorm(0, eval_mode, unbiased, momentum=momentum, epsilon=1e-3)
    layer.build((None, k))
    layer.gamma.assign(np.array([1.5, 0.5, 2.0][:k], np.float32))
    layer.beta.assign(np.array([0.1, -0.2, 0.3][:k], np.float32))
    return layer


def _slim_batch_norm(x, gamma, beta, eps=1e-3):
    """V&D, loupe.py NetVLAD/NetRVLAD.forward: slim.batch_norm(..., is_training=True): the batch's own moments
    (tf.nn.moments: the biased variance), whatever the phase."""
    mean, var = x.mean(0), x.var(0)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


# -- item 1: batch-norm statistics at evaluation ---------------------------------------------------------------


def test_batch_mode_evaluates_with_the_batch_moments_as_vd_slim():
    """networks.py builds every NetVLAD / NetRVLAD with is_training=True: evaluation normalises with the moments
    of the batch in hand, as training does, and the moving averages are never read."""
    layer = _bn("batch")
    x = np.random.default_rng(0).normal(3.0, 2.0, (6, 3)).astype(np.float32)
    want = _slim_batch_norm(x, layer.gamma.numpy(), layer.beta.numpy())
    np.testing.assert_allclose(layer(x, training=False).numpy(), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer(x, training=True).numpy(), want, rtol=1e-5, atol=1e-5)


def test_set_statistics_over_chunks_are_the_whole_half_s():
    """V&D's evaluation batch is one half (dataset.py getValidationBatch / getTestingBatch: one key per half): a
    half read in any chunks normalises with the moments of all its windows."""
    layer = _bn("batch")
    x = np.random.default_rng(1).normal(-1.0, 3.0, (11, 3)).astype(np.float32)

    class Model:  # the one layer as a model: SetStatistics needs only its batch-norms and a forward
        def _flatten_layers(self):
            return [layer]

    def forward(v):
        return layer(v, training=False)

    stats = SetStatistics(Model(), forward)
    out = np.concatenate([o.numpy() for o in stats(lambda: ((x[i : i + 4],) for i in range(0, 11, 4)))])
    np.testing.assert_allclose(out, _slim_batch_norm(x, layer.gamma.numpy(), layer.beta.numpy()), atol=2e-5)


def _windows(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 512)).astype(np.float32), rng.normal(size=(n, 8, 512)).astype(np.float32)


@pytest.mark.slow
def test_a_half_scores_the_same_whatever_the_chunk_size_and_the_other_halves():
    """With V&D's batch statistics (two batch-norm depths: cluster and gating), a half's scores are those of the
    whole half in one call, whatever the chunk size; another half scored in the same run changes nothing."""
    model = archis.build_model("concat", seed=3, **TINY)
    assert archis.model_info(model).bn_eval == "batch"
    video, audio = _windows(13, 0)
    other_v, other_a = _windows(5, 1)
    whole = archis.predict_function(model)(video, audio).numpy()  # one call = V&D's batch of one half
    predictor = archis.set_predictor(model)
    assert predictor.per_set
    for size in (1, 4, 13):
        got = predictor(lambda s=size: ((video[i : i + s], audio[i : i + s]) for i in range(0, 13, s)))
        np.testing.assert_allclose(got, whole, rtol=1e-4, atol=1e-5)
    predictor(lambda: [(other_v, other_a)])  # another half in between
    again = predictor(lambda: [(video[:7], audio[:7]), (video[7:], audio[7:])])
    np.testing.assert_allclose(again, whole, rtol=1e-4, atol=1e-5)
    mixed = archis.predict_function(model)(np.concatenate([video, other_v]), np.concatenate([audio, other_a]))
    assert np.abs(mixed.numpy()[:13] - whole).max() > 1e-4  # what one call over two halves would have done


def test_corrected_mode_removes_the_initial_moving_averages():
    """(d) bias-corrected moving averages: after t updates, (moving - momentumᵗ · initial) / (1 - momentumᵗ),
    initial mean 0 and variance 1: the average of the batch moments alone."""
    layer = _bn("corrected", momentum=0.9)
    rng = np.random.default_rng(2)
    batches = [rng.normal(5.0, 3.0, (8, 3)).astype(np.float32) for _ in range(3)]
    mean, var, m = np.zeros(3), np.ones(3), 0.9
    for b in batches:
        layer(b, training=True)
        mean, var = m * mean + (1 - m) * b.mean(0), m * var + (1 - m) * b.var(0)
    w = 1 - m**3
    want_mean, want_var = mean / w, (var - m**3) / w
    x = rng.normal(size=(4, 3)).astype(np.float32)
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    want = gamma * (x - want_mean) / np.sqrt(want_var + 1e-3) + beta
    np.testing.assert_allclose(layer(x, training=False).numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_population_mode_sets_the_moving_averages_to_the_training_windows_moments():
    """(c) population statistics: the moments of every training window, depth by depth."""
    model = archis.build_model("concat", seed=4, bn_eval="population", **TINY)
    video, audio = _windows(9, 5)
    population_statistics(model, lambda: ((video[i : i + 4], audio[i : i + 4]) for i in range(0, 9, 4)))
    # equal to batch statistics over the same 9 windows in one call
    twin = archis.build_model("concat", seed=4, bn_eval="batch", **TINY)
    twin.set_weights(model.get_weights())
    want = archis.predict_function(twin)(video, audio).numpy()
    np.testing.assert_allclose(archis.predict_function(model)(video, audio).numpy(), want, rtol=1e-4, atol=1e-5)


def test_defaults_follow_the_originals_and_old_files_mean_moving():
    assert archis.make_spec("AudioVideoArchi5").bn_eval == "batch"  # V&D: is_training=True
    assert archis.make_spec("GMU").bn_eval == "moving"  # the seed: network.eval()
    assert archis.ModelSpec.from_json({"architecture": "concat"}).bn_eval == "moving"


# -- item 13: the running variance -----------------------------------------------------------------------------


def _torch_running_var(batches, momentum=0.1):
    """The seed's nn.BatchNorm1d (loupe.py cluster_bn / gating_bn) in training: running_var =
    (1 - momentum) · running_var + momentum · unbiased batch variance (PyTorch's documented update)."""
    var = np.ones(batches[0].shape[1])
    for b in batches:
        var = (1 - momentum) * var + momentum * b.var(0, ddof=1)
    return var


def test_unbiased_running_variance_as_pytorch_and_biased_as_tf1_slim():
    rng = np.random.default_rng(6)
    batches = [rng.normal(0.0, 2.0, (5, 3)).astype(np.float32) for _ in range(2)]
    seed, vd = _bn(unbiased=True, momentum=0.9), _bn(unbiased=False, momentum=0.9)
    for b in batches:
        seed(b, training=True)
        vd(b, training=True)
    np.testing.assert_allclose(seed.moving_variance.numpy(), _torch_running_var(batches), rtol=1e-5)
    biased = np.ones(3)
    for b in batches:  # V&D: slim.batch_norm's moving variance moves with tf.nn.moments' (biased) variance
        biased = 0.9 * biased + 0.1 * b.var(0)
    np.testing.assert_allclose(vd.moving_variance.numpy(), biased, rtol=1e-5)


@pytest.mark.slow
def test_seed_families_get_the_unbiased_variance():
    def flags(name):
        model = archis.build_model(name, **TINY)
        return {layer.unbiased for layer in model._flatten_layers() if isinstance(layer, StepBatchNorm)}

    assert flags("gmu") == {True} and flags("concat") == {False}


@pytest.mark.slow
def test_whole_step_statistics_move_the_running_variance_unbiased():
    """A seed model's step in micro-batches (training.wholestep): the cluster batch-norm's running variance moves
    once with the whole step's unbiased variance over its B·N rows, as the seed's BatchNorm1d on [B·N, K]."""
    import keras
    import tensorflow as tf

    from soccer_highlights.training.step import AccumulatingStep, split_step

    model = archis.build_model("gmu", seed=2, dropout=0.0, **TINY)
    optimizer = keras.optimizers.SGD(0.0)
    optimizer.build(model.trainable_variables)
    stepper = AccumulatingStep(model, optimizer, np.ones(3, np.float32), tf.distribute.get_strategy())
    video, audio = _windows(10, 4)
    labels = np.zeros((10, 3), np.float32)
    pool = model.get_layer("video_pool")
    rows = (video @ pool.cluster_weights.numpy()).reshape(-1, 4)  # the cluster batch-norm's input, [B·N, K]
    plan = split_step(np.arange(10), 1, 4)
    for p in range(stepper.passes(len(plan))):
        for j, part in enumerate(plan):
            stepper.micro({0: (video[part[0]], audio[part[0]], labels[part[0]])}, j, len(plan), 10, p)
    want = 0.9 * 1.0 + 0.1 * rows.astype(np.float64).var(0, ddof=1)
    np.testing.assert_allclose(pool.cluster_bn.moving_variance.numpy(), want, rtol=1e-4)


# -- item 14: the L2-normalisation floor -----------------------------------------------------------------------


def _tf_l2(x, axis):
    """tf.nn.l2_normalize (V&D's loupe.py): x * rsqrt(max(sum x², 1e-12))."""
    return x / np.sqrt(np.maximum((x.astype(np.float64) ** 2).sum(axis, keepdims=True), 1e-12))


def _torch_l2(x, axis):
    """F.normalize (the seed's loupe.py): x / max(||x||, 1e-12)."""
    return x / np.maximum(np.sqrt((x.astype(np.float64) ** 2).sum(axis, keepdims=True)), 1e-12)


def test_l2_floor_on_a_nearly_empty_cluster():
    """Cluster 0 of a VLAD descriptor with a residual norm of 5e-7 (squared 2.5e-13, under TF's floor): V&D
    scales it to norm 0.5, the seed to norm 1."""
    rng = np.random.default_rng(7)
    vlad = rng.normal(size=(2, 3, 6))
    vlad[:, 0] *= 5e-7 / np.linalg.norm(vlad[:, 0], axis=-1, keepdims=True)
    for floor, ref in (("squared", _tf_l2), ("norm", _torch_l2)):
        want = ref(ref(vlad, 2).reshape(2, -1), 1).reshape(vlad.shape)
        got = np.asarray(double_l2_normalize(vlad.astype(np.float32), L2_EPS[floor]))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    squared = np.asarray(double_l2_normalize(vlad.astype(np.float32), L2_EPS["squared"]))
    norm = np.asarray(double_l2_normalize(vlad.astype(np.float32), L2_EPS["norm"]))
    assert np.abs(squared - norm).max() > 0.01


@pytest.mark.slow
def test_l2_floor_defaults_per_family():
    assert archis.make_spec("concat").l2_floor == "squared" and archis.make_spec("gmu").l2_floor == "norm"
    layer = archis.build_model("gmu", pooling="NetVLAD", **TINY).get_layer("video_pool")
    assert isinstance(layer, NetVLAD) and layer.l2_floor == "norm"


# -- item 12: every tensor drawn independently -----------------------------------------------------------------


def test_every_weight_tensor_is_drawn_independently():
    """Both originals draw every tensor on its own (V&D: one tf.random_normal_initializer per tf.get_variable;
    the seed: one torch.randn per nn.Parameter); one shared Keras initializer gave cluster_weights2 the values of
    cluster_weights and every bias the first row of its weight matrix."""
    vlad = NetVLAD(4, 6, residual=True, use_batch_norm=False, context_gating=True)
    vlad.build((None, 5, 7))
    w, w2, b = (v.numpy() for v in (vlad.cluster_weights, vlad.cluster_weights2, vlad.cluster_biases))
    assert not np.allclose(w, w2)
    assert not np.allclose(b, w.reshape(-1)[: b.size])
    gating = vlad.gating
    gw, gb = gating.gating_weights.numpy(), gating.gating_biases.numpy()
    assert not np.allclose(gb, gw.reshape(-1)[: gb.size])
    head = archis.build_model("gmu", **TINY).get_layer("logits")  # the seed's nn.Linear init
    kernel, bias = (v.numpy() for v in head.weights)
    assert not np.allclose(bias, kernel.reshape(-1)[: bias.size])


@pytest.mark.slow
def test_initial_weights_follow_the_model_seed():
    a, b = (archis.build_model("concat", seed=5, **TINY).get_weights() for _ in range(2))
    c = archis.build_model("concat", seed=6, **TINY).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


# -- item 4: the seed's loss scale -----------------------------------------------------------------------------


def _bce_mean_grad(logits, labels, pos_weight):
    """d/dlogits of the seed's nn.BCEWithLogitsLoss(pos_weight=w) (trainer.py; reduction 'mean' over batch and
    classes): loss = mean(-(w y log σ(x) + (1 - y) log(1 - σ(x)))), so dL/dx = ((1 + (w - 1) y) σ(x) - w y) / (B C)."""
    s = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return ((1 + (pos_weight - 1) * labels) * s - pos_weight * labels) / labels.size


@pytest.mark.slow
def test_seed_loss_is_the_mean_over_windows_and_classes():
    """One SGD step (lr 1) moves the classifier bias by minus the loss gradient summed over the windows: with
    `mean_classes`, the seed's BCEWithLogitsLoss; with `sum_classes` (V&D's), C times that."""
    import keras
    import tensorflow as tf

    from soccer_highlights.training.step import AccumulatingStep

    rng = np.random.default_rng(8)
    video, audio = _windows(6, 9)
    labels = (rng.random((6, 3)) < 0.4).astype(np.float32)
    pos_weight = np.array([0.2, 0.5, 0.3], np.float32)
    moved = {}
    for reduction in ("mean_classes", "sum_classes"):
        model = archis.build_model("gmu", seed=1, dropout=0.0, **TINY)
        optimizer = keras.optimizers.SGD(1.0)
        optimizer.build(model.trainable_variables)
        stepper = AccumulatingStep(model, optimizer, pos_weight, tf.distribute.get_strategy(), loss_reduction=reduction)
        bias = model.get_layer("logits").bias.numpy().copy()
        logits, _ = stepper.micro({0: (video, audio, labels)}, 0, 1, 6)
        moved[reduction] = model.get_layer("logits").bias.numpy() - bias
        if reduction == "mean_classes":
            np.testing.assert_allclose(moved[reduction], -_bce_mean_grad(logits, labels, pos_weight).sum(0), atol=1e-6)
    np.testing.assert_allclose(moved["sum_classes"], 3 * moved["mean_classes"], rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_model_forward_reads_dict_inputs():
    model = archis.build_model("concat", seed=2, **TINY)
    video, audio = _windows(2, 3)
    assert model_forward(model)(video, audio).shape == (2, 3)


@pytest.mark.slow
def test_the_scorer_normalises_a_whole_half_by_its_moments_and_a_live_range_by_the_moving_averages():
    """Offline (`score_half`): V&D's batch, the half, whatever `--windows_per_call`; live ranges: moving averages."""
    from soccer_highlights.spotting.spots import Scorer

    model = archis.build_model("concat", seed=3, **TINY)
    rng = np.random.default_rng(10)
    video, audio = rng.normal(size=(41, 512)).astype(np.float32), rng.normal(size=(41, 512)).astype(np.float32)
    halves = [Scorer(model, batch_size=b).score_half(video, audio, progress=False) for b in (3, 256)]
    np.testing.assert_allclose(halves[0], halves[1], rtol=1e-4, atol=1e-6)
    moving = archis.build_model("concat", seed=3, bn_eval="moving", **TINY)
    moving.set_weights(model.get_weights())
    live = Scorer(model, batch_size=3).score_range(video, audio, 0, 5)
    np.testing.assert_allclose(live, Scorer(moving).score_range(video, audio, 0, 5), rtol=1e-5, atol=1e-6)


def test_the_loss_reduction_follows_the_preset_and_is_recorded_in_the_model():
    from soccer_highlights.training.config import TrainConfig
    from soccer_highlights.training.loop import training_record
    from soccer_highlights.training.presets import preset_for

    assert preset_for("GMU").loss_reduction == "mean_classes"  # the seed's trainer.py: BCEWithLogitsLoss, 'mean'
    assert preset_for("AudioVideoArchi5").loss_reduction == "sum_classes"  # V&D's: summed over classes
    assert training_record(TrainConfig(loss_reduction="mean_classes"))["loss_reduction"] == "mean_classes"
