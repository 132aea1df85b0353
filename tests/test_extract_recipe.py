"""The `soccernet` recipe against the originals it reproduces, run here: SoccerNet's own frame loader
(`SoccerNet.DataLoader.FrameCV`, OpenCV) for the video, V&D's audio preprocessing (channel mean, then
`resampy` to 16 kHz) for the audio. The `rgb` recipe is checked to differ, so the comparisons can fail."""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights.extract_features import decode, logmel
from tests.media import make_video, source_frames

RATES = {"16x9_25fps": "25", "16x9_29.97fps": "30000/1001", "4x3_25fps": "25"}
TOKEN_INPUT_LIMIT = 4.0  # mean |difference| of the ResNet input, 0-255 scale
RGB_INPUT_MINIMUM = 15.0


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("recipe")
    return {
        "16x9_25fps": make_video(d / "a.mp4", 3.0, rate=RATES["16x9_25fps"], size="640x360", audio=False),
        "16x9_29.97fps": make_video(d / "b.mp4", 2.9, rate=RATES["16x9_29.97fps"], size="480x270", audio=False),
        "4x3_25fps": make_video(d / "c.mkv", 2.6, rate=RATES["4x3_25fps"], size="320x240", audio=False),
    }


def framecv(path: Path, transform: str) -> np.ndarray:
    from SoccerNet.DataLoader import FrameCV

    frames = FrameCV(str(path), FPS=2, transform=transform).frames
    return frames[:, :224, :224]  # its resize256crop224 keeps 225 columns of a 16:9 frame: compare the first 224


def resnet_input(frames: np.ndarray) -> np.ndarray:
    """What reaches ResNet-152: the backbone's preprocessing of the frames as handed on (SoccerNet: OpenCV's)."""
    from soccer_highlights.extract_features.video import BACKBONE

    return np.asarray(BACKBONE.preprocess(frames.astype(np.float32)))


def ours(path: Path, transform: str, recipe: str) -> np.ndarray:
    return np.concatenate(list(decode.VideoDecoder(path, transform, recipe=recipe).chunks()))


def input_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] mean absolute difference of the ResNet input between every pair of tokens."""
    x, y = resnet_input(a), resnet_input(b)
    return np.array([[np.abs(u - v).mean() for v in y] for u in x])


@pytest.mark.parametrize(
    "clip, transform",
    [
        ("16x9_25fps", "crop"),
        ("16x9_29.97fps", "crop"),
        ("4x3_25fps", "crop"),
        ("16x9_25fps", "resize"),
        ("16x9_25fps", "resize256crop224"),
    ],
)
def test_video_matches_framecv_token_for_token(clips, clip, transform):
    reference = framecv(clips[clip], transform)
    got = ours(clips[clip], transform, "soccernet")
    fps = Fraction(RATES[clip])
    assert len(got) == len(reference) == decode.expected_tokens(float(source_frames(clips[clip]) / fps))
    diff = input_difference(got, reference)
    same = np.diag(diff)
    assert same.max() <= TOKEN_INPUT_LIMIT, same
    # token i against token i: any other token of theirs is further away (no half-second shift)
    assert all(same[i] < np.delete(diff[i], i).min() for i in range(len(same)))
    rgb = ours(clips[clip], transform, "rgb")
    assert np.diag(input_difference(rgb, reference)).min() > RGB_INPUT_MINIMUM


@pytest.mark.slow
def test_resnet_output_matches_on_framecv_frames(clips):
    """ResNet-152 with one fixed set of (random) weights: relative L2 per token <= 2 % (two tokens: CPU time)."""
    from soccer_highlights.extract_features.video import FrameEmbedder

    net = FrameEmbedder("random", seed=3)
    reference = framecv(clips["16x9_25fps"], "crop")[:2]
    ref = net(np.ascontiguousarray(reference))
    got = net(ours(clips["16x9_25fps"], "crop", "soccernet")[:2])
    relative = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert relative.max() <= 0.02, relative
    rgb = net(ours(clips["16x9_25fps"], "crop", "rgb")[:2])
    assert (np.linalg.norm(rgb - ref, axis=1) / np.linalg.norm(ref, axis=1)).min() > relative.max()


def write_wav(path: Path, samples: np.ndarray, rate: int) -> np.ndarray:
    """Write int16 [n, channels]; return the float samples a reader gets (int16 / 32768, as V&D read WAVs)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return samples / 32768.0


def test_channel_count_matters(tmp_path):
    rng = np.random.default_rng(0)
    for channels in (1, 2, 6):
        # each channel its own signal, a different level per channel (LFE included)
        data = (rng.uniform(-1, 1, (16000, channels)) * 3000 * np.arange(1, channels + 1)).astype(np.int16)
        source = write_wav(tmp_path / f"c{channels}.wav", data, 16000)
        got = np.concatenate(list(decode.AudioDecoder(tmp_path / f"c{channels}.wav").samples()))
        assert len(got) == len(source)
        np.testing.assert_allclose(got, source.mean(axis=1), rtol=0, atol=1e-6)


def test_log_mel_of_48k_stereo_matches_resampy(tmp_path):
    """V&D's steps: int16 WAV / 32768, mean of the channels, resampy to 16 kHz, then the log-mel frontend; resampled
    here over the whole stream, as ours is (V&D's extract_features.py resampled each 0.5 s slice apart)."""
    import resampy

    rng = np.random.default_rng(1)
    t = np.arange(48000 * 3) / 48000
    left = 6000 * np.sin(2 * np.pi * 440 * t) + 1500 * rng.standard_normal(len(t))
    right = 4000 * np.sin(2 * np.pi * 1250 * t * (1 + t / 6)) + 800 * rng.standard_normal(len(t))
    source = write_wav(tmp_path / "stereo48k.wav", np.stack([left, right], 1).clip(-32768, 32767), 48000)
    reference = logmel.log_mel(
        decode.to_pieces(resampy.resample(source.mean(axis=1), 48000, 16000).astype(np.float32)), logmel.FEATURE_FRAMES
    )
    got = logmel.log_mel(
        np.concatenate(list(decode.AudioDecoder(tmp_path / "stereo48k.wav").pieces())), logmel.FEATURE_FRAMES
    )
    assert got.shape == reference.shape == (6, 46, 64)
    assert np.abs(got - reference).mean() <= 0.01
