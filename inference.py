"""Highlights of match videos, folders of them, feature files or a live stream (the command that
`run_inference.sh` wraps). A thin entry over the package (installed as `soccer-highlights`; the code is
`soccer_highlights.commands.inference`): `python inference.py --help`."""

from soccer_highlights.commands.entry import run_command

if __name__ == "__main__":
    run_command("soccer-highlights")
