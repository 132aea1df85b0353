"""Decoding (no TensorFlow): the token-count rule, which frame each token is, transforms, audio pieces, errors."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from common.errors import UserError
from common.ffmpeg import ffmpeg_exe, media_arg
from extract_features import decode
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
        "index": make_video(d / "index.mkv", 2.0, video_filter="nullsrc=size=64x48:rate=25,geq=lum='N*2+10':cb=128:cr=128",
                            audio=False),
    }


@pytest.mark.parametrize("name", ["25_16x9", "2997_4x3", "short", "noaudio"])
def test_token_count_is_ceil_of_twice_the_video_duration(videos, name):
    path = videos[name]
    info = decode.check_video(path, need_audio=False)
    expected = math.ceil(2 * source_frames(path) / info.fps - 1e-9)
    chunks = list(decode.VideoDecoder(path).chunks(chunk=2))
    assert sum(len(c) for c in chunks) == expected == decode.expected_tokens(source_frames(path) / info.fps)
    assert all(c.shape[1:] == (224, 224, 3) and c.dtype == np.uint8 for c in chunks)
    assert all(len(c) <= 2 for c in chunks)


def test_rule_examples():
    # 25 fps: 33 frames end at 1.32 s -> 3 tokens; 29.97 fps: 30 frames end at 1.001 s -> 3 tokens
    assert [decode.expected_tokens(d) for d in (0.0, 0.04, 0.5, 0.52, 1.0, 1.32, 30 / (30000 / 1001))] == \
           [0, 1, 1, 2, 2, 3, 3]


def test_token_i_is_the_frame_on_screen_at_half_i_seconds(videos):
    tokens = np.concatenate(list(decode.VideoDecoder(videos["index"], "resize").chunks()))[:, 112, 112, 0]
    every = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", media_arg(videos["index"]),
                            "-vf", decode.TRANSFORMS["resize"], "-fps_mode", "passthrough", "-pix_fmt", "rgb24",
                            "-f", "rawvideo", "pipe:1"], capture_output=True, check=True).stdout
    every = np.frombuffer(every, np.uint8).reshape(-1, 224, 224, 3)[:, 112, 112, 0].astype(int)
    index = [int(np.abs(every - t).argmin()) for t in tokens]
    # frame k is on screen during [k/25, (k+1)/25): at i/2 s that is frame floor(12.5 i)
    assert index == [0, 12, 25, 37]


def test_variable_frame_rate(tmp_path):
    """Frames every 40 ms, then every 100 ms: tokens still follow the clock, not the frame count."""
    path = tmp_path / "vfr.mkv"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i",
                    "nullsrc=size=64x48:rate=25,geq=lum='N*8+10':cb=128:cr=128", "-frames:v", "20",
                    "-vf", "setpts='if(lt(N,10),N*0.04,0.4+(N-10)*0.1)/TB'", "-fps_mode", "passthrough",
                    "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", media_arg(path)], check=True)
    tokens = np.concatenate(list(decode.VideoDecoder(path, "resize").chunks()))[:, 112, 112, 0].astype(int)
    every = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", media_arg(path),
                            "-vf", decode.TRANSFORMS["resize"], "-fps_mode", "passthrough", "-pix_fmt", "rgb24",
                            "-f", "rawvideo", "pipe:1"], capture_output=True, check=True).stdout
    every = np.frombuffer(every, np.uint8).reshape(-1, 224, 224, 3)[:, 112, 112, 0].astype(int)
    assert len(every) == 20
    # frame 11 is shown from 0.5 s, frame 16 from 1.0 s; the last frame ends near 1.4 s -> 3 tokens
    assert [int(np.abs(every - t).argmin()) for t in tokens] == [0, 11, 16]


def test_transforms_keep_the_centre_and_size(videos):
    for transform in decode.TRANSFORMS:
        chunk = next(decode.VideoDecoder(videos["2997_4x3"], transform).chunks())
        assert chunk.shape[1:] == (224, 224, 3)
    with pytest.raises(UserError, match="unknown transform"):
        decode.VideoDecoder(videos["25_16x9"], "zoom")


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
