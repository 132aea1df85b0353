"""Where this process stands in a training cluster: the tf.distribute strategy and the chief/worker role."""

from __future__ import annotations

import json
import os

from soccer_highlights.common.errors import UserError


def make_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG is set, MirroredStrategy with several GPUs, else the default."""
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def worker_role() -> tuple[bool, str]:
    """(is this process the chief, its temporary folder name) from TF_CONFIG: the `chief` task, else worker 0;
    without TF_CONFIG the one process is the chief."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return True, ""
    try:
        conf = json.loads(text)
        task_type, index = conf["task"]["type"], int(conf["task"]["index"])
        cluster = conf["cluster"]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"TF_CONFIG: not a cluster description with a task type and index ({exc})") from exc
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)
    return chief, f"workertemp_{task_type}_{index}"
