"""The flags several tools share come from common/cli.py: same names, same checks, distinct batch names."""

from __future__ import annotations

import argparse

import pytest

import ClassificationSecondBased
import inference
import synthetic
from common.cli import add_progress_flags, add_spotting_flags, check_spotting_flags
from common.errors import UserError
from extract_features.__main__ import extract_parser, fit_pca_parser


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
