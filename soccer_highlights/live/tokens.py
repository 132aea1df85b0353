"""Tokens of a live stream as it plays: the growing recording -> ffmpeg decoders -> ResNet-152 + PCA and VGGish.

The video and audio decoders of `extract_features.decode` read `recording.m3u8` as a live HLS playlist from
its first segment (`-live_start_index 0`): ffmpeg reloads it as segments are added and ends once it is
finished (ENDLIST). So the live run decodes the recording through the very demuxer an offline run on
`recording.m3u8` uses, and gets the same frames and samples. Frames go through the extractor's ResNet-152
and PCA, half seconds of audio through its VGGish, in worker threads (`extract_features.pipeline`'s
stages, one `common.workers.Workers` group); the caller's thread scores windows.

`TokenSource` is what a live run (`live.runner.LiveRun`) asks of its tokens; `LiveTokens` is the one that reads
a stream, and a test gives the run a source of its own to drive its loop step by step.

Keeping up: the network takes every frame waiting, up to `CATCH_UP_BATCH`, in one call. While the stream
comes no faster than the networks run, that is a frame or two; when it falls behind, the backlog goes
through in larger batches (the faster per frame on CPU) and nothing is ever skipped: clips come late
rather than never, and the latency shrinks again once the backlog is cleared.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from soccer_highlights.common.workers import Workers
from soccer_highlights.extract_features import decode
from soccer_highlights.extract_features.stages import put

CATCH_UP_BATCH = 32  # frames per network call at most, when a backlog waits
LIVE_INPUT = ("-live_start_index", "0")


class TokenSource(Protocol):
    """The tokens of a live run as they come: `ready()` tokens whose video and audio features both exist,
    `arrays()` the features so far, `final_arrays()` those of the whole stream once it has ended (the audio
    aligned to the video, as an offline extraction aligns it); `changed` is notified when tokens come; `workers`
    make them (stopped and joined by the run); `busy`: seconds spent in the networks."""

    busy: float
    changed: threading.Condition
    workers: Workers

    @property
    def random_weights(self) -> bool: ...

    def start(self) -> None: ...

    def ready(self) -> int: ...

    def done(self) -> bool: ...

    def arrays(self) -> tuple[np.ndarray, np.ndarray]: ...

    def final_arrays(self) -> tuple[np.ndarray, np.ndarray]: ...


class LiveTokens:
    """Video and audio features [n, D] of the stream so far, grown by worker threads; `changed` is notified."""

    def __init__(self, extractor: Any, playlist: Path) -> None:
        self.extractor = extractor
        self.playlist = playlist
        self.video: list[np.ndarray] = []
        self.audio: list[np.ndarray] = []
        self.counts = [0, 0]
        self.busy = 0.0  # seconds spent in the networks (both threads together)
        self.changed = threading.Condition()
        self.workers = Workers()
        self._frames: queue.Queue = queue.Queue(maxsize=4 * CATCH_UP_BATCH)

    def start(self) -> None:
        """Start decoding (once the playlist lists a segment: ffmpeg refuses an empty one)."""
        if not self.workers.threads:
            self.workers.start(self._decode_video)
            self.workers.start(self._video_network)
            self.workers.start(self._audio)

    @property
    def random_weights(self) -> bool:
        """The networks have random weights (a test mode): the features say nothing about the match."""
        return "random" in (self.extractor.resnet.source, self.extractor.vggish.source)

    def ready(self) -> int:
        """Tokens whose video and audio features both exist."""
        return min(self.counts)

    def done(self) -> bool:
        """No worker runs (none started yet, or all have ended)."""
        return not self.workers.alive()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        with self.changed:
            video, audio = list(self.video), list(self.audio)
        dim = self.extractor.pca.components.shape[0] if hasattr(self.extractor.pca, "components") else 512
        empty = np.zeros((0, dim), np.float32)
        return (np.concatenate(video) if video else empty), (np.concatenate(audio) if audio else empty)

    def final_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole stream's features: the audio aligned to the video tokens (cut, or padded with the features of
        silence), as an offline extraction of the recording aligns them."""
        from soccer_highlights.extract_features.audio import align  # deferred: loads TensorFlow (start-up)

        video, audio = self.arrays()
        return video, align(audio, len(video), self.extractor.vggish.silence())

    def _append(self, which: int, rows: np.ndarray) -> None:
        with self.changed:
            (self.video if which == 0 else self.audio).append(rows)
            self.counts[which] += len(rows)
            self.changed.notify_all()

    def _decode_video(self) -> None:
        config = self.extractor.config
        decoder = decode.VideoDecoder(self.playlist, config.transform, 1, config.recipe, input_options=LIVE_INPUT)
        stop = self.workers.stop
        try:
            with contextlib.closing(decoder.chunks(1)) as frames:
                for frame in frames:
                    if not put(self._frames, frame, stop):
                        return
        finally:
            put(self._frames, None, stop)

    def _video_network(self) -> None:
        stop = self.workers.stop
        while not stop.is_set():
            try:
                batch = [self._frames.get(timeout=0.2)]
            except queue.Empty:
                continue
            while batch[-1] is not None and len(batch) < CATCH_UP_BATCH:  # the backlog, in one call
                try:
                    batch.append(self._frames.get_nowait())
                except queue.Empty:
                    break
            frames = [f for f in batch if f is not None]
            if frames:
                t0 = time.perf_counter()
                feats = self.extractor.resnet(np.concatenate(frames))
                self.busy += time.perf_counter() - t0
                self._append(0, self.extractor.pca.transform(feats))
            if batch[-1] is None:
                return

    def _audio(self) -> None:
        decoder = decode.AudioDecoder(self.playlist, input_options=LIVE_INPUT)
        with contextlib.closing(decoder.samples(0.5)) as blocks:
            for block in blocks:
                if self.workers.stop.is_set():
                    return
                t0 = time.perf_counter()
                feats = self.extractor.vggish.features(decode.to_pieces(block))
                self.busy += time.perf_counter() - t0
                self._append(1, feats)
