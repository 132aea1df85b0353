"""Window-level metrics (NumPy, so training, prediction and ensembles share them) and their TensorBoard summaries."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The probabilities of logits, in their dtype (the model's own output head, applied after the fact)."""
    return 1 / (1 + np.exp(-logits))


def weighted_bce(logits: np.ndarray, labels: np.ndarray, pos_weight: np.ndarray) -> float:
    """Mean over windows of the class-summed `tf.nn.weighted_cross_entropy_with_logits`."""
    x, z = logits.astype(np.float64), labels.astype(np.float64)
    per = (1 - z) * x + (1 + (pos_weight - 1) * z) * np.logaddexp(0.0, -x)
    return float(per.sum(axis=1).mean()) if len(per) else 0.0


def tf1_pr_auc(probabilities: np.ndarray, labels: np.ndarray, num_thresholds: int = 200) -> float:
    """Area under the precision-recall curve as `tf.compat.v1.metrics.auc(curve="PR")` computes it (V&D's
    validation metric): counts at `num_thresholds` evenly spaced thresholds, trapezoidal sum, 1e-6
    smoothing. A class with no positive window scores 0."""
    inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
    thresholds = np.array([-1e-7, *inner, 1 + 1e-7], np.float32)
    p = probabilities.astype(np.float32)
    pos, neg = np.sort(p[labels > 0]), np.sort(p[labels <= 0])
    tp = (len(pos) - np.searchsorted(pos, thresholds, side="right")).astype(np.float64)
    fp = (len(neg) - np.searchsorted(neg, thresholds, side="right")).astype(np.float64)
    eps = 1e-6
    recall, precision = (tp + eps) / (len(pos) + eps), (tp + eps) / (tp + fp + eps)
    return float(np.sum((recall[:-1] - recall[1:]) * (precision[:-1] + precision[1:]) / 2))


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """AP per class (None where a class has no positive window), mAP over the non-background classes
    that have one, top-1 accuracy (argmax is one of the window's classes), argmax confusion matrix.
    `mAP_tf1_pr_auc`: V&D's number instead (`tf1_pr_auc` of the sigmoids, mean over every non-background
    class, 0 for a class with no positive)."""
    from sklearn.metrics import average_precision_score

    ap: dict[str, float | None] = {}
    for c, name in enumerate(classes):
        ap[name] = float(average_precision_score(labels[:, c], scores[:, c])) if labels[:, c].any() else None
    present = [v for name, v in ap.items() if name != classes[0] and v is not None]
    pred = scores.argmax(axis=1)
    true = labels.argmax(axis=1)
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(cm, (true, pred), 1)
    probs = sigmoid(scores.astype(np.float64))
    pr_auc = [tf1_pr_auc(probs[:, c], labels[:, c]) for c in range(1, len(classes))]
    return {
        "mAP": float(np.mean(present)) if present else None,
        "mAP_tf1_pr_auc": float(np.mean(pr_auc)) if pr_auc else None,
        "AP": ap,
        "accuracy": float(labels[np.arange(len(pred)), pred].mean()) if len(pred) else None,
        "confusion_matrix": cm.tolist(),
        "windows": int(len(labels)),
    }


def confusion_png(cm: list[list[int]], classes: list[str], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm_arr = np.asarray(cm, dtype=float)
    norm = cm_arr / np.maximum(cm_arr.sum(axis=1, keepdims=True), 1)
    size = 1.2 + 0.5 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=80)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted (argmax)")
    ax.set_ylabel("true (first class)")
    ax.set_title(title)
    if len(classes) <= 8:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(
                    j,
                    i,
                    str(int(cm_arr[i, j])),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_summaries(writer, step: int, scalars: dict[str, float | None], images: dict[str, bytes]) -> None:
    """TensorBoard scalars and PNG images through core `tf.summary.write` with the plugins' metadata, so
    logging needs no `tensorboard` package (viewing does)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    def meta(plugin: str, data_class: int) -> summary_pb2.SummaryMetadata:
        m = summary_pb2.SummaryMetadata(data_class=data_class)
        m.plugin_data.plugin_name = plugin
        return m

    with writer.as_default(step=step):
        for tag, value in scalars.items():
            if value is not None:
                tf.summary.write(
                    tag, tf.constant(float(value), tf.float32), metadata=meta("scalars", summary_pb2.DATA_CLASS_SCALAR)
                )
        for tag, png in images.items():
            shape = tf.shape(tf.image.decode_png(png))
            tensor = tf.stack([tf.strings.as_string(shape[1]), tf.strings.as_string(shape[0]), tf.constant(png)])
            tf.summary.write(tag, tensor, metadata=meta("images", summary_pb2.DATA_CLASS_BLOB_SEQUENCE))
    writer.flush()


def fmt(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:.3f}"
