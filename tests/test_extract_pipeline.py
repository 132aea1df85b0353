"""End to end with random weights: shapes and the token rule, audio/video alignment, determinism, errors,
the CLI (single video, tree batch, shards, resume after a killed run), PCA files. ResNet-152 is built once
per process (pipeline caches it) and runs on a handful of frames."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights.commands.extract import main
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.ffmpeg import ffmpeg_exe, media_arg
from soccer_highlights.extract_features import extract_file, pca, read_recipe
from soccer_highlights.extract_features.pipeline import ExtractConfig, Extractor
from tests.media import make_video, source_frames

ROOT = Path(__file__).resolve().parents[1]


def tone_after_one_second(path: Path, seconds: float = 2.0) -> Path:
    """Video with silence for 1 s, then a loud tone: the audio features must change exactly at token 2."""
    subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30000/1001",
            "-f",
            "lavfi",
            "-i",
            "aevalsrc='if(gte(t,1),0.5*sin(2*PI*440*t),0)':s=22050",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "pcm_s16le",
            media_arg(path),
        ],
        check=True,
    )
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pipeline")
    return {
        "tone": tone_after_one_second(d / "tone 4x3.mkv"),
        "wide": make_video(d / "wide.mp4", 1.0),
        "short": make_video(d / "short.mp4", 0.7),
        "tiny": make_video(d / "tiny.mp4", 0.3),
        "noaudio": make_video(d / "noaudio.mp4", 1.0, audio=False),
    }


def run(path, **kw):
    return extract_file(path, weights="random", batch_size=3, progress=False, **kw)


@pytest.mark.slow
def test_numpy_blas_runs_on_one_thread_while_the_stages_run(videos, monkeypatch):
    """Log-mel and the PCA are small products: their BLAS threads would only spin on the networks' cores. The
    extraction sets one thread while its stages run and gives the caller's setting back afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from soccer_highlights.extract_features import logmel

    def blas_threads() -> int:
        return max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")

    Extractor(ExtractConfig(weights="random")).vggish.silence()  # its one log-mel, made after the stages, now
    seen, real = [], logmel.log_mel

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(logmel, "log_mel", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == 2
        run(videos["short"])
        assert blas_threads() == 2
    assert seen and set(seen) == {1}


@pytest.mark.slow
def test_shapes_rule_alignment_and_determinism(videos):
    first = run(videos["tone"])
    tokens = math.floor(2 * source_frames(videos["tone"]) / (30000 / 1001) + 1e-9)
    assert first.video.shape == first.audio.shape == (tokens, 512)
    assert first.video.dtype == first.audio.dtype == np.float32
    assert np.isfinite(first.video).all() and np.isfinite(first.audio).all()
    assert first.info["weights"] == "random" and first.info["pca"]["kind"] == "random_orthonormal"
    assert first.info["halves"]["1"]["tokens"] == tokens
    clock = first.info["halves"]["1"]["backbone_seconds"]  # the network's time and its wait for frames
    assert (
        clock["busy"] > 0
        and clock["idle"] >= 0
        and clock["busy"] + clock["idle"] <= first.info["halves"]["1"]["seconds"] + 0.1
    )
    assert first.info["recipe"] == {"video": "soccernet", "audio": "channel_mean"}
    silence = Extractor(ExtractConfig(weights="random")).vggish.silence()
    # tokens 0, 1 cover [0, 1) s: silent; tokens 2, 3 cover the tone
    assert np.allclose(first.audio[:2], silence, atol=1e-5)
    assert not np.allclose(first.audio[2], silence, atol=1e-3)
    again = run(videos["tone"])
    np.testing.assert_allclose(again.video, first.video, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(again.audio, first.audio)
    assert not np.allclose(first.video[0], first.video[-1])  # different frames, different features


@pytest.mark.slow
def test_short_video_and_silent_audio(videos):
    short = run(videos["short"])
    assert short.video.shape == short.audio.shape == (1, 512)  # 0.7 s -> floor(1.4) = 1 token
    assert run(videos["short"], recipe="rgb").video.shape == (2, 512)  # ceil(1.4)
    with pytest.raises(UserError, match="tiny.mp4: no video tokens"):
        run(videos["tiny"])  # 0.3 s: no complete half second
    with pytest.raises(UserError, match="noaudio.mp4: no audio stream"):
        run(videos["noaudio"])
    silent = run(videos["noaudio"], silent_audio=True)
    assert silent.audio.shape == (2, 512) and silent.info["halves"]["1"]["silent_audio"] is True
    assert np.allclose(silent.audio, silent.audio[0])


def test_not_a_video_and_audio_only(tmp_path):
    with pytest.raises(UserError, match="missing.mp4: no such file"):
        run(tmp_path / "missing.mp4")
    text = tmp_path / "clip.mp4"
    text.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="clip.mp4"):
        run(text)
    wav = tmp_path / "sound.wav"
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i", "sine", "-t", "1", media_arg(wav)], check=True
    )
    with pytest.raises(UserError, match="no video stream"):
        run(wav)


def test_missing_resnet_weights_and_pca(tmp_path, videos):
    with pytest.raises(UserError, match="--pca FILE.npz is required"):
        extract_file(videos["wide"], weights="imagenet")
    with pytest.raises(UserError, match="nothing.h5: no such ResNet-152 weights file"):
        run(videos["wide"], resnet_weights=tmp_path / "nothing.h5")
    with pytest.raises(UserError, match="no such PCA file"):
        run(videos["wide"], pca=tmp_path / "pca.npz")


@pytest.mark.slow
def test_cli_single_video_two_halves(videos, tmp_path):
    out = tmp_path / "game"
    assert (
        main(
            [
                "--video",
                str(videos["wide"]),
                "--out",
                str(out),
                "--weights",
                "random",
                "--half",
                "2",
                "--frames_per_call",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["--video", str(videos["short"]), "--out", str(out), "--weights", "random", "--quiet"]) == 0
    v2, a2 = np.load(out / "2_ResNET_TF2_PCA512.npy"), np.load(out / "2_VGGish.npy")
    assert v2.shape == a2.shape == (2, 512)
    assert np.load(out / "1_VGGish.npy").shape == (1, 512)
    record = json.loads((out / "extraction.json").read_text())
    assert record["weights"] == "random" and sorted(record["halves"]) == ["1", "2"]


@pytest.mark.slow
def test_pca_save_load_fit_and_convert(tmp_path):
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 40)) @ rng.standard_normal((40, pca.INPUT_DIM)) + 3.0
    fitted = pca.fit_pca([x[:100], x[100:]], output_dim=8)
    ref = PCA(8, svd_solver="full").fit(x - x.mean(0))
    np.testing.assert_allclose(fitted.transform(x), ref.transform(x - x.mean(0)), atol=1e-3)
    pca.save_pca(tmp_path / "p.npz", fitted)
    loaded = pca.load_pca(tmp_path / "p.npz")
    np.testing.assert_array_equal(loaded.components, fitted.components)
    np.testing.assert_array_equal(loaded.transform(x), fitted.transform(x))
    # SoccerNet's pickles: average (array) + scikit-learn PCA fitted on x - average
    with open(tmp_path / "average.pkl", "wb") as fh:
        pickle.dump(x.mean(0), fh)
    with open(tmp_path / "pca.pkl", "wb") as fh:
        pickle.dump(ref, fh)
    with pytest.raises(UserError, match="--allow_pickle"):
        pca.convert_soccernet(tmp_path / "average.pkl", tmp_path / "pca.pkl", allow_pickle=False)
    assert (
        main(
            [
                "convert_pca",
                "--average",
                str(tmp_path / "average.pkl"),
                "--pca",
                str(tmp_path / "pca.pkl"),
                "--allow_pickle",
                "--out",
                str(tmp_path / "sn.npz"),
            ]
        )
        == 0
    )
    np.testing.assert_allclose(pca.load_pca(tmp_path / "sn.npz").transform(x), ref.transform(x - x.mean(0)), atol=1e-3)
    with pytest.raises(UserError, match="a pickle"):
        pca.load_pca(tmp_path / "pca.pkl")
    np.save(tmp_path / "1_ResNET_TF2.npy", x[:150].astype(np.float32))
    np.save(tmp_path / "2_ResNET_TF2.npy", x[150:].astype(np.float32))
    assert main(["fit_pca", str(tmp_path), "--dim", "8", "--out", str(tmp_path / "fit.npz")]) == 0
    refit = pca.load_pca(tmp_path / "fit.npz")
    np.testing.assert_allclose(np.abs(refit.transform(x)), np.abs(fitted.transform(x)), rtol=1e-3, atol=1e-2)
    # the recipe travels: SoccerNet's pickles are its recipe; features without extraction.json are SoccerNet's
    assert pca.load_pca(tmp_path / "sn.npz").recipe == refit.recipe == "soccernet"


@pytest.mark.slow
def test_pca_recipe_provenance_and_mismatch_warning(tmp_path, capsys):
    rng = np.random.default_rng(1)
    (tmp_path / "ours").mkdir()
    np.save(tmp_path / "ours" / "1_ResNET_TF2.npy", rng.standard_normal((20, pca.INPUT_DIM)).astype(np.float32))
    (tmp_path / "ours" / "extraction.json").write_text(json.dumps({"settings": {}}))  # written before recipes
    assert read_recipe(tmp_path / "ours") == {"video": "rgb", "audio": "ffmpeg_downmix"}
    assert main(["fit_pca", str(tmp_path / "ours"), "--dim", "4", "--out", str(tmp_path / "rgb.npz")]) == 0
    assert pca.load_pca(tmp_path / "rgb.npz").recipe == "rgb"
    Extractor(ExtractConfig(weights="random", pca=str(tmp_path / "rgb.npz")))
    assert "fitted on features of the 'rgb' video recipe" in capsys.readouterr().err
    (tmp_path / "theirs").mkdir()
    np.save(tmp_path / "theirs" / "1_ResNET_TF2.npy", rng.standard_normal((20, pca.INPUT_DIM)).astype(np.float32))
    with pytest.raises(UserError, match="mix video recipes"):
        main(
            [
                "fit_pca",
                str(tmp_path / "ours"),
                str(tmp_path / "theirs"),
                "--dim",
                "4",
                "--out",
                str(tmp_path / "mixed.npz"),
            ]
        )
    assert not (tmp_path / "mixed.npz").exists()


@pytest.mark.parametrize("content", [{"not": "an array"}, "text", ["a", "b"], np.zeros(100)])
def test_convert_pca_refuses_other_pickles(tmp_path, content):
    with open(tmp_path / "average.pkl", "wb") as fh:
        pickle.dump(content, fh)
    with open(tmp_path / "pca.pkl", "wb") as fh:
        pickle.dump({"components_": 1}, fh)
    with pytest.raises(UserError, match="average.pkl|pca.pkl"):
        main(
            [
                "convert_pca",
                "--average",
                str(tmp_path / "average.pkl"),
                "--pca",
                str(tmp_path / "pca.pkl"),
                "--allow_pickle",
                "--out",
                str(tmp_path / "out.npz"),
            ]
        )
    assert not (tmp_path / "out.npz").exists()


def make_tree(root: Path, source: Path, games: int) -> list[Path]:
    folders = []
    for g in range(games):
        folder = root / "league" / "2020-2021" / f"game {g}"
        folder.mkdir(parents=True)
        os.link(source, folder / "1_224p.mkv")
        os.link(source, folder / "1_720p.mkv")  # 224p is preferred
        folders.append(folder)
    return folders


@pytest.mark.slow
def test_shards_split_by_game(videos, tmp_path):
    folders = make_tree(tmp_path, videos["short"], 3)
    args = ["--tree", str(tmp_path), "--weights", "random", "--quiet", "--num_shards", "2"]
    assert main([*args, "--shard_index", "1"]) == 0
    assert [f.name for f in folders if (f / "extraction.json").exists()] == ["game 1"]
    assert json.loads((folders[1] / "extraction.json").read_text())["halves"]["1"]["video"].endswith("1_224p.mkv")
    with pytest.raises(UserError, match="shard_index"):
        main([*args, "--shard_index", "2"])


@pytest.mark.slow
def test_resume_after_a_killed_batch_run(videos, tmp_path):
    folders = make_tree(tmp_path, videos["wide"], 3)
    args = ["--tree", str(tmp_path), "--weights", "random", "--frames_per_call", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "extract_features", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (folders[0] / "extraction.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (folders[0] / "extraction.json").exists()
    first = {p.name: p.stat().st_mtime_ns for p in folders[0].glob("1_*.npy")}
    (folders[2] / ".1_VGGish.stale123.npy").write_bytes(b"partial")  # as a kill mid-write leaves
    assert main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in folders[0].glob("1_*.npy")} == first  # not redone
    for folder in folders:
        assert np.load(folder / "1_VGGish.npy").shape == np.load(folder / "1_ResNET_TF2_PCA512.npy").shape == (2, 512)
        assert not list(folder.glob(".*"))
    # the killed process and this one computed the same features (seeded random weights)
    np.testing.assert_allclose(
        np.load(folders[0] / "1_ResNET_TF2_PCA512.npy"),
        np.load(folders[2] / "1_ResNET_TF2_PCA512.npy"),
        rtol=1e-4,
        atol=1e-4,
    )
    # settings changed -> refuse to mix, unless --overwrite
    with pytest.raises(UserError, match="other settings"):
        main([*args, "--transform", "resize"])


# `python -m extract_features ARGS`, then whether TensorFlow had been imported when it exited (on stdout).
_REPORT_TENSORFLOW = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: print('tensorflow imported:', 'tensorflow' in sys.modules))\n"
    "sys.argv[0] = 'extract_features'\n"
    "runpy.run_module('extract_features', run_name='__main__', alter_sys=True)\n"
)


def test_cli_exit_codes_without_tensorflow(tmp_path, videos):
    """Input errors exit 2 with one line, before TensorFlow is imported (fast)."""
    np.savez(tmp_path / "narrow.npz", mean=np.zeros(100, np.float32), components=np.zeros((8, 100), np.float32))
    (tmp_path / "a file").write_text("")
    wide = ["--video", str(videos["wide"]), "--weights", "random"]
    for argv, message in (
        [["--video", str(tmp_path / "x.mp4"), "--out", str(tmp_path), "--weights", "random"], "x.mp4: no such file"],
        [["--tree", str(tmp_path), "--weights", "random"], "no SoccerNet videos found"],
        [
            [*wide, "--out", str(tmp_path / "o"), "--pca", str(tmp_path / "narrow.npz")],
            "narrow.npz: a PCA of 100-d features",
        ],
        [[*wide, "--out", str(tmp_path / "a file")], "a file: is a file, not a folder (--out"],
        [[*wide, "--out", str(tmp_path / "a file" / "sub")], "a file: is a file, not a folder"],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", _REPORT_TENSORFLOW, *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"error: {proc.stderr.strip()[7:]}"]
        assert message in proc.stderr and "Traceback" not in proc.stderr
        assert proc.stdout == "tensorflow imported: False\n"  # refused before the slow import


@pytest.mark.slow
def test_interrupt_stops_at_once_and_writes_nothing(tmp_path):
    """Ctrl-C while ResNet-152 works on a batch: it stops within the batch, no files. (SIGTERM raises a
    KeyboardInterrupt too, common.errors.Terminated: the same path, exit 143.)"""
    video = make_video(tmp_path / "long.mp4", 120.0, size="160x90")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "extract_features",
            "--video",
            str(video),
            "--out",
            str(out),
            "--weights",
            "random",
            "--frames_per_call",
            "200",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = ""
    while not re.search(r" [1-9]\d*/240 ", seen) and proc.poll() is None:  # progress: networks built and running
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    rest = proc.stderr.read()
    assert proc.returncode == 130, seen + rest
    assert "error: interrupted" in rest
    # The bar is closed (its last count shown) once the network stops: after its current slice of a few frames,
    # not after the whole batch of 200 frames it was working through.
    embedded = max(int(n) for n in re.findall(r"(\d+)/240", seen + rest))
    assert 0 < embedded < 200, seen + rest
    assert not out.exists() or not list(out.iterdir())
