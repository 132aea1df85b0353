"""The tf.distribute path of the training step: MirroredStrategy over two logical CPU devices (a stand-in
for two GPUs), in a subprocess because logical devices must be set before TensorFlow starts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soccer_highlights import synthetic
from tests.argv import train_argv

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from soccer_highlights.training import loop as training_loop

training_loop.make_strategy = lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
from soccer_highlights.commands import train as cmb
cmb.main(sys.argv[1:])
"""


@pytest.mark.slow
def test_mirrored_strategy_two_replicas(tmp_path):
    data = synthetic.generate_dataset(
        tmp_path / "d", n_games=3, half_minutes=1.0, seed=2, splits=(1, 1, 1), event_rate=8.0, progress=False
    )
    tflog = tmp_path / "m"
    # batch_windows 5: odd batches, the replicas get unequal shares
    argv = train_argv(
        data.lists, tflog, architecture="gmu", network=None, batch_size=None, LR=0.001, max_epoch=2, batch_windows=5
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "num_devices = 2" in proc.stderr
    summary = json.loads((tflog / "gmu_summary.json").read_text())
    assert summary["epochs"] == 2 and all(h["train_loss"] > 0 for h in summary["history"])
