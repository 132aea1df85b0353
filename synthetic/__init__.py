"""Generated data for tests and the demo: SoccerNet-layout games whose events leave a learnable trace
(`synthetic.games`, `python -m synthetic.games`) and a demo match video with events at the same times
(`synthetic.video`, `python -m synthetic.video`)."""

from synthetic.games import (
    SyntheticDataset,
    SyntheticGame,
    generate_dataset,
    make_game,
    signatures,
    split_counts,
    write_game,
)

__all__ = [
    "SyntheticDataset",
    "SyntheticGame",
    "generate_dataset",
    "make_game",
    "signatures",
    "split_counts",
    "write_game",
]
