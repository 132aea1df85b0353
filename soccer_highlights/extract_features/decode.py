"""Decode a match video with ffmpeg: frames at 2 per second and 16 kHz mono audio, streamed in chunks.

Two video recipes (`RECIPES`), recorded in extraction.json:
- `soccernet` (default) reproduces what SoccerNet's ResNET_TF2 extraction fed ResNet-152 (its `FrameCV`
  loader, OpenCV): token i is the last frame that starts before (i + 1)/2 s, i.e. the frame on screen at
  the END of the half second [i/2, (i + 1)/2); a video whose last frame ends at D seconds gives
  T = floor(2 * D) tokens (a trailing incomplete half second gives none). This is ffmpeg's
  `fps=2:round=down:start_time=0` (eof_action=round rounds the end down too). On a constant frame rate
  video it is FrameCV's rule (frame n, counted from 1, kept when n % (fps / 2) < 1), frame for frame.
  Frames are converted to 8-bit RGB at the source size (as OpenCV does), then scaled (area, like
  `imutils.resize`; bicubic for `resize`, like `cv2.INTER_CUBIC`) and centre-cropped as FrameCV does, and
  handed on in OpenCV's BGR order: SoccerNet passed those straight to Keras' `preprocess_input`, which
  expects RGB.
- `rgb` is this tool's earlier recipe, for models trained on features it made: token i is the frame on
  screen at i/2 s, T = ceil(2 * D) (`fps=2:round=up:eof_action=pass`), scaled in YUV, handed on as RGB
  (ImageNet's convention).
Both recipes follow the file's clock, not its frame count (variable frame rates stay aligned with the
audio), and `start_time=0` anchors token 0 at t = 0 when the video stream starts late (first frame repeated).

Audio: the mean of all channels (as V&D's preprocessing did; ffmpeg's own `-ac 1` downmix of stereo is
(L + R)/sqrt(2)), 16 kHz, silence before a late first sample (`aresample=async=1:first_pts=0`); 0.5 s
piece i covers [i/2, (i + 1)/2), the half second that video token i describes in the `soccernet` recipe.

Everything goes through pipes, read `chunk` frames at a time, so a 45-minute half never sits in memory.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from soccer_highlights.common.cli import DEFAULT_RECIPE, TRANSFORMS
from soccer_highlights.common.constants import SAMPLE_RATE, TOKENS_PER_SECOND
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.ffmpeg import MediaInfo, ffmpeg_exe, last_error_line, media_arg, probe, tied

SIZE = 224
PIECE_SAMPLES = int(SAMPLE_RATE / TOKENS_PER_SECOND)  # one 0.5 s audio piece per video token
AUDIO_RECIPE = "channel_mean"


def _keep_aspect(side: int, rounding: str) -> str:
    """Scale so the short side is `side`, keeping the display aspect (dar: anamorphic videos keep their shape)."""
    long_w, long_h = (rounding.format(f"{side}*dar"), rounding.format(f"{side}/dar"))
    return f"scale=w='max({side},{long_w})':h='max({side},{long_h})'"


# imutils.resize takes width = int(w * 224 / h) (1e-6: an exact integer must not fall to the one below);
# FrameCV's crop offset is int((w - 224) / 2), where ffmpeg's default rounds it and aligns it to chroma in YUV.
_TRUNC = "trunc({}+1e-6)"
_CENTRE = f"crop={SIZE}:{SIZE}:trunc((iw-{SIZE})/2):trunc((ih-{SIZE})/2)"
# Planar RGB (gbrp) gives OpenCV's pixels, scaled faster than packed BGR: ffmpeg's CPU time per token stays
# that of the rgb recipe's YUV scaling (bench/results_extract.md).
_SOCCERNET_TRANSFORMS = {
    "crop": f"format=gbrp,{_keep_aspect(SIZE, _TRUNC)}:flags=area,{_CENTRE}",
    "resize": f"format=gbrp,scale={SIZE}:{SIZE}:flags=bicubic",
    "resize256crop224": f"format=gbrp,{_keep_aspect(256, _TRUNC)}:flags=area,{_CENTRE}",
}
_RGB_TRANSFORMS = {
    "crop": f"{_keep_aspect(SIZE, 'round({})')}:flags=area,crop={SIZE}:{SIZE}",
    "resize": f"scale={SIZE}:{SIZE}:flags=bicubic",
    "resize256crop224": f"{_keep_aspect(256, 'round({})')}:flags=area,crop={SIZE}:{SIZE}",
}


@dataclass(frozen=True)
class VideoRecipe:
    """Which frame each token shows, how it is scaled, and the channel order handed to the network."""

    name: str
    frame_filter: str  # ffmpeg filter picking one frame per token
    transforms: dict[str, str]
    pix_fmt: str  # ffmpeg's output: "gbrp" (planes G, B, R) or "rgb24"
    channels: tuple[int, ...] | None  # planes -> channels handed on (BGR for soccernet); None: packed already
    count: Callable[[float], float]  # T = count(2 * D)
    token_rule: str  # recorded in extraction.json

    def frames(self, raw: bytes) -> np.ndarray:
        """ffmpeg's raw output -> uint8 [n, 224, 224, 3] in the channel order the network is given."""
        data = np.frombuffer(raw, np.uint8)
        if self.channels is None:
            return data.reshape(-1, SIZE, SIZE, 3)
        planes = data.reshape(-1, 3, SIZE, SIZE)
        return np.stack([planes[:, c] for c in self.channels], axis=-1)

    def tokens(self, video_end_seconds: float) -> int:
        """The token count of a video whose last frame ends at `video_end_seconds`."""
        return max(0, int(self.count(round(video_end_seconds * TOKENS_PER_SECOND, 6))))


RECIPES = {
    "soccernet": VideoRecipe(
        "soccernet",
        f"fps={TOKENS_PER_SECOND:g}:round=down:start_time=0",
        _SOCCERNET_TRANSFORMS,
        "gbrp",
        (1, 0, 2),
        math.floor,
        "token i = last frame starting before (i+1)/2 s (BGR, as SoccerNet's FrameCV); T = floor(2 * video duration)",
    ),
    "rgb": VideoRecipe(
        "rgb",
        f"fps={TOKENS_PER_SECOND:g}:round=up:eof_action=pass:start_time=0",
        _RGB_TRANSFORMS,
        "rgb24",
        None,
        math.ceil,
        "token i = frame on screen at i/2 s (RGB); T = ceil(2 * video duration)",
    ),
}


def get_recipe(name: str) -> VideoRecipe:
    if name not in RECIPES:
        raise UserError(f"unknown video recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def expected_tokens(video_end_seconds: float, recipe: str = DEFAULT_RECIPE) -> int:
    """The token-count rule of `recipe` for a video whose last frame ends at `video_end_seconds`."""
    return get_recipe(recipe).tokens(video_end_seconds)


def check_video(path: str | os.PathLike, *, need_audio: bool) -> MediaInfo:
    """Probe `path`; UserError if it is missing, not a video, or has no audio when audio is needed."""
    info = probe(path)
    if not info.has_video:
        raise UserError(f"{path}: no video stream (is it an audio file or an image?)")
    if need_audio and not info.has_audio:
        raise UserError(
            f"{path}: no audio stream (the models need both modalities; pass --silent_audio "
            "to use digital silence, recorded in extraction.json)"
        )
    return info


class _Pipe:
    """An ffmpeg process writing raw data to stdout, read in fixed-size records; always cleaned up."""

    def __init__(self, args: list[str], what: str):
        self.what = what
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
        self.proc = subprocess.Popen(tied(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        if self.proc.stdout is None or self.proc.stderr is None:  # both are pipes: Popen opened them or raised
            raise RuntimeError(f"{what}: ffmpeg started without its output pipes")
        self.stdout: IO[bytes] = self.proc.stdout
        stderr: IO[bytes] = self.proc.stderr
        self._stderr: list[bytes] = []
        # Drain stderr in the background so a chatty ffmpeg never blocks on a full pipe.
        self._drain = threading.Thread(target=lambda: self._stderr.append(stderr.read()), daemon=True)
        self._drain.start()

    def read_exact(self, n: int) -> bytes:
        """Up to `n` bytes (fewer only at the end of the stream)."""
        buf = bytearray()
        while len(buf) < n:
            data = self.stdout.read(n - len(buf))
            if not data:
                break
            buf += data
        return bytes(buf)

    def read_records(self, record_bytes: int, per_read: int) -> Iterator[bytes]:
        """Yield blocks of up to `per_read` whole records; a trailing partial record is returned padded by the caller."""
        want = record_bytes * per_read
        while block := self.read_exact(want):
            yield block
        self.finish()

    def finish(self) -> None:
        code = self.proc.wait()
        self._drain.join()
        if code != 0:
            raise UserError(f"{self.what}: ffmpeg failed ({last_error_line(b''.join(self._stderr))})")

    def close(self) -> None:
        """Stop ffmpeg early (consumer gave up or failed)."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.stdout.close()
        self.proc.wait()
        self._drain.join()


@dataclass(frozen=True)
class VideoDecoder:
    """Frames of `path` at 2 per second, `transform`ed to 224 x 224 uint8, in the `recipe`'s frame rule and
    channel order (BGR for `soccernet`, RGB for `rgb`)."""

    path: Path
    transform: str = "crop"
    threads: int = 0  # ffmpeg decoder threads (0 = ffmpeg's choice)
    recipe: str = DEFAULT_RECIPE
    input_options: tuple[str, ...] = ()  # ffmpeg options for the input (a live playlist: -live_start_index 0)

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise UserError(f"unknown transform {self.transform!r}; choose one of {', '.join(TRANSFORMS)}")
        get_recipe(self.recipe)

    def filters(self) -> str:
        recipe = get_recipe(self.recipe)
        return f"{recipe.frame_filter},{recipe.transforms[self.transform]},setsar=1"

    def args(self) -> list[str]:
        return [
            "-threads",
            str(self.threads),
            *self.input_options,
            "-i",
            media_arg(self.path),
            "-map",
            "0:v:0",
            "-an",
            "-sn",
            "-dn",
            "-vf",
            self.filters(),
            "-fps_mode",
            "passthrough",
            "-pix_fmt",
            get_recipe(self.recipe).pix_fmt,
            "-f",
            "rawvideo",
            "pipe:1",
        ]

    def chunks(self, chunk: int = 32) -> Generator[np.ndarray, None, None]:
        """Yield uint8 arrays [n <= chunk, 224, 224, 3], in time order."""
        frame_bytes = SIZE * SIZE * 3
        recipe = get_recipe(self.recipe)
        pipe = _Pipe(self.args(), f"{self.path}: decoding video")
        try:
            for block in pipe.read_records(frame_bytes, chunk):
                if len(block) % frame_bytes:
                    raise UserError(f"{self.path}: ffmpeg returned a truncated frame")
                yield recipe.frames(block)
        finally:
            pipe.close()


def _wav_channels(pipe: _Pipe) -> int:
    """Read the WAV header ffmpeg streams (RIFF, then chunks up to `data`); its channel count, 0 if no audio."""
    riff = pipe.read_exact(12)
    if not riff:
        pipe.finish()  # ffmpeg's own error, if it failed
        return 0
    if riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
        raise UserError(f"{pipe.what}: ffmpeg did not stream a WAV header")
    channels = 0
    while True:
        head = pipe.read_exact(8)
        if len(head) < 8:
            raise UserError(f"{pipe.what}: WAV header cut short")
        size = int.from_bytes(head[4:], "little")
        if head[:4] == b"data":
            return channels
        body = pipe.read_exact(size + size % 2)
        if head[:4] == b"fmt ":
            channels = int.from_bytes(body[2:4], "little")


@dataclass(frozen=True)
class AudioDecoder:
    """The audio of `path` as 16 kHz mono float32 (mean of all channels), cut into 0.5 s pieces (one per token)."""

    path: Path
    input_options: tuple[str, ...] = ()  # as VideoDecoder's

    def args(self) -> list[str]:
        # every channel is resampled as it is (no -ac: ffmpeg's downmix is not a mean); the mean is taken here
        return [
            *self.input_options,
            "-i",
            media_arg(self.path),
            "-map",
            "0:a:0",
            "-vn",
            "-sn",
            "-dn",
            "-af",
            "aresample=async=1:first_pts=0",
            "-ar",
            str(SAMPLE_RATE),
            "-c:a",
            "pcm_f32le",
            "-f",
            "wav",
            "pipe:1",
        ]

    def samples(self, chunk_seconds: float = 60.0) -> Generator[np.ndarray, None, None]:
        """Yield consecutive float32 mono sample blocks of `chunk_seconds` (the last one shorter)."""
        pipe = _Pipe(self.args(), f"{self.path}: decoding audio")
        try:
            channels = _wav_channels(pipe)
            if channels < 1:
                return
            frame = 4 * channels
            for block in pipe.read_records(frame, int(chunk_seconds * SAMPLE_RATE)):
                usable = len(block) - len(block) % frame
                yield channel_mean(np.frombuffer(block[:usable], "<f4").reshape(-1, channels))
        finally:
            pipe.close()

    def pieces(self, chunk_pieces: int = 120) -> Iterator[np.ndarray]:
        """Yield float32 arrays [n <= chunk_pieces, 8000]; the last piece is zero-padded to 0.5 s."""
        for block in self.samples(chunk_pieces * PIECE_SAMPLES / SAMPLE_RATE):
            yield to_pieces(block)


def channel_mean(samples: np.ndarray) -> np.ndarray:
    """[n, channels] -> [n] float32: the plain mean of the channels (V&D's `np.mean` downmix)."""
    return samples.mean(axis=1, dtype=np.float64).astype(np.float32)


def to_pieces(samples: np.ndarray) -> np.ndarray:
    """Cut a 1-D waveform into [ceil(n / 8000), 8000] pieces, zero-padding the last one."""
    n = -(-len(samples) // PIECE_SAMPLES)
    padded = np.zeros(n * PIECE_SAMPLES, np.float32)
    padded[: len(samples)] = samples
    return padded.reshape(n, PIECE_SAMPLES)
