"""V&D's second-based command: per-second scores and spots for every game of a list with a trained model.
A thin entry over the package (installed as `soccer-spot`; the code is `soccer_highlights.commands.spot`):
`python ClassificationSecondBased.py --help`."""

from soccer_highlights.commands.entry import run_command

if __name__ == "__main__":
    run_command("soccer-spot")
