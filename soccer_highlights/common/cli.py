"""Command-line flags that several tools share, defined and checked in one place.

- `add_progress_flags`: `--quiet` (no progress bars) and `--verbose` (TensorFlow's start-up lines, see
  common/quiet.py), for every CLI.
- `add_spotting_flags` / `check_spotting_flags`: how a window model is run over a half and how its
  per-token probabilities become spots (inference.py and ClassificationSecondBased.py).

Flag vocabulary of the project's own commands (V&D's two commands keep V&D's spellings): snake_case; a flag
that takes a file or folder says so in its help, a flag that takes a name ends in `_name`; what a command writes
goes to `--out`. `parse_args` keeps the previous spellings working for one release, with one deprecation line.

Three tools batch three different things, so each batch flag has its own name: training's `--batch_size`
(halves of games, V&D's flag) and `--batch_windows`, spotting's `--windows_per_call` (windows per model
call) and extraction's `--frames_per_call` (frames per ResNet call).

- `Parser`: the ArgumentParser of every command. Every `type=float` flag of a Parser takes finite numbers only
  (`finite_float`: `nan` or `inf` is one error line naming the flag); ranges are checked by each command.
- `add_keep_old_flag`: `--keep_old`, for every command whose outputs could meet a file of the user's with an
  output's name (kept as NAME.old-N.EXT instead of refusing the run, `common.atomic.check_replaceable`).
- `Parser`, further: Its usage and examples name the command as it was started
  (`command_name`: `soccer-extract` installed, `python -m extract_features` in a checkout); a mistyped flag is
  one line naming the closest flag (`error: unknown flag --modle (did you mean --model?)`, exit 2), as every
  other argument error; each default is shown once (appended unless the help already speaks of it).
- `add_extraction_flags`: the feature networks' flags, declared here once for every command that extracts
  (soccer-extract and its subcommands, soccer-highlights). They are spelled `--feature_runtime` and
  `--feature_dtype` everywhere, because in the commands that score, `--compute_dtype` is the spotting model's
  precision (`add_spotting_flags`); the extraction commands' earlier `--runtime` and `--compute_dtype` stay
  accepted there as hidden aliases (`EXTRACTION_ALIASES`).
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar, overload

from soccer_highlights.common.errors import UserError

NMS_RULES = ("vd", "symmetric")
# The feature networks' vocabulary (extract_features checks its values against these).
FEATURE_WEIGHTS = ("imagenet", "random")
FEATURE_RUNTIMES = ("openvino", "tensorflow")
FEATURE_DTYPES = ("float32", "bfloat16", "int8")
TRANSFORMS = ("crop", "resize", "resize256crop224")
RECIPES = ("soccernet", "rgb")
DEFAULT_RECIPE = "soccernet"
SYSTEM_HELP = "accepted for compatibility with V&D's command; has no effect (paths are portable)"  # V&D's --system


def vd_none(value: str) -> str | None:
    """V&D spells "no value" as the string "None" (its --config default): that string, or "", is None."""
    return None if value in ("None", "") else value


def warn_deprecated(old: str, new: str) -> None:
    """The one deprecation line of an earlier spelling, on stderr."""
    print(f"warning: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


def renamed_flags(argv: Sequence[str] | None, renamed: Mapping[str, str]) -> list[str]:
    """`argv` (default: the command line) with each old spelling of `renamed` replaced by its new one, and one
    `warning:` line on stderr per old spelling used. Tokens after `--` are left alone."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    for i, token in enumerate(argv):
        if token == "--":
            return out + argv[i:]
        flag, eq, value = token.partition("=")
        if flag in renamed:
            warn_deprecated(flag, renamed[flag])
            token = renamed[flag] + eq + value
        out.append(token)
    return out


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, renamed: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """`parser.parse_args` that also accepts the old spellings in `renamed` (old -> new), see `renamed_flags`; a flag
    the parser does not know is one line naming the closest one, exit code 2, whatever the parser's class (a
    `Parser` says every argument error in one line)."""
    argv = renamed_flags(argv, renamed or {})
    if not isinstance(parser, Parser):
        flag = unknown_flag(parser, argv)
        if flag:
            parser.exit(2, f"error: {unknown_flag_message(parser, flag)}\n")
    return parser.parse_args(argv)


def add_progress_flags(parser: argparse._ActionsContainer, *, quiet: bool = True, verbose: bool = True) -> None:
    """`--quiet` for tools with progress bars, `--verbose` for tools that load TensorFlow."""
    if quiet:
        parser.add_argument("--quiet", action="store_true", help="no progress bars")
    if verbose:
        parser.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log lines")


def add_spotting_flags(parser: argparse.ArgumentParser, *, title: str = "scoring and spotting") -> None:
    """The scoring flags (stride, windows per call, compute dtype) and the spotting NMS flags, as one group."""
    g = parser.add_argument_group(title)
    g.add_argument("--stride", type=int, default=2, help="tokens between window centres (2 = one per second)")
    g.add_argument("--windows_per_call", type=int, default=256, help="windows per model call (memory vs speed)")
    g.add_argument(
        "--compute_dtype",
        choices=("float32", "bfloat16"),
        help="precision of the spotting model (default: the model's own; the feature networks' is --feature_dtype)",
    )
    g.add_argument("--nms_window", type=float, default=60.0, help="spotting NMS window in seconds, V&D's")
    g.add_argument(
        "--nms_threshold",
        type=float,
        default=0.0,
        help="NMS threshold on the probability (V&D swept 0.05-0.95 inside its own metric)",
    )
    g.add_argument(
        "--nms_rule",
        choices=NMS_RULES,
        default="vd",
        help="vd: > the previous 30 s, >= the next 29 s, no spot in a half's first or last 30 s; "
        "symmetric: the maximum within +-30 s, up to the edges",
    )


def finite_float(text: str) -> float:
    """A float flag's value: a finite number (`nan`, `inf` and `-inf` are refused: every float flag is a length,
    a rate or a threshold, which none of them is)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def add_keep_old_flag(parser: argparse._ActionsContainer) -> None:
    """`--keep_old`: a file with an output's name that this project did not write (or that changed since) is
    renamed to NAME.old-N.EXT when the outputs are put in place, instead of refusing the run."""
    parser.add_argument(
        "--keep_old",
        action="store_true",
        help="keep files with an output's name that this project did not write as NAME.old-N.EXT (without it, "
        "such a file refuses the run before any work)",
    )


def check_positive(value: int, flag: str) -> None:
    """UserError unless `value` >= 1."""
    if value < 1:
        raise UserError(f"{flag} must be >= 1, got {value}")


def check_nms(window_sec: float, threshold: float) -> None:
    """UserError for an NMS window that is not a finite number >= 0 or a threshold outside [0, 1]."""
    if not (math.isfinite(window_sec) and window_sec >= 0):
        raise UserError(f"--nms_window must be a number of seconds >= 0, got {window_sec}")
    if not 0 <= threshold <= 1:
        raise UserError(f"--nms_threshold must be in [0, 1], got {threshold}")


def check_spotting_flags(args: argparse.Namespace) -> None:
    """The checks of `add_spotting_flags`' values: one `error:` line for the first bad one."""
    check_positive(args.stride, "--stride")
    check_positive(args.windows_per_call, "--windows_per_call")
    check_nms(args.nms_window, args.nms_threshold)


# ---- how a command is named --------------------------------------------------------------------------------

# Each command's module (commands.entry runs them from this table) and its spelling in a checkout, where the
# card's thin entries run it.
COMMAND_MODULES = {
    "soccer-highlights": "soccer_highlights.commands.inference",
    "soccer-spot": "soccer_highlights.commands.spot",
    "soccer-train": "soccer_highlights.commands.train",
    "soccer-evaluate": "soccer_highlights.commands.evaluate",
    "soccer-extract": "soccer_highlights.commands.extract",
    "soccer-synthetic": "soccer_highlights.synthetic.games",
    "soccer-synthetic-video": "soccer_highlights.synthetic.video",
    "soccer-trainset": "soccer_highlights.commands.trainset",
}
CHECKOUT_NAMES = {
    "soccer-highlights": "python inference.py",
    "soccer-spot": "python ClassificationSecondBased.py",
    "soccer-train": "python ClassificationMinuteBased.py",
    "soccer-evaluate": "python evaluate.py",
    "soccer-extract": "python -m extract_features",
    "soccer-synthetic": "python -m soccer_highlights.synthetic.games",
    "soccer-synthetic-video": "python -m soccer_highlights.synthetic.video",
    "soccer-trainset": "python -m soccer_highlights.commands.trainset",
}
_PACKAGE = Path(__file__).resolve().parent.parent


def invocation(argv0: str | None = None) -> str:
    """How this process was started, from `argv0` (default: sys.argv[0]): "installed" (a `soccer-*` console
    script), "module" (`python -m soccer_highlights.<...>`), else "checkout" (the card's entries; also anything
    else, e.g. a test runner)."""
    if argv0 is None:
        argv0 = sys.argv[0] if sys.argv else ""
    name = Path(argv0).name
    for suffix in ("-script.pyw", "-script.py", ".exe"):  # Windows launchers
        name = name.removesuffix(suffix)
    if name in COMMAND_MODULES:
        return "installed"
    if argv0.endswith(".py") and Path(argv0).resolve().is_relative_to(_PACKAGE):
        return "module"
    return "checkout"


def command_name(command: str, argv0: str | None = None) -> str:
    """What a user types to run `command` (a key of COMMAND_MODULES) the way this process was run (`invocation`):
    `soccer-extract`, `python -m soccer_highlights.commands.extract` or `python -m extract_features`."""
    how = invocation(argv0)
    if how == "installed":
        return command
    if how == "module":
        return f"python -m {COMMAND_MODULES[command]}"
    return CHECKOUT_NAMES[command]


def _spelling(checkout: str) -> str:
    """A regex of the checkout spelling of a command: `python -m mod`, or `[python ]file.py`."""
    if checkout.startswith("python -m "):
        return re.escape(checkout) + r"(?![\w.])"
    return r"(?<![\w./-])(?:python )?" + re.escape(checkout.removeprefix("python ")) + r"(?![\w])"


_SPELLINGS = {command: re.compile(_spelling(checkout)) for command, checkout in CHECKOUT_NAMES.items()}


def spelled(text: str, argv0: str | None = None) -> str:
    """`text` (help, examples, a hint in a message) with every command named the way this process was run: in a
    checkout unchanged; installed, `python inference.py` and `inference.py` become `soccer-highlights`, ..."""
    if invocation(argv0) == "checkout":
        return text
    for command, pattern in _SPELLINGS.items():
        text = pattern.sub(command_name(command, argv0).replace("\\", r"\\"), text)
    return text


# ---- the parser of every command -----------------------------------------------------------------------------

N = TypeVar("N")
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse's: a value, not a flag


def _default_text(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(_default_text, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Each default shown once: appended as `(default: X)` unless the help already speaks of its default (or
    there is none to show); commands named as this process was run (`spelled`)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = spelled(action.help or "")
        default = action.default
        shown = (
            default is not None
            and default is not False
            and default not in ("", [], argparse.SUPPRESS)
            and action.nargs != 0  # flags that take no value (store_true, help)
            and (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
            and "default" not in text.lower()
        )
        if shown:
            text += " (default: " + _default_text(default).replace("%", "%%") + ")"
        return text

    def _format_text(self, text: str) -> str:
        return super()._format_text(spelled(text))


class RawHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """`HelpFormatter` that keeps the description's and examples' own lines."""


class Parser(argparse.ArgumentParser):
    """The ArgumentParser of every command.

    - `command` (a key of COMMAND_MODULES) and `subcommand`: the usage says `command_name(command) subcommand`.
    - A flag it does not know is one line, `error: unknown flag --modle (did you mean --model?)`, and every other
      argument error one `error:` line too, exit code 2 (as `run_cli` reports a UserError).
    - `add_alias(old, new)`: `old` still works as `new`, shown nowhere.
    """

    def __init__(self, *, command: str | None = None, subcommand: str = "", **kwargs: Any):
        if command is not None and "prog" not in kwargs:
            kwargs["prog"] = f"{command_name(command)} {subcommand}".strip()
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)
        self.register("type", float, finite_float)  # every type=float flag, in every group of the parser
        self.aliases: dict[str, str] = {}

    def add_alias(self, old: str, new: str) -> None:
        """Accept `old` (also `old=value`) as `new`, a flag of this parser; `old` is in no help."""
        if new not in self._option_string_actions:
            raise ValueError(f"{old}: an alias of {new}, which this parser does not have")
        self.aliases[old] = new

    @overload
    def parse_args(self, args: Iterable[str] | None = None, namespace: None = None) -> argparse.Namespace: ...
    @overload
    def parse_args(self, args: Iterable[str] | None, namespace: N) -> N: ...
    @overload
    def parse_args(self, *, namespace: N) -> N: ...
    def parse_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> Any:
        raw = list(sys.argv[1:] if args is None else args)
        cut = raw.index("--") if "--" in raw else len(raw)  # what follows `--` is no flag
        argv = [*map(self._unaliased, raw[:cut]), *raw[cut:]]
        unknown = unknown_flag(self, argv)
        if unknown:
            self.error(unknown_flag_message(self, unknown, self.aliases))
        parsed, extras = self.parse_known_args(argv, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _unaliased(self, token: str) -> str:
        flag, eq, value = token.partition("=")
        return self.aliases[flag] + eq + value if flag in self.aliases else token

    def error(self, message: str) -> NoReturn:
        """One `error:` line on stderr and exit code 2 (no usage: `--help` shows it)."""
        self.exit(2, f"error: {' '.join(message.split())}\n")


def unknown_flag(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The first token of `argv` that argparse would take for a flag `parser` does not have, or None."""
    known = parser._option_string_actions
    prefix = parser.prefix_chars
    for token in argv:
        if token == "--":
            return None
        if token[:1] not in prefix or token in prefix:
            continue  # a value, or "-" (stdin)
        if " " in token or _NEGATIVE_NUMBER.match(token):
            continue  # argparse takes these for values too
        flag = token.partition("=")[0]
        if flag in known or (len(flag) > 2 and flag[1] not in prefix and flag[:2] in known):
            continue  # a flag, or a short one with its value attached (-xVALUE)
        if parser.allow_abbrev and flag[1:2] in prefix and any(o.startswith(flag) for o in known):
            continue  # an abbreviation (argparse refuses an ambiguous one itself)
        return flag
    return None


def unknown_flag_message(parser: argparse.ArgumentParser, flag: str, aliases: Mapping[str, str] | None = None) -> str:
    """`unknown flag X (did you mean Y?)`: Y the closest flag the help shows, or the flag an alias (old -> new)
    close to X stands for; without one close enough, where the flags are listed."""
    shown = {o: o for a in parser._actions if a.help is not argparse.SUPPRESS for o in a.option_strings}
    names = {**shown, **{old: new for old, new in (aliases or {}).items() if new in shown}}
    close = difflib.get_close_matches(flag, list(names), n=1, cutoff=0.6)
    if close:
        return f"unknown flag {flag} (did you mean {names[close[0]]}?)"
    return f"unknown flag {flag} (`{parser.prog} --help` lists the flags)"


# ---- the feature networks' flags -----------------------------------------------------------------------------

# Earlier spellings of the extraction commands (soccer-extract and its subcommands): still accepted there, hidden.
EXTRACTION_ALIASES = {"--runtime": "--feature_runtime", "--compute_dtype": "--feature_dtype"}
_CALIBRATE = f"`{CHECKOUT_NAMES['soccer-extract']} calibrate`"
EXTRACTION_FLAGS: dict[str, dict[str, Any]] = {
    "weights": {
        "default": "imagenet",
        "choices": FEATURE_WEIGHTS,
        "help": "ResNet-152 weights: imagenet (downloaded once into $KERAS_HOME/models) or random (smoke tests "
        "only; recorded)",
    },
    "resnet_weights": {"help": "local ResNet-152 no-top weights file (.h5) instead of the download"},
    "pca": {
        "help": "PCA .npz (mean, components) of the 2048-d ResNet features, from "
        f"`{CHECKOUT_NAMES['soccer-extract']} fit_pca` or convert_pca; required unless --weights random",
    },
    "vggish": {
        "default": "auto",
        "help": "VGGish weights: vggish_model.ckpt, a TF-Hub handle / SavedModel folder, a Keras .h5, random, or "
        "auto ($VGGISH_CHECKPOINT, else $KERAS_HOME/models/vggish_model.ckpt, downloaded once)",
    },
    "transform": {
        "default": "crop",
        "choices": TRANSFORMS,
        "help": "how a frame becomes 224 x 224: crop (short side to 224, centre crop), resize (stretched), "
        "resize256crop224 (short side to 256, centre crop)",
    },
    "recipe": {
        "default": DEFAULT_RECIPE,
        "choices": RECIPES,
        "help": "soccernet: what SoccerNet's ResNET_TF2 features were made from (token i = frame at the "
        "end of the i-th half second, BGR input), for models trained on SoccerNet's features; rgb: this tool's "
        "earlier recipe (frame at i/2 s, RGB input), for models trained on features it made",
    },
    "feature_runtime": {
        "choices": FEATURE_RUNTIMES,
        "help": "runtime of the feature networks (default: openvino on a CPU, tensorflow on a GPU); openvino "
        "converts each network once (cached) and gives TensorFlow's float32 features",
    },
    "feature_dtype": {
        "default": "float32",
        "choices": FEATURE_DTYPES,
        "help": f"precision of the feature networks; int8 runs on openvino with --int8_model (from {_CALIBRATE})",
    },
    "int8_model": {"help": f"folder written by {_CALIBRATE}, for --feature_dtype int8"},
    "cache_dir": {"help": "converted OpenVINO models (default: $KERAS_HOME/models/openvino)"},
    "frames_per_call": {
        "type": int,
        "help": "frames per ResNet call; default: on a CPU the call plan measured once on this machine (OpenVINO, "
        "at most 8 frames), else 4; on a GPU 32",
    },
    "seed": {"type": int, "default": 0, "help": "seed of random weights / random PCA"},
}


def add_extraction_flags(
    parser: Parser,
    flags: Sequence[str] = tuple(EXTRACTION_FLAGS),
    *,
    title: str = "feature extraction",
    description: str | None = None,
    aliases: bool = False,
    **changes: dict[str, Any],
) -> argparse._ArgumentGroup:
    """The feature networks' flags named in `flags` (keys of EXTRACTION_FLAGS, in that order), as one group;
    `changes` updates a flag's declaration for this command (e.g. `feature_dtype={"required": True}`), `aliases`
    accepts EXTRACTION_ALIASES (the extraction commands' earlier spellings). Returns the group."""
    unknown = set(flags) - set(EXTRACTION_FLAGS) or set(changes) - set(flags)
    if unknown:
        raise ValueError(f"not extraction flags of this command: {sorted(unknown)}")
    group = parser.add_argument_group(title, description)
    for name in flags:
        group.add_argument(f"--{name}", **{**EXTRACTION_FLAGS[name], **changes.get(name, {})})
    if aliases:
        for old, new in EXTRACTION_ALIASES.items():
            if new[2:] in flags:
                parser.add_alias(old, new)
    return group
