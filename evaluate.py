"""SoccerNet's average-mAP of predictions against labels. A thin entry over the package (installed as
`soccer-evaluate`; the code is `soccer_highlights.commands.evaluate`): `python evaluate.py --help`."""

from soccer_highlights.commands.entry import run_command

if __name__ == "__main__":
    run_command("soccer-evaluate")
