"""Decode a match video with ffmpeg: RGB frames at 2 per second and 16 kHz mono audio, streamed in chunks.

Token rule (measured on ffmpeg 9, checked by tests/test_extract_decode.py): token i is the frame on
screen at time i/2 s of the file's timeline, and a video whose last frame ends at D seconds gives
T = ceil(2 * D) tokens (every instant of [0, D) is covered by exactly one token). This is ffmpeg's
`fps=2:round=up:eof_action=pass:start_time=0`:
- the default `round=near` picks the frame ~0.24 s *after* i/2 (the one whose rounded time is i/2),
  `round=up` picks the latest frame shown at or before i/2;
- the default `eof_action=round` gives round(2 * D) instead: a clip under 0.25 s decodes to nothing;
- `start_time=0` anchors token 0 at t = 0 when the video stream starts late (first frame repeated),
  the audio side does the same with `aresample=async=1:first_pts=0` (silence before the first sample).
SoccerNet's loader (every 12.5th frame of a 25 fps video) gives the same count, frames within 1/fps.

Frames are scaled and cropped by ffmpeg (area filter like SoccerNet's `imutils.resize`, bicubic for
`resize` like its `cv2.INTER_CUBIC`), sent as rgb24 rawvideo through a pipe and read `chunk` frames at a
time, so a 45-minute half never sits in memory.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.ffmpeg import MediaInfo, ffmpeg_exe, last_error_line, media_arg, probe

FPS = 2.0
SIZE = 224
SAMPLE_RATE = 16000
PIECE_SAMPLES = int(SAMPLE_RATE / FPS)  # one 0.5 s audio piece per video token

# dar = display aspect ratio (sample aspect ratio included), so anamorphic videos keep their shape.
TRANSFORMS = {
    "crop": f"scale=w='max({SIZE},round({SIZE}*dar))':h='max({SIZE},round({SIZE}/dar))':flags=area,"
            f"crop={SIZE}:{SIZE}",
    "resize": f"scale={SIZE}:{SIZE}:flags=bicubic",
    "resize256crop224": "scale=w='max(256,round(256*dar))':h='max(256,round(256/dar))':flags=area,"
                        f"crop={SIZE}:{SIZE}",
}
FPS_FILTER = f"fps={FPS:g}:round=up:eof_action=pass:start_time=0"


def expected_tokens(video_end_seconds: float) -> int:
    """The token-count rule: T = ceil(2 * D) for a video whose last frame ends at D seconds."""
    return max(0, int(np.ceil(round(video_end_seconds * FPS, 6))))


def check_video(path: str | os.PathLike, *, need_audio: bool) -> MediaInfo:
    """Probe `path`; UserError if it is missing, not a video, or has no audio when audio is needed."""
    info = probe(path)
    if not info.has_video:
        raise UserError(f"{path}: no video stream (is it an audio file or an image?)")
    if need_audio and not info.has_audio:
        raise UserError(f"{path}: no audio stream (the models need both modalities; pass --silent_audio "
                        "to use digital silence, recorded in extraction.json)")
    return info


class _Pipe:
    """An ffmpeg process writing raw data to stdout, read in fixed-size records; always cleaned up."""

    def __init__(self, args: list[str], what: str):
        self.what = what
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self._stderr: list[bytes] = []
        # Drain stderr in the background so a chatty ffmpeg never blocks on a full pipe.
        self._drain = threading.Thread(target=lambda: self._stderr.append(self.proc.stderr.read()), daemon=True)
        self._drain.start()

    def read_records(self, record_bytes: int, per_read: int) -> Iterator[bytes]:
        """Yield blocks of up to `per_read` whole records; a trailing partial record is returned padded by the caller."""
        want = record_bytes * per_read
        buf = bytearray()
        stream = self.proc.stdout
        while True:
            data = stream.read(want - len(buf))
            if not data:
                break
            buf += data
            if len(buf) >= want:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)
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
            self.proc.stdout.close()
        self.proc.wait()
        self._drain.join()


@dataclass(frozen=True)
class VideoDecoder:
    """Frames of `path` at 2 per second, `transform`ed to 224 x 224 RGB uint8."""

    path: Path
    transform: str = "crop"
    threads: int = 0  # ffmpeg decoder threads (0 = ffmpeg's choice)

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise UserError(f"unknown transform {self.transform!r}; choose one of {', '.join(TRANSFORMS)}")

    def args(self) -> list[str]:
        return ["-threads", str(self.threads), "-i", media_arg(self.path), "-map", "0:v:0", "-an", "-sn", "-dn",
                "-vf", f"{FPS_FILTER},{TRANSFORMS[self.transform]},setsar=1",
                "-fps_mode", "passthrough", "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"]

    def chunks(self, chunk: int = 32) -> Iterator[np.ndarray]:
        """Yield uint8 arrays [n <= chunk, 224, 224, 3], in time order."""
        frame_bytes = SIZE * SIZE * 3
        pipe = _Pipe(self.args(), f"{self.path}: decoding video")
        try:
            for block in pipe.read_records(frame_bytes, chunk):
                if len(block) % frame_bytes:
                    raise UserError(f"{self.path}: ffmpeg returned a truncated frame")
                yield np.frombuffer(block, np.uint8).reshape(-1, SIZE, SIZE, 3)
        finally:
            pipe.close()


@dataclass(frozen=True)
class AudioDecoder:
    """The audio of `path` as 16 kHz mono float32, cut into 0.5 s pieces (one per video token)."""

    path: Path

    def args(self) -> list[str]:
        return ["-i", media_arg(self.path), "-map", "0:a:0", "-vn", "-sn", "-dn",
                "-af", "aresample=async=1:first_pts=0", "-ac", "1", "-ar", str(SAMPLE_RATE),
                "-f", "f32le", "pipe:1"]

    def samples(self, chunk_seconds: float = 60.0) -> Iterator[np.ndarray]:
        """Yield consecutive float32 sample blocks of `chunk_seconds` (the last one shorter)."""
        pipe = _Pipe(self.args(), f"{self.path}: decoding audio")
        try:
            for block in pipe.read_records(4, int(chunk_seconds * SAMPLE_RATE)):
                usable = len(block) - len(block) % 4
                yield np.frombuffer(block[:usable], "<f4").astype(np.float32)
        finally:
            pipe.close()

    def pieces(self, chunk_pieces: int = 120) -> Iterator[np.ndarray]:
        """Yield float32 arrays [n <= chunk_pieces, 8000]; the last piece is zero-padded to 0.5 s."""
        for block in self.samples(chunk_pieces * PIECE_SAMPLES / SAMPLE_RATE):
            yield to_pieces(block)


def to_pieces(samples: np.ndarray) -> np.ndarray:
    """Cut a 1-D waveform into [ceil(n / 8000), 8000] pieces, zero-padding the last one."""
    n = -(-len(samples) // PIECE_SAMPLES)
    padded = np.zeros(n * PIECE_SAMPLES, np.float32)
    padded[: len(samples)] = samples
    return padded.reshape(n, PIECE_SAMPLES)
