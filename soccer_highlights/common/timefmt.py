"""How times are written for people: the match clock and SoccerNet's `gameTime`."""


def clock(seconds: float) -> str:
    """Match clock `MM:SS`, whole seconds (minutes keep counting past 59, as football clocks do)."""
    s = max(0, int(seconds))
    return f"{s // 60:02d}:{s % 60:02d}"


def game_time(half: int, seconds: float) -> str:
    """SoccerNet's `gameTime`: `"<half> - MM:SS"` of the seconds since the half started."""
    return f"{half} - {clock(seconds)}"
