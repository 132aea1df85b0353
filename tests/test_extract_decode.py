"""Decoding (no TensorFlow): the token-count rule, which frame each token is, transforms, audio pieces, errors."""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights.common.errors import UserError
from soccer_highlights.common.ffmpeg import ffmpeg_exe, media_arg
from soccer_highlights.extract_features import decode
from tests.media import make_video, source_frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("decode")
    return {
        "25_16x9": make_video(d / "a 25fps.mp4", 1.3),
        "2997_4x3": make_video(d / "-b 2997.mkv", 1.05, rate="30000/1001", size="320x240", audio_rate=48000),
        "short": make_video(d / "short.mp4", 0.2),
        "noaudio": make_video(d / "noaudio.mp4", 1.0, audio=False),
        # luma = 2 * frame index + 10, so each token tells which source frame it is
        "index": make_video(
            d / "index.mkv", 2.0, video_filter="nullsrc=size=64x48:rate=25,geq=lum='N*2+10':cb=128:cr=128", audio=False
        ),
    }


def every_frame(path: Path, recipe: str) -> np.ndarray:
    """The centre pixel's first channel of every source frame, scaled as `recipe`'s `resize` does."""
    r = decode.RECIPES[recipe]
    every = subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            media_arg(path),
            "-vf",
            r.transforms["resize"],
            "-fps_mode",
            "passthrough",
            "-pix_fmt",
            r.pix_fmt,
            "-f",
            "rawvideo",
            "pipe:1",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return r.frames(every)[:, 112, 112, 0].astype(int)


def token_frames(path: Path, recipe: str) -> list[int]:
    """Which source frame each token of `recipe` shows (frames told apart by their luma)."""
    tokens = np.concatenate(list(decode.VideoDecoder(path, "resize", recipe=recipe).chunks()))[:, 112, 112, 0]
    every = every_frame(path, recipe)
    return [int(np.abs(every - t).argmin()) for t in tokens.astype(int)]


@pytest.mark.parametrize("recipe, rounding", [("soccernet", math.floor), ("rgb", math.ceil)])
@pytest.mark.parametrize("name", ["25_16x9", "2997_4x3", "short", "noaudio"])
def test_token_count_rule(videos, name, recipe, rounding):
    """soccernet: T = floor(2 D) (complete half seconds, as SoccerNet's FrameCV); rgb: T = ceil(2 D)."""
    path = videos[name]
    info = decode.check_video(path, need_audio=False)
    end = source_frames(path) / info.fps
    chunks = list(decode.VideoDecoder(path, recipe=recipe).chunks(chunk=2))
    assert sum(len(c) for c in chunks) == rounding(round(2 * end, 6)) == decode.expected_tokens(end, recipe)
    assert all(c.shape[1:] == (224, 224, 3) and c.dtype == np.uint8 for c in chunks)
    assert all(len(c) <= 2 for c in chunks)


def test_rule_examples():
    # 25 fps: 33 frames end at 1.32 s; 29.97 fps: 30 frames end at 1.001 s
    ends = (0.0, 0.04, 0.5, 0.52, 1.0, 1.32, 30 / (30000 / 1001))
    assert [decode.expected_tokens(d, "soccernet") for d in ends] == [0, 0, 1, 1, 2, 2, 2]
    assert [decode.expected_tokens(d, "rgb") for d in ends] == [0, 1, 1, 2, 2, 3, 3]


def test_soccernet_token_i_is_the_last_frame_of_the_i_th_half_second(videos):
    # frame k (from 0) starts at k/25 s: the last one starting before (i+1)/2 s is ceil(12.5 (i+1)) - 1,
    # SoccerNet's FrameCV frame n = k + 1 with n % 12.5 < 1
    assert token_frames(videos["index"], "soccernet") == [12, 24, 37, 49]


def test_rgb_token_i_is_the_frame_on_screen_at_half_i_seconds(videos):
    # at i/2 s frame floor(12.5 i) is on screen
    assert token_frames(videos["index"], "rgb") == [0, 12, 25, 37]


@pytest.mark.parametrize("rate, seconds", [("30000/1001", 2.1), ("30", 2.0), ("50", 1.98), ("24", 1.3)])
def test_other_frame_rates(tmp_path, rate, seconds):
    """29.97, 30, 50, 24 fps: token i = the last frame starting before (i+1)/2 s, T = floor(2 N / fps)."""
    path = make_video(
        tmp_path / "rate.mp4",
        seconds,
        audio=False,
        video_filter=f"nullsrc=size=64x48:rate={rate},geq=lum='N*2+10':cb=128:cr=128",
    )
    fps, n = Fraction(rate), source_frames(path)
    expected = [math.ceil(fps * (i + 1) / 2) - 1 for i in range(math.floor(2 * n / fps))]
    assert token_frames(path, "soccernet") == expected
    assert len(expected) == decode.expected_tokens(float(n / fps), "soccernet")


def test_variable_frame_rate(tmp_path):
    """Frames every 40 ms, then every 120 ms: tokens follow the clock, not the frame count."""
    path = tmp_path / "vfr.mkv"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-f",
            "lavfi",
            "-i",
            "nullsrc=size=64x48:rate=25,geq=lum='N*8+10':cb=128:cr=128",
            "-frames:v",
            "20",
            "-vf",
            "setpts='if(lt(N,10),N*0.04,0.4+(N-10)*0.12)/TB'",
            "-fps_mode",
            "passthrough",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
            media_arg(path),
        ],
        check=True,
    )
    assert len(every_frame(path, "soccernet")) == 20
    # frame 10 starts at 0.40 s, 11 at 0.52, 14 at 0.88, 15 at 1.00, 19 at 1.48 s and ends after 1.5 s
    assert token_frames(path, "soccernet") == [10, 14, 19]  # the last frames starting before 0.5, 1.0, 1.5 s
    assert token_frames(path, "rgb") == [0, 10, 15, 19]  # on screen at 0, 0.5, 1.0, 1.5 s


@pytest.mark.parametrize("recipe", list(decode.RECIPES))
def test_transforms_keep_the_centre_and_size(videos, recipe):
    for transform in decode.TRANSFORMS:
        chunk = next(decode.VideoDecoder(videos["2997_4x3"], transform, recipe=recipe).chunks())
        assert chunk.shape[1:] == (224, 224, 3)
    with pytest.raises(UserError, match="unknown transform"):
        decode.VideoDecoder(videos["25_16x9"], "zoom")
    with pytest.raises(UserError, match="unknown video recipe"):
        decode.VideoDecoder(videos["25_16x9"], recipe="opencv")


def test_channel_order(tmp_path):
    """soccernet hands frames on in OpenCV's BGR order (what SoccerNet fed ResNet-152), rgb in RGB."""
    red = make_video(tmp_path / "red.mp4", 0.6, audio=False, video_filter="color=c=red:size=64x48:rate=25")
    bgr = next(decode.VideoDecoder(red, recipe="soccernet").chunks())[0, 112, 112].astype(int)
    rgb = next(decode.VideoDecoder(red, recipe="rgb").chunks())[0, 112, 112].astype(int)
    assert bgr[2] > 200 > 60 > bgr[0] and rgb[0] > 200 > 60 > rgb[2]


def test_audio_is_16k_mono_in_half_second_pieces(videos):
    pieces = np.concatenate(list(decode.AudioDecoder(videos["2997_4x3"]).pieces(chunk_pieces=1)))
    assert pieces.shape[1] == 8000 and pieces.dtype == np.float32
    assert len(pieces) in (2, 3)  # 1.05 s of AAC (encoder padding may add a few ms)
    spectrum = np.abs(np.fft.rfft(pieces[0]))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 440) <= 2  # the sine survived resampling and downmix


def test_to_pieces_pads_the_last_piece():
    out = decode.to_pieces(np.ones(8001, np.float32))
    assert out.shape == (2, 8000) and out[1, 0] == 1 and out[1, 1:].sum() == 0


def test_errors_are_one_line_and_name_the_file(videos, tmp_path):
    with pytest.raises(UserError, match="no such file"):
        decode.check_video(tmp_path / "missing.mp4", need_audio=True)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n")
    with pytest.raises(UserError, match="notes.mp4"):
        decode.check_video(text, need_audio=True)
    with pytest.raises(UserError, match="no audio stream"):
        decode.check_video(videos["noaudio"], need_audio=True)
