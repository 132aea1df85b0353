"""What a live run says about its pace: where it stands (`Pace`), the line once it listens, a progress line every
PROGRESS_EVERY_SEC, the one warning when it falls more than BEHIND_SEC behind, and the latency table at its end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soccer_highlights.live.recorder import LISTENING, Recorder
from soccer_highlights.live.relay import Clock
from soccer_highlights.live.tokens import CATCH_UP_BATCH

PROGRESS_EVERY_SEC = 10.0  # a progress line on stderr at most this often
BEHIND_SEC = 15.0  # the features this far behind the recording (beyond half a window): "falling behind"


@dataclass(frozen=True)
class Pace:
    """Where a live run stands at a moment of its clock: stream seconds recorded and scored, how far the scores
    are behind the recording (beyond the half window that must follow a token), the spans given out so far,
    and the seconds since the stream started."""

    recorded: float
    scored: float
    lag: float
    spans: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Stream seconds scored per second of the run."""
        return round(self.scored / self.elapsed, 3)

    @property
    def stream_rate(self) -> float:
        """Stream seconds received per second of the run."""
        return round(self.recorded / self.elapsed, 3)


def listening_line(source: str, out: Path) -> str:
    """The line a live run prints once its recorder has started."""
    how = "listening on" if source.split("://", 1)[0].lower() in LISTENING else "reading"
    return (
        f"{how} {source}: recording to {out / 'recording'}, clips to {out / 'clips'} "
        "(Ctrl-C stops and writes the outputs)"
    )


def progress_line(pace: Pace) -> str:
    """The line a live run prints every PROGRESS_EVERY_SEC: how much is recorded and scored, spans so far, and
    how far the scores are behind the stream."""
    return (
        f"live: {pace.recorded:.0f} s recorded, {pace.scored:.0f} s scored, {pace.spans} span(s) so far, "
        f"{pace.lag:.0f} s behind the stream"
    )


def behind_message(lag: float, received: float, scored: float, rate: float, stream_rate: float) -> str | None:
    """The one warning of a run whose scores are more than BEHIND_SEC behind the recording, with its numbers and
    the catch-up rule; None while it keeps up."""
    if lag <= BEHIND_SEC:
        return None
    return (
        f"warning: falling behind: the stream is at {received:.0f} s, scores at {scored:.0f} s ({lag:.0f} s behind; "
        f"{rate:.2f}x real time scored, the stream comes at {stream_rate:.2f}x). Catching up: the networks take the "
        f"whole backlog in batches of up to {CATCH_UP_BATCH} frames (faster per frame), no token is skipped; clips "
        "come late until the backlog is cleared"
    )


def latency_table(records: list[dict], clock: Clock, recorder: Recorder, state: dict) -> str:
    """The latency distribution of the run's clips and its pace, for the end of a run."""
    lines = [
        f"recorded {recorder.recorded:.1f} s, {len(recorder.gaps)} gap(s), largest lag {clock.worst_lag:.1f} s; "
        f"real-time factor {state['real_time_factor']:.2f} (stream at {state['stream_rate']:.2f}x), "
        f"{state['compute_per_stream_sec']:.2f} s of network time per second of stream"
    ]
    if records:
        latency = np.array([r["latency_sec"] for r in records])
        wait = np.array([r["wait_sec"] for r in records])
        q = np.percentile(latency, [50, 90])
        lines.append(
            f"{len(records)} clips, seconds from the event's moment in the stream to its clip: median {q[0]:.1f}, "
            f"90% {q[1]:.1f}, max {latency.max():.1f} (stream after the event until the span was final: median "
            f"{np.median(wait):.1f}, max {wait.max():.1f})"
        )
    return "\n".join(lines)
