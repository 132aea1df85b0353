"""Signals at the worst moments: SIGTERM while ResNet-152 runs (in a thread, with TensorFlow busy) exits 143
with nothing written and never aborts in TensorFlow's teardown; SIGKILL of a run never leaves its ffmpeg running.
Each test starts the real command in a child process (a signal to pytest itself would stop the suite)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights.synthetic.video import make_match_video
from tests.argv import train_argv

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _wait_for(proc: subprocess.Popen, pattern: str, limit: float = 180) -> str:
    """stderr up to the first match of `pattern` (read one character at a time: tqdm writes no newlines)."""
    seen, deadline = "", time.monotonic() + limit
    while not re.search(pattern, seen) and proc.poll() is None and time.monotonic() < deadline:
        seen += proc.stderr.read(1)
    return seen


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    return make_match_video(tmp_path_factory.mktemp("v") / "long.mp4", 60, size="96x54")


# The abort was seen in 4 of 9 tries: 9 tries here (6 + 3) all miss it with probability (5/9)^9 < 0.5 %.
TRIES = {"extract --video": 6, "inference.py --video": 3}


def _command_line(command: str, video: Path, model: Path, out: Path) -> list[str]:
    if command == "extract --video":
        cmd = [sys.executable, "-m", "extract_features", "--video", str(video), "--out", str(out)]
        return [*cmd, "--frames_per_call", "8", "--weights", "random"]
    cmd = [sys.executable, str(ROOT / "inference.py"), "--model", str(model), "--out", str(out)]
    return [*cmd, "--video", str(video), "--weights", "random"]


def _interrupt(cmd: list[str], signum: int, delay: float) -> tuple[int, str]:
    """Start `cmd`, send `signum` `delay` s after its first progress count above 0 (the networks are running);
    return its exit code and stderr."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = _wait_for(proc, r" [1-9]\d*/\d+ ")
        time.sleep(delay)
        assert proc.poll() is None, seen + proc.stderr.read()
        proc.send_signal(signum)
        err = seen + proc.communicate(timeout=120)[1]
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("command", list(TRIES))
def test_sigterm_while_resnet_runs_exits_143_every_time(command, long_video, tiny_model, tmp_path):
    """SIGTERM once ResNet-152 has begun its batches, at a different moment of them each try (0 to 0.75 s after
    the first progress count): 143 every time, one last line, no abort, no file written."""
    out = tmp_path / "out"
    codes = []
    for i in range(TRIES[command]):
        code, err = _interrupt(_command_line(command, long_video, tiny_model, out), signal.SIGTERM, 0.25 * (i % 4))
        codes.append(code)
        assert "terminate called" not in err and "FATAL" not in err and "Traceback" not in err, err[-3000:]
        assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)", err[-3000:]
        assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
    assert codes == [143] * TRIES[command]


@pytest.mark.slow
def test_ctrl_c_while_resnet_runs_exits_130(long_video, tiny_model, tmp_path):
    """SIGINT (Ctrl-C) at the same moment takes the same path: 130, "error: interrupted", nothing written."""
    out = tmp_path / "out"
    for delay in (0.0, 0.5):
        code, err = _interrupt(_command_line("inference.py --video", long_video, tiny_model, out), signal.SIGINT, delay)
        assert code == 130 and "terminate called" not in err and "Traceback" not in err, err[-3000:]
        assert err.strip().splitlines()[-1] == "error: interrupted", err[-3000:]
        assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


# What stands in for ffmpeg: a wrapper that records its own id, then for the reel's cut (the run with `-progress`)
# either hangs (`sleep`) or execs the real ffmpeg reading its input at a tenth of real time, so the cut outlasts
# the test's wait by far; any other ffmpeg run (probing) is the real one at full speed.
_HANG = "exec sleep 120"
_SLOW = 'exec "{real}" -readrate 0.1 "$@"'


@pytest.mark.parametrize("cut", ["hanging ffmpeg", "real ffmpeg"])
def test_sigkill_during_the_reel_leaves_no_ffmpeg(cut, tiny_model, tmp_path):
    """SIGKILL of the run while ffmpeg cuts the reel: the kernel ends ffmpeg with it (within a few seconds, not
    when the cut would have ended), so nothing goes on writing into the output folder."""
    import imageio_ffmpeg

    real = os.environ.get("FFMPEG_BINARY") or imageio_ffmpeg.get_ffmpeg_exe()
    fake = tmp_path / "ffmpeg"
    then = (_HANG if cut == "hanging ffmpeg" else _SLOW).format(real=real)
    fake.write_text(f'#!/bin/sh\ncase "$*" in *-progress*) echo $$ > "{tmp_path}/cutting"; {then};; esac\n'
                    f'exec "{real}" "$@"\n')  # fmt: skip
    fake.chmod(0o755)
    video = make_match_video(tmp_path / "m.mp4", 20, size="64x36")
    for name in ("v", "a"):
        np.save(tmp_path / f"{name}.npy", np.random.default_rng(0).standard_normal((40, 512)).astype(np.float32))
    cmd = [sys.executable, str(ROOT / "inference.py"), "--model", str(tiny_model), "--out", str(tmp_path / "out")]
    cmd += ["--video", str(video), "--features_video", str(tmp_path / "v.npy")]
    cmd += ["--features_audio", str(tmp_path / "a.npy"), "--quiet"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**ENV, "FFMPEG_BINARY": str(fake)}, stderr=subprocess.PIPE, start_new_session=True
    )
    ffmpeg = None
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "cutting").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "cutting").exists(), proc.stderr.read().decode()[-2000:]
        ffmpeg = int((tmp_path / "cutting").read_text())
        want = "sleep" if cut == "hanging ffmpeg" else "ffmpeg"
        deadline = time.monotonic() + 10
        while not _command(ffmpeg).startswith(want) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the wrapper has exec'd it
        assert _command(ffmpeg).startswith(want), _command(ffmpeg)
        proc.kill()  # SIGKILL: no handler, no clean-up of its own
        proc.wait()
        deadline = time.monotonic() + 5
        while _running(ffmpeg) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(ffmpeg), f"{_command(ffmpeg)} outlived the run that started it"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if ffmpeg is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(ffmpeg, signal.SIGKILL)


def test_sigkill_of_a_live_run_leaves_no_recorder(tiny_model, tmp_path):
    """SIGKILL of a live run waiting for its stream: the recording ffmpeg (started by a worker thread) ends with
    it instead of listening on the port for ever."""
    import imageio_ffmpeg

    real = os.environ.get("FFMPEG_BINARY") or imageio_ffmpeg.get_ffmpeg_exe()
    fake = tmp_path / "ffmpeg"
    fake.write_text(f'#!/bin/sh\ncase "$*" in *-segment_list*) echo $$ > "{tmp_path}/recording";; esac\n'
                    f'exec "{real}" "$@"\n')  # fmt: skip
    fake.chmod(0o755)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # free now; nothing will ever be sent to it
    cmd = [sys.executable, str(ROOT / "inference.py"), "--model", str(tiny_model), "--out", str(tmp_path / "out")]
    cmd += ["--live", f"udp://127.0.0.1:{port}", "--live_stall", "60", "--weights", "random", "--quiet"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**ENV, "FFMPEG_BINARY": str(fake)}, stderr=subprocess.PIPE, start_new_session=True
    )
    ffmpeg = None
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "recording").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "recording").exists(), proc.stderr.read().decode()[-2000:]
        ffmpeg = int((tmp_path / "recording").read_text())
        deadline = time.monotonic() + 10
        while not _command(ffmpeg).startswith("ffmpeg") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _command(ffmpeg).startswith("ffmpeg"), _command(ffmpeg)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while _running(ffmpeg) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(ffmpeg), "the recorder outlived the live run that started it"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if ffmpeg is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(ffmpeg, signal.SIGKILL)


def _command(pid: int) -> str:
    """The command name of `pid` (empty once it has gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _running(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent to reap it counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
def test_sigterm_while_training_exits_143_and_leaves_no_temporary_or_lock_file(tmp_path):
    """SIGTERM once the training loop runs (TensorFlow busy in the main thread): 143, no abort, no temporary
    files, the lock released."""
    game = tmp_path / "data" / "game"
    game.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for half in (1, 2):
        for feature in ("ResNET_TF2_PCA512", "VGGish"):
            np.save(game / f"{half}_{feature}.npy", rng.standard_normal((240, 512)).astype(np.float32))
    (game / "Labels-v2.json").write_text('{"annotations": [{"gameTime": "1 - 00:10", "label": "Goal"}]}')
    np.save(tmp_path / "data" / "list.npy", np.array(["game"]))
    (tmp_path / "goal.json").write_text('{"labels": {"goal": ["Goal"]}}')  # a positive window of every class
    lst, model = str(tmp_path / "data" / "list.npy"), tmp_path / "Model"
    cmd = [sys.executable, str(ROOT / "ClassificationMinuteBased.py")]
    cmd += train_argv(lst, model, max_epoch=200, cache_dir=tmp_path / "cache", class_map=tmp_path / "goal.json")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        while "class weights" not in seen and proc.poll() is None:
            seen += proc.stdout.readline()
        time.sleep(3)  # into the epochs
        assert proc.poll() is None, seen + proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1]
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode == 143 and "terminate called" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)", err[-3000:]
    assert not [p for p in model.rglob(".*")], list(model.rglob(".*"))
