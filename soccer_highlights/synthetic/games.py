"""Synthetic SoccerNet: games in the exact SoccerNet layout whose features carry learnable event traces.

Each game folder holds `1_ResNET_TF2_PCA512.npy`, `2_ResNET_TF2_PCA512.npy`, `1_VGGish.npy`,
`2_VGGish.npy` (float32 [T, 512], 2 per second) and `Labels-v2.json` (real label names, `position` in
ms and `gameTime`); the root holds `listgame_Train_N.npy`, `listgame_Valid_N.npy`, `listgame_Test_N.npy`.

Features are temporally correlated Gaussian noise. Every event adds, around its time (a Gaussian bump
of a few seconds), a fixed direction per modality scaled by a per-label amplitude: goals speak mostly in
the audio, cards and substitutions mostly in the video, set pieces ("kick") in both, so a model that
fuses both modalities beats either alone. Non-highlight labels (Throw-in, Foul, ...) leave their own
traces, some of them resembling a highlight in one modality (a foul looks a bit like a card, a shot off
target sounds a bit like a goal). The directions are fixed (not drawn from `seed`), so every generated
game matches every model trained on generated data; `seed` only draws the games.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soccer_highlights.common.atomic import save_npy, write_json
from soccer_highlights.common.cli import Parser, add_progress_flags
from soccer_highlights.common.constants import AUDIO_FEATURES, FEATURE_DIM, TOKENS_PER_SECOND, VIDEO_FEATURES
from soccer_highlights.common.errors import UserError, run_cli
from soccer_highlights.common.timefmt import game_time
from soccer_highlights.dataset import Event

SIGNATURE_SEED = 20200614
VIDEO_FILE = VIDEO_FEATURES
AUDIO_FILE = AUDIO_FEATURES
SPLIT_NAMES = ("Train", "Valid", "Test")

# label: (events per minute of a half, seconds of delay of the trace, [(trace key, video amp, audio amp)])
EVENT_TABLE: dict[str, tuple[float, float, list[tuple[str, float, float]]]] = {
    "Goal": (0.07, 3.0, [("goal", 1.0, 4.0)]),
    "Shots on target": (0.08, 1.0, [("goal", 0.8, 2.5)]),
    "Penalty": (0.01, 0.0, [("kick", 2.5, 2.5)]),
    "Corner": (0.15, 0.0, [("kick", 2.5, 2.5)]),
    "Direct free-kick": (0.08, 0.0, [("kick", 2.5, 2.5)]),
    "Indirect free-kick": (0.10, 0.0, [("kick", 2.5, 2.5)]),
    "Substitution": (0.08, 0.0, [("subs", 4.0, 0.8)]),
    "Yellow card": (0.08, 1.0, [("card", 4.0, 1.0)]),
    "Red card": (0.006, 1.0, [("card", 4.0, 1.0)]),
    "Yellow->red card": (0.004, 1.0, [("card", 4.0, 1.0)]),
    "Shots off target": (0.12, 1.0, [("shot_off", 1.5, 1.5), ("goal", 0.0, 1.2)]),
    "Foul": (0.30, 0.0, [("foul", 1.5, 1.0), ("card", 1.0, 0.0)]),
    "Throw-in": (0.50, 0.0, [("throw_in", 1.5, 0.5)]),
    "Ball out of play": (0.60, 0.0, [("out", 1.5, 0.5)]),
    "Clearance": (0.30, 0.0, [("clearance", 1.5, 0.5)]),
    "Offside": (0.05, 0.0, [("offside", 1.5, 0.5)]),
    "Kick-off": (0.0, 0.0, [("kick_off", 1.5, 0.5)]),  # at the start of each half and after each goal
}
TRACE_GAIN = 3.0  # scales every amplitude above (noise has unit variance per dimension)
TRACE_SIGMA_S = 2.0  # width of the bump around the event
NOISE_RHO = 0.5  # frame-to-frame correlation of the background noise


@dataclass
class SyntheticGame:
    """One generated match: its relative folder name, features per half and events."""

    name: str
    halves: list[tuple[np.ndarray, np.ndarray]]  # [(video [T, D], audio [T, D])] for halves 1 and 2
    events: list[Event]

    def labels_json(self) -> dict:
        anns = []
        for ev in self.events:
            anns.append(
                {
                    "gameTime": game_time(ev.half, ev.position_ms // 1000),
                    "label": ev.label,
                    "position": str(ev.position_ms),
                    "team": _team(ev),
                    "visibility": "visible",
                }
            )
        return {"UrlLocal": self.name + "/", "UrlYoutube": "", "annotations": anns}


@dataclass
class SyntheticDataset:
    root: Path
    lists: dict[str, Path]  # "train" / "valid" / "test" -> list file
    games: dict[str, list[Event]]  # relative game folder -> events


def _team(ev: Event) -> str:
    """A deterministic side for the label file (and the score in the game's name)."""
    if ev.label == "Ball out of play":
        return "not applicable"
    return "home" if ev.position_ms % 2 == 0 else "away"


@functools.lru_cache(maxsize=1)
def signatures() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A fixed unit direction per trace key and modality."""
    rng = np.random.default_rng(SIGNATURE_SEED)
    keys = sorted({key for _, _, traces in EVENT_TABLE.values() for key, _, _ in traces})
    out = {}
    for key in keys:
        v, a = rng.standard_normal((2, FEATURE_DIM))
        out[key] = (v / np.linalg.norm(v), a / np.linalg.norm(a))
    return out


def _noise(rng: np.random.Generator, frames: int) -> np.ndarray:
    """AR(1) Gaussian noise [frames, D] with unit variance per dimension."""
    from scipy.signal import lfilter

    eps = rng.standard_normal((frames, FEATURE_DIM), dtype=np.float32)
    return lfilter([np.sqrt(1 - NOISE_RHO**2)], [1.0, -NOISE_RHO], eps, axis=0).astype(np.float32)


def _draw_events(rng: np.random.Generator, half: int, seconds: float, event_rate: float) -> list[Event]:
    minutes = seconds / 60.0
    events = [Event(half, int(rng.integers(0, 2000)), "Kick-off")]
    for label, (rate, _, _) in EVENT_TABLE.items():
        for _ in range(rng.poisson(rate * event_rate * minutes)):
            ms = int(rng.integers(1000, max(int(seconds * 1000) - 1000, 1001)))
            events.append(Event(half, ms, label))
            if label == "Goal" and ms + 60000 < seconds * 1000:
                events.append(Event(half, ms + int(rng.integers(45000, 60000)), "Kick-off"))
    return sorted(events, key=lambda e: (e.position_ms, e.label))


def make_game(index: int, seed: int = 0, half_minutes: float = 45.0, event_rate: float = 1.0) -> SyntheticGame:
    """Game number `index` of the dataset drawn with `seed` (the same game whatever the dataset size)."""
    rng = np.random.default_rng([seed, index])
    sigs = signatures()
    halves, events = [], []
    for half in (1, 2):
        seconds = half_minutes * 60.0 + float(rng.integers(0, 60))  # stoppage time: halves differ in length
        frames = int(seconds * TOKENS_PER_SECOND)
        video, audio = _noise(rng, frames), _noise(rng, frames)
        half_events = _draw_events(rng, half, seconds, event_rate)
        t = (np.arange(frames) + 0.5) / TOKENS_PER_SECOND
        for ev in half_events:
            _, delay, traces = EVENT_TABLE[ev.label]
            centre = ev.position_ms / 1000.0 + delay + rng.normal(0.0, 0.5)
            gain = TRACE_GAIN * rng.uniform(0.6, 1.4)
            bump = (np.exp(-0.5 * ((t - centre) / TRACE_SIGMA_S) ** 2) * gain).astype(np.float32)
            lo, hi = np.searchsorted(t, [centre - 4 * TRACE_SIGMA_S, centre + 4 * TRACE_SIGMA_S])
            for key, v_amp, a_amp in traces:
                video[lo:hi] += np.outer(bump[lo:hi] * v_amp, sigs[key][0]).astype(np.float32)
                audio[lo:hi] += np.outer(bump[lo:hi] * a_amp, sigs[key][1]).astype(np.float32)
        halves.append((video, audio))
        events.extend(half_events)
    home = sum(1 for e in events if e.label == "Goal" and _team(e) == "home")
    away = sum(1 for e in events if e.label == "Goal") - home
    day = 1 + index % 28
    name = f"synthetic_league/2025-2026/2025-{1 + index // 28 % 12:02d}-{day:02d} - 15-00 Team{index} {home} - {away} Rivals{index}"
    return SyntheticGame(name, halves, events)


def write_game(game: SyntheticGame, game_dir: str | Path) -> Path:
    """Write one game's feature files and Labels-v2.json into `game_dir`."""
    game_dir = Path(game_dir)
    for half, (video, audio) in enumerate(game.halves, start=1):
        save_npy(game_dir / f"{half}_{VIDEO_FILE}.npy", video)
        save_npy(game_dir / f"{half}_{AUDIO_FILE}.npy", audio)
    write_json(game_dir / "Labels-v2.json", game.labels_json())
    return game_dir


def split_counts(n_games: int, splits: Sequence[float]) -> list[int]:
    """Games per split from relative weights; every split with a weight > 0 gets at least one game."""
    weights = np.asarray(splits, dtype=float)
    if len(weights) != 3 or (weights < 0).any() or weights.sum() <= 0:
        raise UserError(f"splits must be three non-negative weights (train, valid, test), got {list(splits)}")
    if n_games < int((weights > 0).sum()):
        raise UserError(f"{n_games} games cannot fill {int((weights > 0).sum())} splits")
    counts = np.floor(weights / weights.sum() * n_games).astype(int)
    counts[(weights > 0) & (counts == 0)] = 1
    while counts.sum() > n_games:
        counts[int(np.argmax(counts))] -= 1
    counts[int(np.argmax(weights))] += n_games - counts.sum()
    return [int(c) for c in counts]


def generate_dataset(
    root: str | Path,
    n_games: int = 10,
    half_minutes: float = 45.0,
    seed: int = 0,
    splits: Sequence[float] = (0.6, 0.2, 0.2),
    event_rate: float = 1.0,
    progress: bool = True,
) -> SyntheticDataset:
    """Write `n_games` games under `root` in the SoccerNet layout, plus `listgame_<Split>_<n>.npy` lists."""
    from tqdm import tqdm

    if n_games < 1 or half_minutes <= 0:
        raise UserError(f"need at least one game and a positive half length, got {n_games} and {half_minutes}")
    if event_rate < 0:
        raise UserError(f"--event_rate must be >= 0, got {event_rate}")
    root = Path(root)
    counts = split_counts(n_games, splits)
    games: dict[str, list[Event]] = {}
    lists: dict[str, Path] = {}
    index = 0
    bar = tqdm(total=n_games, desc="synthetic games", unit="game", disable=not progress)
    for split, count in zip(SPLIT_NAMES, counts, strict=True):
        names = []
        for _ in range(count):
            game = make_game(index, seed=seed, half_minutes=half_minutes, event_rate=event_rate)
            write_game(game, root / game.name)
            games[game.name] = game.events
            names.append(game.name)
            index += 1
            bar.update()
        if count:
            lists[split.lower()] = root / f"listgame_{split}_{count}.npy"
            save_npy(lists[split.lower()], np.array(names))
    bar.close()
    return SyntheticDataset(root, lists, games)


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(command="soccer-synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="dataset root to write")
    parser.add_argument("--games", type=int, default=10, help="number of games (split by --splits)")
    parser.add_argument("--half_minutes", type=float, default=45.0, help="length of each half in minutes (plus 0-59 s)")
    parser.add_argument("--seed", type=int, default=0, help="draws the games (the traces are fixed)")
    parser.add_argument(
        "--splits",
        type=float,
        nargs=3,
        default=(0.6, 0.2, 0.2),
        metavar=("TRAIN", "VALID", "TEST"),
        help="shares of the games in the three lists",
    )
    parser.add_argument("--event_rate", type=float, default=1.0, help="multiplies every event rate")
    add_progress_flags(parser, verbose=False)  # no TensorFlow here
    args = parser.parse_args(argv)
    data = generate_dataset(
        args.out,
        n_games=args.games,
        half_minutes=args.half_minutes,
        seed=args.seed,
        splits=args.splits,
        event_rate=args.event_rate,
        progress=not args.quiet,
    )
    for split, path in data.lists.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
