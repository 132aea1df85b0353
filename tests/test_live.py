"""Live runs on loopback streams: ffmpeg plays a generated match to udp:// or a growing HLS folder at a fixed
multiple of real time; the live spans equal an offline run's on the recording, gaps are recorded, and a
stopped run leaves whole files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from soccer_highlights.commands import inference
from soccer_highlights.common.errors import handle_sigterm
from soccer_highlights.common.ffmpeg import ffmpeg_exe, media_arg, probe
from soccer_highlights.synthetic.video import make_match_video
from tests.live_fakes import FastFrames

SECONDS = 60
RATE = 4  # the stream plays at 4x real time
# Peaks of a class at least 7 s apart and spans of 5 s: no two spans of a class ever merge or get shortened, so
# every clip has the documented bound on when it is final (`final_by`).
RULE = {"before": 2, "after": 3, "min_peak_distance": 7, "merge_gap": 1, "min_length": 0, "max_length": 10}
# Wall seconds of compute on top of the stream's wait (networks, scoring, cutting the clip): generous, as the
# test shares two cores with the rest of the suite.
COMPUTE_SEC = 20.0


@pytest.fixture(autouse=True)
def fast_frames(monkeypatch):
    from soccer_highlights.extract_features import pipeline

    monkeypatch.setattr(pipeline, "_resnet", lambda *args: FastFrames())


@pytest.fixture(scope="module")
def match(tmp_path_factory) -> Path:
    events = [(8.0, "goal"), (25.0, "card"), (41.0, "kick")]
    return make_match_video(tmp_path_factory.mktemp("match") / "match.mp4", SECONDS, events, size="160x90")


@pytest.fixture(scope="module")
def decoder_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("decoder") / "short.json"
    path.write_text(json.dumps({"default": RULE, "rules": {c: RULE for c in ("goal", "kick", "card", "subs")}}))
    return path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sender:
    """ffmpeg playing a video at RATE x real time once `ready` exists (the live run is listening)."""

    def __init__(self, video: Path, target: list[str], ready: Path | None):
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-readrate", str(RATE)]
        self.cmd = [*cmd, "-i", media_arg(video), "-c", "copy", *target]
        self.ready = ready
        self.proc: subprocess.Popen | None = None
        self.cancelled = threading.Event()
        self.thread = threading.Thread(target=self._start, daemon=True)
        self.thread.start()

    def _start(self) -> None:
        while self.ready is not None and not self.ready.exists():
            if self.cancelled.wait(0.1):
                return
        if not self.cancelled.wait(1.0 if self.ready else 0.0):
            self.proc = subprocess.Popen(self.cmd)

    def stop(self) -> None:
        """Stop ffmpeg by its PID (also when paused)."""
        self.cancelled.set()
        self.thread.join()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()


@contextlib.contextmanager
def playing(video: Path, *target: str, ready: Path | None = None) -> Iterator[Sender]:
    """A Sender for the block; stopped on exit, also when the test fails."""
    sender = Sender(video, list(target), ready)
    try:
        yield sender
    finally:
        sender.stop()


def _udp(port: int) -> str:
    return f"udp://127.0.0.1:{port}?fifo_size=100000&overrun_nonfatal=1"


def _live(model: Path, out: Path, source: str, decoder: Path, *extra: str) -> None:
    args = ["--model", str(model), "--out", str(out), "--live", source, "--decoder_config", str(decoder)]
    args += ["--threshold", "0.05", "--weights", "random", "--quiet", "--fast", "--live_segment", "1"]
    assert inference.main([*args, *extra]) == 0


def _offline(model: Path, out: Path, decoder: Path) -> dict:
    args = ["--model", str(model), "--out", str(out / "offline"), "--video", str(out / "recording.m3u8")]
    args += ["--decoder_config", str(decoder), "--threshold", "0.05", "--weights", "random", "--quiet", "--fast"]
    assert inference.main(args) == 0
    return json.loads((out / "offline" / "spans.json").read_text())


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "spans.jsonl").read_text().splitlines()]


def _key(span: dict) -> tuple:
    return (span["start"], span["end"], span["class"], span["peak"])


def _check_clips(out: Path, lines: list[dict]) -> None:
    """Every line names a clip that is a whole video, listed in highlights.m3u8 in the same order."""
    playlist = (out / "highlights.m3u8").read_text().splitlines()
    listed = [line for line in playlist if line.startswith("clips/")]
    assert listed == [line["clip"].removesuffix(".mp4") + ".ts" for line in lines]
    for line in lines:
        assert probe(out / line["clip"]).duration > 0
    assert [line["number"] for line in lines] == list(range(1, len(lines) + 1))
    assert not list(out.glob(".reserve.*"))  # the space held for a full disk is given back


@pytest.mark.slow
def test_udp_stream_live_spans_equal_offline_spans_on_the_recording(
    tiny_model, match, decoder_config, tmp_path, capsys
):
    out, port = tmp_path / "live", _free_udp_port()
    with (
        Watch(out) as watch,
        playing(match, "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316", ready=out / "spans.jsonl"),
    ):
        _live(tiny_model, out, _udp(port), decoder_config, "--live_stall", "2", "--live_end_after", "4")
    printed = capsys.readouterr().err
    lines = _lines(out)
    offline_out = _offline(tiny_model, out, decoder_config)
    final = json.loads((out / "spans.json").read_text())["spans"]
    assert lines and sorted(map(_key, lines)) == sorted(map(_key, offline_out["spans"])) == sorted(map(_key, final))
    _same_as_offline(out, out / "offline")
    assert abs(probe(out / "recording.m3u8").duration - SECONDS) < 1.5
    _check_clips(out, lines)
    _within_bounds(lines)
    assert (out / "highlights.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")
    # report.html was rewritten while the stream played, with spans in it
    assert len(watch.reports) >= 2, watch.reports
    assert "clips, seconds from the event's moment in the stream to its clip: median" in printed
    assert "real-time factor" in printed


def _within_bounds(lines: list[dict]) -> None:
    """Every span final by the documented bound (stream seconds), every clip ready within that wait (played at
    RATE x) plus COMPUTE_SEC."""
    assert all(x["final_at"] <= x["final_by"] for x in lines), [(x["final_at"], x["final_by"]) for x in lines]
    late = [x for x in lines if x["latency_sec"] > (x["final_by"] - x["peak"]) / RATE + COMPUTE_SEC]
    assert not late and all(x["latency_sec"] >= 0 for x in lines), late


def _same_as_offline(live: Path, offline: Path) -> None:
    """results_spotting.json (scores to float noise: windows scored in other batches) and the reel's subtitles."""
    a, b = (json.loads((d / "results_spotting.json").read_text())["predictions"] for d in (live, offline))
    assert [(p["gameTime"], p["label"]) for p in a] == [(p["gameTime"], p["label"]) for p in b]
    assert np.allclose([float(p["confidence"]) for p in a], [float(p["confidence"]) for p in b], atol=1e-5)
    assert (live / "highlights.srt").read_text() == (offline / "highlights.srt").read_text()


class Watch:
    """Notes each version of report.html written while live.json says the run is live and spans.jsonl has a line."""

    def __init__(self, out: Path):
        self.out = out
        self.reports: set[tuple[int, int]] = set()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _poll(self) -> None:
        while not self.done.wait(0.2):
            with contextlib.suppress(OSError, ValueError):
                live = json.loads((self.out / "live.json").read_text())["state"] == "live"
                if live and (self.out / "spans.jsonl").read_text().strip():
                    stat = (self.out / "report.html").stat()
                    self.reports.add((stat.st_mtime_ns, stat.st_size))


@pytest.mark.slow
def test_growing_hls_folder_live_spans_equal_offline_spans(tiny_model, match, decoder_config, tmp_path):
    hls, out = tmp_path / "hls", tmp_path / "live"
    hls.mkdir()
    target = ["-f", "hls", "-hls_time", "1", "-hls_list_size", "0", "-hls_playlist_type", "event"]
    with playing(match, *target, media_arg(hls / "stream.m3u8")):
        while not (hls / "stream.m3u8").exists():
            time.sleep(0.1)
        _live(tiny_model, out, str(hls / "stream.m3u8"), decoder_config, "--live_end_after", "10")
    lines = _lines(out)
    offline = _offline(tiny_model, out, decoder_config)["spans"]
    assert lines and sorted(map(_key, lines)) == sorted(map(_key, offline))
    _same_as_offline(out, out / "offline")
    _check_clips(out, lines)
    assert all(x["final_at"] <= x["final_by"] for x in lines)


@pytest.mark.slow
def test_a_stream_that_stops_for_10_s_goes_on_with_the_gap_recorded(tiny_model, match, decoder_config, tmp_path):
    out, port = tmp_path / "live", _free_udp_port()
    with playing(match, "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316", ready=out / "spans.jsonl") as sender:
        pause = threading.Thread(target=_pause, args=(sender, 20 / RATE, 10.0), daemon=True)
        pause.start()
        _live(tiny_model, out, _udp(port), decoder_config, "--live_stall", "2", "--live_end_after", "15")
        pause.join()
    state = json.loads((out / "live.json").read_text())
    (gap,) = state["gaps"]
    assert 15 <= gap["at"] <= 25 and gap["lost_sec"] >= 8 and gap["reconnects"] >= 1
    # nothing lost or played twice: the recording lasts as long as the match
    assert abs(probe(out / "recording.m3u8").duration - SECONDS) < 2.5
    lines = _lines(out)
    assert len({line["clip"] for line in lines}) == len(lines)
    assert sorted(map(_key, lines)) == sorted(map(_key, _offline(tiny_model, out, decoder_config)["spans"]))
    assert all(x["final_at"] <= x["final_by"] for x in lines)  # the gap takes no stream time


def _pause(sender: Sender, after: float, seconds: float) -> None:
    """Stop the sender for `seconds`, `after` seconds after it started."""
    while sender.proc is None and not sender.cancelled.wait(0.1):
        pass
    if sender.proc is None or sender.cancelled.wait(after):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(sender.proc.pid, signal.SIGSTOP)
        sender.cancelled.wait(seconds)
        os.kill(sender.proc.pid, signal.SIGCONT)


@pytest.mark.slow
def test_sigterm_mid_match_leaves_complete_outputs(tiny_model, match, decoder_config, tmp_path):
    out, port = tmp_path / "live", _free_udp_port()
    handle_sigterm()
    try:
        with playing(match, "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316", ready=out / "spans.jsonl") as s:
            stop = threading.Thread(target=_terminate_after, args=(s, 30 / RATE), daemon=True)
            stop.start()
            _live(tiny_model, out, _udp(port), decoder_config, "--live_stall", "2", "--live_end_after", "30")
            stop.join()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    recorded = probe(out / "recording.m3u8").duration
    assert 5 < recorded < SECONDS - 10
    assert (out / "recording.m3u8").read_text().rstrip().endswith("#EXT-X-ENDLIST")
    spans = json.loads((out / "spans.json").read_text())["spans"]
    lines = _lines(out)
    assert sorted(map(_key, lines)) == sorted(map(_key, spans))
    _check_clips(out, lines)
    assert {"results_spotting.json", "report.html", "timeline.png", "highlights.mp4"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "live.json").read_text())["state"] == "finished"


def _terminate_after(sender: Sender, seconds: float) -> None:
    """SIGTERM to this process `seconds` after the stream started."""
    while sender.proc is None and not sender.cancelled.wait(0.1):
        pass
    if not sender.cancelled.wait(seconds):
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_second_live_run_into_the_same_folder_is_refused(tiny_model, tmp_path):
    from soccer_highlights.common.errors import UserError
    from soccer_highlights.live.outputs import lock_folder

    held = lock_folder(tmp_path / "out")
    try:
        with pytest.raises(UserError, match="another live run is writing into this folder"):
            lock_folder(tmp_path / "out")
    finally:
        held.close()
    (tmp_path / "out" / "spans.jsonl").write_text("")
    with pytest.raises(UserError, match="holds an earlier live run"):
        inference.main(
            [
                "--model",
                str(tiny_model),
                "--out",
                str(tmp_path / "out"),
                "--live",
                "udp://127.0.0.1:9",
                "--weights",
                "random",
            ]
        )


def test_falling_behind_is_said_with_the_numbers_and_the_catch_up_rule():
    from soccer_highlights.live.pace import BEHIND_SEC, behind_message

    assert behind_message(BEHIND_SEC, 100.0, 85.0, 0.9, 1.0) is None
    message = behind_message(40.0, 300.0, 258.0, 0.85, 1.0)
    assert message is not None and message.startswith("warning: falling behind")
    assert "300 s" in message and "258 s" in message and "40 s behind" in message and "0.85x" in message
    assert "no token is skipped" in message


def test_live_is_one_input(tiny_model, tmp_path):
    from soccer_highlights.common.errors import UserError

    base = ["--model", str(tiny_model), "--out", str(tmp_path / "out"), "--live", "udp://127.0.0.1:9"]
    with pytest.raises(UserError, match="a --live stream is one input"):
        inference.main([*base, "--num_shards", "2", "--shard_index", "0"])
    with pytest.raises(UserError, match="--live is the one input"):
        inference.main([*base, "--video", str(tmp_path / "match.mp4")])
    assert not (tmp_path / "out").exists()


def _garbage(port: int, stop: threading.Event) -> None:
    """Random bytes (no MPEG-TS sync byte anywhere) to the port until `stop`."""
    rng = np.random.default_rng(0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while not stop.wait(0.02):
            data = rng.integers(0, 255, 1316, dtype=np.uint8)
            data[data == 0x47] = 0  # never a sync byte
            sock.sendto(data.tobytes(), ("127.0.0.1", port))


@pytest.mark.slow
def test_garbage_only_leaves_nothing_and_the_retry_is_accepted(tiny_model, decoder_config, tmp_path):
    """issue 30.9: a source that sends only garbage. On 643e491 the run exited 2 but left empty playlists,
    spans.jsonl, clips/, an empty report and live.json "live", and the retry into the folder was refused."""
    from soccer_highlights.common.errors import UserError

    out, port = tmp_path / "live", _free_udp_port()
    stop = threading.Event()
    sender = threading.Thread(target=_garbage, args=(port, stop), daemon=True)
    sender.start()
    try:
        with pytest.raises(UserError, match="nothing was received"):
            _live(tiny_model, out, _udp(port), decoder_config, "--live_stall", "1", "--live_end_after", "3")
    finally:
        stop.set()
        sender.join()
    assert not out.exists(), sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    out.mkdir()  # an existing folder the user made: only what the run made goes
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(UserError, match="nothing was received"):
        _live(tiny_model, out, _udp(port), decoder_config, "--live_stall", "1", "--live_end_after", "2")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_a_growing_file_empty_for_longer_than_the_stall_is_waited_for(tiny_model, match, decoder_config, tmp_path):
    """issue 30.9: a file a plain `ffmpeg -re ... file.ts` writes stays empty for a while. On 643e491 it was refused
    after about --live_stall with only "Input/output error", whatever --live_end_after said; now it is waited for
    (one line says so) and recorded once it grows."""
    ts, out = tmp_path / "stream.ts", tmp_path / "live"
    whole = tmp_path / "whole.ts"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", media_arg(match), "-c", "copy", "-f", "mpegts", media_arg(whole)]
    )
    ts.write_bytes(b"")

    def grow() -> None:
        time.sleep(4)  # longer than --live_stall 1
        with open(ts, "ab") as fh:
            fh.write(whole.read_bytes())

    writer = threading.Thread(target=grow, daemon=True)
    writer.start()
    with pytest.MonkeyPatch.context() as mp:
        lines: list[str] = []
        mp.setattr(
            "soccer_highlights.live.recorder.log.warning", lambda msg, *args: lines.append(msg % args), raising=True
        )
        _live(tiny_model, out, str(ts), decoder_config, "--live_stall", "1", "--live_end_after", "20")
    writer.join()
    assert any("no data yet" in line and "waiting up to 20 s (--live_end_after)" in line for line in lines), lines
    assert abs(probe(out / "recording.m3u8").duration - SECONDS) < 2.5
    assert json.loads((out / "live.json").read_text())["state"] == "finished"


@pytest.mark.slow
def test_an_output_folder_removed_mid_run_is_said_and_not_made_again(tiny_model, match, decoder_config, tmp_path):
    """issue 30.7: on 643e491 a live folder removed during the run was made again, with live.json "live" and a
    report, and the next run into it was refused. Now: one line saying so, nothing made again."""
    import shutil

    from soccer_highlights.common.errors import UserError

    out, port = tmp_path / "live", _free_udp_port()

    def remove() -> None:
        deadline = time.monotonic() + 120
        while len(list((out / "recording").glob("seg_*.ts"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        # as a user's `rm -rf` repeated until it succeeds: a file the run writes while the tree is being removed
        # (it checks the folder before each write) makes one removal fail with "directory not empty"
        while out.exists() and time.monotonic() < deadline:
            shutil.rmtree(out, ignore_errors=True)

    with playing(match, "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316", ready=out / "spans.jsonl"):
        remover = threading.Thread(target=remove, daemon=True)
        remover.start()
        with pytest.raises(UserError, match="the output folder was removed during the live run"):
            _live(tiny_model, out, _udp(port), decoder_config, "--live_stall", "2", "--live_end_after", "10")
        remover.join()
    time.sleep(1)
    assert not out.exists(), sorted(str(p.relative_to(out)) for p in out.rglob("*"))


def test_the_refusal_of_a_folder_with_an_unfinished_live_run_gives_the_command_that_finishes_it(tiny_model, tmp_path):
    """issue 30.10: the refusal says how to get the end-of-run outputs of the recording already there."""
    from soccer_highlights.common.errors import UserError

    out = tmp_path / "out"
    out.mkdir()
    (out / "recording.m3u8").write_text("#EXTM3U\n")
    args = ["--model", str(tiny_model), "--out", str(out), "--live", "udp://127.0.0.1:9", "--weights", "random"]
    with pytest.raises(UserError) as info:
        inference.main(args)
    message = str(info.value)
    assert "holds an earlier live run" in message
    assert f"--model {tiny_model} --video {out / 'recording.m3u8'} --out {out}" in message, message


def test_a_users_report_in_a_live_folder_refuses_the_run(tiny_model, tmp_path):
    from soccer_highlights.common.errors import UserError

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("the user's notes")
    args = ["--model", str(tiny_model), "--out", str(out), "--live", "udp://127.0.0.1:9", "--weights", "random"]
    with pytest.raises(UserError, match="report.html was not written by this project"):
        inference.main(args)
    assert (out / "report.html").read_text() == "the user's notes"
