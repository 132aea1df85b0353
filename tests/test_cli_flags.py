"""The flags several tools share come from common/cli.py: same names, same checks, distinct batch names."""

from __future__ import annotations

import argparse

import pytest

from soccer_highlights import synthetic
from soccer_highlights.commands import inference
from soccer_highlights.commands import spot as ClassificationSecondBased
from soccer_highlights.commands.extract import extract_parser, fit_pca_parser
from soccer_highlights.common.cli import add_progress_flags, add_spotting_flags, check_spotting_flags
from soccer_highlights.common.errors import UserError


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
