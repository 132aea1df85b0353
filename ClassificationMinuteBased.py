"""V&D's training command: train, test or predict with the multimodal action-spotting networks on SoccerNet
features, with V&D's flags. A thin entry over the package (installed as `soccer-train`; the code is
`soccer_highlights.commands.train`): `python ClassificationMinuteBased.py --help`."""

from soccer_highlights.commands.entry import run_command

if __name__ == "__main__":
    run_command("soccer-train")
