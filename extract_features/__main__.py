"""`python -m extract_features`: the command installed as `soccer-extract` (`soccer_highlights.commands.extract`)."""

from soccer_highlights.commands.entry import run_command

if __name__ == "__main__":
    run_command("soccer-extract")
