"""The flags several tools share come from common/cli.py: same names, same checks, distinct batch names."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from soccer_highlights import synthetic
from soccer_highlights.commands import check_precision, extract, inference
from soccer_highlights.commands import evaluate as evaluate_cmd
from soccer_highlights.commands import spot as ClassificationSecondBased
from soccer_highlights.commands import train as train_cmd
from soccer_highlights.commands.extract import extract_parser, fit_pca_parser
from soccer_highlights.common import cli
from soccer_highlights.common.cli import add_progress_flags, add_spotting_flags, check_spotting_flags
from soccer_highlights.common.errors import UserError
from soccer_highlights.extract_features import calibrate


@pytest.fixture
def help_of(capsys):
    def text(parse) -> str:
        with pytest.raises(SystemExit) as stop:
            parse(["--help"])
        assert stop.value.code == 0
        return capsys.readouterr().out

    return text


CLIS = {
    "inference": inference.parse_args,
    "spot": ClassificationSecondBased.parse_args,
    "extract": lambda argv: extract_parser().parse_args(argv),
    "fit_pca": lambda argv: fit_pca_parser().parse_args(argv),
    "synthetic": synthetic.games.main,
}
SPOTTING = ("--stride", "--windows_per_call", "--compute_dtype", "--nms_window", "--nms_threshold", "--nms_rule")


@pytest.mark.parametrize("name", sorted(CLIS))
def test_progress_and_verbosity_flags(name, help_of):
    text = help_of(CLIS[name])
    assert ("--quiet" in text) == (name != "fit_pca")  # fit_pca draws no progress bar
    assert ("--verbose" in text) == (name != "synthetic")  # synthetic never loads TensorFlow
    assert "--no_progress" not in text


@pytest.mark.parametrize("name", ["inference", "spot"])
def test_spotting_flags_are_the_shared_ones(name, help_of):
    text = help_of(CLIS[name])
    assert all(flag in text for flag in SPOTTING)
    assert "--batch_size" not in text  # windows per call has its own name


def test_extraction_batch_is_frames_per_call(help_of):
    text = help_of(CLIS["extract"])
    assert "--frames_per_call" in text and "--batch_size" not in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--stride", "0"], "--stride must be >= 1, got 0"),
        (["--windows_per_call", "0"], "--windows_per_call must be >= 1, got 0"),
        (["--nms_window", "nan"], "--nms_window must be a number of seconds >= 0"),
        (["--nms_threshold", "1.5"], "--nms_threshold must be in"),
    ],
)
def test_spotting_checks(argv, message):
    p = argparse.ArgumentParser()
    add_spotting_flags(p)
    add_progress_flags(p)
    args = p.parse_args(argv)
    with pytest.raises(UserError, match=message):
        check_spotting_flags(args)


def test_spotting_defaults_pass():
    p = argparse.ArgumentParser()
    add_spotting_flags(p)
    args = p.parse_args([])
    check_spotting_flags(args)
    assert (args.stride, args.windows_per_call, args.nms_window, args.nms_rule) == (2, 256, 60.0, "vd")


def test_earlier_spellings_still_parse_with_one_deprecation_line_each(capsys):
    from soccer_highlights.commands import evaluate
    from soccer_highlights.commands.extract import RENAMED, parse_args

    args = evaluate.parse_args(["--labels", "L", "--predictions", "P", "--list", "g.npy", "--json=s.json"])
    assert (str(args.game_list), str(args.out)) == ("g.npy", "s.json")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: --list is deprecated and goes in the next release; use --game_list",
        "warning: --json is deprecated and goes in the next release; use --out",
    ]
    args = parse_args(extract_parser(), ["--video_list", "v.txt", "--out_root", "F"], RENAMED)
    assert (args.video_list, args.out) == ("v.txt", "F")
    assert capsys.readouterr().err.count("\n") == 1


def test_renamed_flags_leave_new_spellings_and_what_follows_a_double_dash_alone(capsys):
    from soccer_highlights.common.cli import renamed_flags

    argv = ["--game_list", "--list", "--", "--list"]
    assert renamed_flags(argv, {"--list": "--game_list"}) == ["--game_list", "--game_list", "--", "--list"]
    assert capsys.readouterr().err.count("warning:") == 1


def test_list_flags_name_what_they_list(help_of):
    from soccer_highlights.commands import evaluate

    assert "--game_list" in help_of(evaluate.parse_args) and "--video_list" in help_of(extract_parser().parse_args)
    for parse in (evaluate.parse_args, extract_parser().parse_args):
        assert "--list " not in help_of(parse) and "--json" not in help_of(parse) and "--out_root" not in help_of(parse)


@pytest.mark.parametrize("argv", [[], ["--config", "None"]])
def test_vd_config_spelled_none_means_no_config_file(argv):
    from soccer_highlights.commands import train as ClassificationMinuteBased

    assert ClassificationMinuteBased.build_parser().parse_args(argv).config is None


def test_vd_system_flag_says_it_has_no_effect(help_of):
    from soccer_highlights.commands import train as ClassificationMinuteBased

    for parse in (ClassificationSecondBased.parse_args, ClassificationMinuteBased.build_parser().parse_args):
        assert "has no effect" in " ".join(help_of(parse).split())


# ---- one parser for every command: a mistyped flag, the command's own name, defaults once --------------------


# (main, argv with a mistyped flag: the required flags right otherwise, or missing) -> the flag it means
MISTYPED = {
    "inference": (inference.main, ["--modle", "m.keras", "--out", "o"], "--modle", "--model"),
    "spot": (ClassificationSecondBased.main, ["--testng", "l.npy"], "--testng", "--testing"),
    "train": (train_cmd.main, ["--archtecture", "concat"], "--archtecture", "--architecture"),
    "evaluate": (
        evaluate_cmd.main,
        ["--lables", "L", "--predictions", "P", "--game_list", "g"],
        "--lables",
        "--labels",
    ),
    "extract": (extract.main, ["--vidoe", "v.mp4", "--out", "o"], "--vidoe", "--video"),
    "fit_pca": (extract.main, ["fit_pca", "x.npy", "--out", "p.npz", "--dimm", "8"], "--dimm", "--dim"),
    "convert_pca": (extract.main, ["convert_pca", "--averge", "a.pkl"], "--averge", "--average"),
    "calibrate": (extract.main, ["calibrate", "--video", "v.mp4", "--out", "o", "--frmes", "9"], "--frmes", "--frames"),
    "check_precision": (extract.main, ["check_precision", "--vidoe", "v.mp4"], "--vidoe", "--video"),
    "synthetic": (synthetic.games.main, ["--out", "d", "--gmaes", "3"], "--gmaes", "--games"),
    "synthetic_video": (synthetic.video.main, ["--durtion", "3"], "--durtion", "--duration"),
    "alias_typo": (extract.main, ["--video", "v.mp4", "--compute_dtyp=int8"], "--compute_dtyp", "--feature_dtype"),
}


@pytest.mark.parametrize("name", sorted(MISTYPED))
def test_a_mistyped_flag_is_one_line_naming_the_closest(name, capsys):
    main, argv, wrong, right = MISTYPED[name]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: unknown flag {wrong} (did you mean {right}?)\n" and captured.out == ""


def test_every_argument_error_is_one_line_and_a_far_flag_points_at_the_help(capsys):
    for argv in (["--model", "m.keras"], ["--model", "m.keras", "--out", "o", "--half", "3"]):
        with pytest.raises(SystemExit) as stop:
            inference.parse_args(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "usage:" not in err
    with pytest.raises(SystemExit):
        inference.parse_args(["--model", "m", "--out", "o", "--zzzzzz"])
    assert capsys.readouterr().err == "error: unknown flag --zzzzzz (`python inference.py --help` lists the flags)\n"


def test_values_abbreviations_and_what_follows_a_double_dash_are_no_unknown_flags():
    args = inference.parse_args(["--model", "m", "--out", "o", "--thresh", "-0.5", "--", "-x.mp4"])
    assert args.threshold == -0.5 and args.inputs == ["-x.mp4"]
    assert cli.unknown_flag(extract.extract_parser(), ["--video", "v", "--out=o", "-h", "--", "--bogus"]) is None


def test_an_unknown_subcommand_of_extraction_names_the_closest():
    with pytest.raises(UserError, match=r"unknown subcommand fitpca \(did you mean fit_pca\?\)"):
        extract.main(["fitpca", "--out", "p.npz"])


def test_the_entry_point_says_a_mistyped_flag_in_one_line():
    code = "import sys; sys.argv = ['soccer-highlights', '--modle', 'm']; from soccer_highlights.commands import entry; entry.highlights()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr == "error: unknown flag --modle (did you mean --model?)\n"


# The parsers of the commands this project owns (train's help is its own: it lists the architectures).
PARSERS = {
    "inference": lambda: _parser_of(inference.parse_args),
    "spot": lambda: _parser_of(ClassificationSecondBased.parse_args),
    "evaluate": lambda: _parser_of(evaluate_cmd.parse_args),
    "extract": extract.extract_parser,
    "fit_pca": extract.fit_pca_parser,
    "calibrate": calibrate.calibrate_parser,
    "check_precision": check_precision.check_precision_parser,
    "synthetic": lambda: _parser_of(synthetic.games.main),
    "synthetic_video": lambda: _parser_of(synthetic.video.main),
}


def _parser_of(parse) -> cli.Parser:
    """The Parser a command builds inside `parse`, caught as it parses `--help`."""
    seen: list[cli.Parser] = []

    def catch(self, args=None, namespace=None):
        seen.append(self)
        raise SystemExit(0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli.Parser, "parse_args", catch)
        with pytest.raises(SystemExit):
            parse(["--help"])
    return seen[0]


def _entries(help_text: str) -> list[str]:
    """The help of each flag, on one line."""
    return [" ".join(e.split()) for e in re.split(r"\n  (?=-|[A-Z])", help_text)[1:]]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_each_default_is_shown_once(name):
    parser = PARSERS[name]()
    assert isinstance(parser, cli.Parser)
    parser.epilog = None  # the flags only
    text = parser.format_help()
    for entry in _entries(text):
        assert entry.count("default") <= 1, entry
    for action in parser._actions:
        if action.option_strings and action.nargs != 0 and action.default not in (None, "", argparse.SUPPRESS):
            entry = next(e for e in _entries(text) if e.startswith(action.option_strings[0] + " "))
            assert "default" in entry, entry  # said by the help, or appended


def test_defaults_appear_in_the_help_where_the_help_did_not_say_them(help_of):
    text = " ".join(help_of(ClassificationSecondBased.parse_args).split())
    assert "(default: 2)" in text and "(default: 256)" in text and "(default: vd)" in text
    text = " ".join(help_of(synthetic.games.main).split())
    assert "(default: 0.6 0.2 0.2)" in text and "(default: 0)" in text


@pytest.mark.parametrize(
    "name, groups",
    [
        (
            "inference",
            ["model:", "inputs and outputs:", "decoder:", "scoring and spotting:", "reel:", "live (--live):"],
        ),
        ("spot", ["games:", "model:", "outputs:", "scoring and spotting:"]),
        ("evaluate", ["inputs:", "classes:", "metric:", "outputs:"]),
        ("extract", ["input (one of):", "outputs:", "feature extraction:"]),
    ],
)
def test_flags_are_grouped_by_task(name, groups):
    text = PARSERS[name]().format_help()
    assert all(f"\n{group}\n" in text for group in groups), text


# ---- the command's own name in usage and examples ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv0, name",
    [
        ("/usr/local/bin/soccer-extract", "soccer-extract"),
        ("/venv/Scripts/soccer-extract.exe", "soccer-extract"),
        (str(Path(extract.__file__).parents[2] / "extract_features" / "__main__.py"), "python -m extract_features"),
        (extract.__file__, "python -m soccer_highlights.commands.extract"),
        ("-c", "python -m extract_features"),
    ],
)
def test_the_command_name_follows_how_it_was_started(argv0, name, monkeypatch):
    monkeypatch.setattr("sys.argv", [argv0])
    assert cli.command_name("soccer-extract") == name
    text = extract.extract_parser().format_help()
    assert text.startswith(f"usage: {name} [-h]")
    assert f"\n{name} --video match.mp4 --out DIR" in text  # the examples
    assert extract.fit_pca_parser().format_help().startswith(f"usage: {name} fit_pca")


def test_an_installed_command_names_itself_and_the_others_installed(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/opt/venv/bin/soccer-highlights"])
    text = PARSERS["inference"]().format_help()
    assert text.startswith("usage: soccer-highlights [-h]")
    assert "soccer-highlights --model M.keras --out DIR --video match.mp4" in text
    assert "python inference.py" not in text and "python -m extract_features" not in text
    assert "soccer-extract calibrate" in " ".join(text.split())  # --int8_model's help names the other command
    monkeypatch.setattr("sys.argv", ["/opt/venv/bin/soccer-spot"])
    text = " ".join(PARSERS["spot"]().format_help().split())
    assert text.startswith("usage: soccer-spot ") and "soccer-spot --testing" in text
    assert "ClassificationSecondBased.py" not in text and "to `soccer-evaluate` once" in text


def test_a_checkout_command_keeps_its_checkout_name(monkeypatch):
    monkeypatch.setattr("sys.argv", [str(Path(inference.__file__).parents[2] / "inference.py")])
    text = PARSERS["inference"]().format_help()
    assert text.startswith("usage: python inference.py [-h]") and "\n    python inference.py --model" in text


def test_help_run_installed_and_from_a_checkout():
    root = Path(extract.__file__).parents[2]
    code = "import sys; sys.argv = ['soccer-extract', '--help']; from soccer_highlights.commands import entry; entry.extract()"
    installed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root).stdout
    assert installed.startswith("usage: soccer-extract ") and "python -m extract_features" not in installed
    checkout = subprocess.run(
        [sys.executable, "-m", "extract_features", "--help"], capture_output=True, text=True, cwd=root
    )
    assert checkout.stdout.startswith("usage: python -m extract_features ")


def test_the_name_table_is_the_entry_points_table():
    from soccer_highlights.commands import entry

    assert cli.COMMAND_MODULES == entry.COMMANDS and set(cli.CHECKOUT_NAMES) == set(entry.COMMANDS)


# ---- one declaration of the extraction flags -----------------------------------------------------------------


def _extraction_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest in cli.EXTRACTION_FLAGS}


def test_inference_and_extraction_declare_the_extraction_flags_alike():
    ours = _extraction_actions(PARSERS["inference"]())
    theirs = _extraction_actions(extract.extract_parser())
    assert set(ours) == {"weights", "pca", "feature_runtime", "feature_dtype", "int8_model"} <= set(theirs)
    for dest, action in ours.items():
        other = theirs[dest]
        same = ("option_strings", "help", "choices", "default", "type")
        assert [getattr(action, k) for k in same] == [getattr(other, k) for k in same], dest


def test_the_extraction_vocabulary_is_the_extractors():
    from soccer_highlights.extract_features import decode, runtime

    assert tuple(decode.RECIPES) == cli.RECIPES and decode.DEFAULT_RECIPE == cli.DEFAULT_RECIPE
    for recipe in decode.RECIPES.values():
        assert tuple(recipe.transforms) == cli.TRANSFORMS == decode.TRANSFORMS
    assert runtime.RUNTIMES == cli.FEATURE_RUNTIMES and runtime.COMPUTE_DTYPES == cli.FEATURE_DTYPES


def test_the_extraction_commands_earlier_spellings_still_work_hidden():
    p = extract.extract_parser()
    args = p.parse_args(["--video", "v.mp4", "--compute_dtype", "int8", "--runtime=openvino", "--int8_model", "q"])
    assert (args.feature_dtype, args.feature_runtime, args.int8_model) == ("int8", "openvino", "q")
    text = p.format_help()
    assert "--compute_dtype" not in text and "--runtime" not in text.replace("--feature_runtime", "")
    args = check_precision.check_precision_parser().parse_args(["--video", "v.mp4", "--compute_dtype", "int8"])
    assert args.feature_dtype == "int8"  # satisfies the required --feature_dtype
    args = extract.fit_pca_parser().parse_args(["x.npy", "--out", "p.npz", "--runtime", "tensorflow"])
    assert args.feature_runtime == "tensorflow"


def test_inference_keeps_compute_dtype_for_the_model_and_feature_dtype_for_the_networks():
    args = inference.parse_args(
        ["--model", "m", "--out", "o", "--compute_dtype", "bfloat16", "--feature_dtype", "int8"]
    )
    assert (args.compute_dtype, args.feature_dtype) == ("bfloat16", "int8")
    with pytest.raises(SystemExit):
        inference.parse_args(["--model", "m", "--out", "o", "--runtime", "openvino"])  # no alias here
