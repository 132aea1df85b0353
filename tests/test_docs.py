"""The documentation against the code: README.md stays a landing page; every project command shown in a shell block
of README.md and docs/*.md (and every one written in a code span of their prose) parses with that command's own
argument parser, in the current spellings; every relative link points to a file (and heading) that exists.

A command is parsed, not run: its module's `main(argv)` is called with `argparse.ArgumentParser.parse_args`
patched to stop right after parsing, so the check follows the command's real dispatch (subcommands of
`python -m extract_features`, earlier spellings) without loading TensorFlow or touching a file. That also covers
the entries with no public parser function (`convert_pca`, the synthetic generators, the report index, the model
export). `run_inference.sh` is checked against the options of its `case` statement; what it passes on after `--`
goes to inference.py's parser."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from soccer_highlights.commands.entry import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}

# The card's thin entries: a script (or `python -m` package) -> the soccer-* command it runs (read from the file).
ENTRY_FILES = {
    "inference.py": ROOT / "inference.py",
    "ClassificationMinuteBased.py": ROOT / "ClassificationMinuteBased.py",
    "ClassificationSecondBased.py": ROOT / "ClassificationSecondBased.py",
    "evaluate.py": ROOT / "evaluate.py",
}
ENTRY_PACKAGES = {"extract_features": ROOT / "extract_features" / "__main__.py"}
WRAPPER = "run_inference.sh"
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"python(\d+(\.\d+)?)?$")
# argparse errors a code span in prose may show (it names a flag, not a whole command line); a shell block may not
PROSE_TOLERATED = re.compile(
    r"the following arguments are required|one of the arguments .* is required|expected (one|at least one) "
    r"argument|invalid (int|float) value"
)


# ---- reading the pages --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snippet:
    """Text from a page: a shell block's command line, or a code span of the prose."""

    page: Path
    line: int
    text: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _blocks(page: Path) -> Iterator[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of each fenced code block."""
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i + 1
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        yield lang, start + 1, body


def _prose(page: Path) -> str:
    """The page with its fenced blocks blanked (line numbers kept)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for _, start, body in _blocks(page):
        for k in range(start - 1, start - 1 + len(body)):
            lines[k] = ""
    return "\n".join(lines)


def shell_lines(page: Path) -> Iterator[Snippet]:
    """Logical command lines of the page's shell blocks: continuations joined; a console block's `$ ` lines only."""
    for lang, start, body in _blocks(page):
        if lang not in SHELL_LANGS:
            continue
        pending, first = "", 0
        for k, raw in enumerate(body):
            line = raw
            if lang == "console" and not pending:
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if not pending:
                first = start + k
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield Snippet(page, first, pending + line)
            pending = ""
        if pending:
            yield Snippet(page, first, pending)


def code_spans(page: Path) -> Iterator[Snippet]:
    """Inline code spans of the prose (within a paragraph)."""
    text = _prose(page)
    for m in re.finditer(r"(?<!`)`([^`\n]+(?:\n(?!\s*\n)[^`\n]+)*)`(?!`)", text):
        yield Snippet(page, text.count("\n", 0, m.start()) + 1, " ".join(m.group(1).split()))


# ---- shell lines -> simple commands -------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    """Shell words of one line: comments dropped, `<placeholders>` made words, operators as their own tokens."""
    lex = shlex.shlex(PLACEHOLDER.sub("PLACEHOLDER", text), posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    return list(lex)


def simple_commands(words: list[str], variables: dict[str, str]) -> Iterator[list[str]]:
    """The simple commands of a line (split at ;, &&, ||, |, parentheses; redirections dropped), with the
    block's earlier `NAME=value` assignments expanded where a word is exactly `$NAME`."""
    current: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word and set(word) <= set("();<>|&"):
            if "<" in word or ">" in word:
                skip = True  # a redirection and its file (or descriptor)
                continue
            if current:
                yield current
            current = []
            continue
        m = re.fullmatch(r"\$(\w+)|\$\{(\w+)\}", word)
        name = m and (m.group(1) or m.group(2))
        if name and name in variables:
            current += shlex.split(variables[name])
        else:
            current.append(word)
    if current:
        yield current


@dataclass(frozen=True)
class Command:
    """A project command found in a snippet: what runs it and its arguments."""

    snippet: Snippet
    kind: str  # "module" (a main(argv) to parse with), "wrapper" (run_inference.sh), "script" (exists only),
    # "unknown" (a soccer-* name that pyproject.toml does not install)
    target: str  # module name, or a script path
    argv: tuple[str, ...]
    env: tuple[str, ...] = ()

    def __str__(self) -> str:
        text = self.snippet.text.strip()
        return f"{self.snippet.where()}: {text[:90]}{'...' if len(text) > 90 else ''}"


def _entry_module(path: Path) -> str:
    m = re.search(r'run_command\("([\w-]+)"\)', path.read_text(encoding="utf-8"))
    assert m, f"{path}: no run_command(...) found; teach tests/test_docs.py how this entry runs"
    return COMMANDS[m.group(1)]


def classify(words: list[str], snippet: Snippet) -> Command | None:
    """The project command that `words` (one simple command) runs, if any."""
    env = []
    while words and ASSIGNMENT.match(words[0]):
        env.append(words[0].split("=", 1)[0])
        words = words[1:]
    if not words:
        return None
    program, rest = words[0], words[1:]
    name = Path(program).name
    if name in COMMANDS:
        return Command(snippet, "module", COMMANDS[name], tuple(rest), tuple(env))
    if re.fullmatch(r"soccer-[a-z-]+", program):
        return Command(snippet, "unknown", program, tuple(rest), tuple(env))
    if name in ("bash", "sh") and rest and rest[0].endswith(".sh"):
        program, rest, name = rest[0], rest[1:], Path(rest[0]).name
    if name == WRAPPER:
        return Command(snippet, "wrapper", program, tuple(rest), tuple(env))
    if name.endswith(".sh") and program == words[0] and "/" not in program:
        return None  # a bare name: someone else's tool
    if name.endswith(".sh"):
        return Command(snippet, "script", program, tuple(rest), tuple(env))
    if name in ENTRY_FILES:
        return Command(snippet, "module", _entry_module(ENTRY_FILES[name]), tuple(rest), tuple(env))
    if not PYTHON.match(name) or not rest:
        return None
    if rest[0] == "-m" and len(rest) > 1:
        module, argv = rest[1], tuple(rest[2:])
        if module in ENTRY_PACKAGES:
            return Command(snippet, "module", _entry_module(ENTRY_PACKAGES[module]), argv, tuple(env))
        if module.split(".")[0] == "soccer_highlights":
            return Command(snippet, "module", module, argv, tuple(env))
        return None
    script = Path(rest[0]).name
    if script in ENTRY_FILES:
        return Command(snippet, "module", _entry_module(ENTRY_FILES[script]), tuple(rest[1:]), tuple(env))
    if rest[0].endswith(".py"):
        return Command(snippet, "script", rest[0], tuple(rest[1:]), tuple(env))
    return None


def commands_in(snippet: Snippet, variables: dict[str, str] | None = None) -> Iterator[Command]:
    """Project commands of one shell line, also inside quoted words that hold a command line (`--wrap "..."`)."""
    variables = {} if variables is None else variables
    for words in simple_commands(tokens(snippet.text), variables):
        command = classify(words, snippet)
        if command is not None:
            yield command
            continue
        if len(words) == 1 and ASSIGNMENT.match(words[0]):
            name, value = words[0].split("=", 1)
            variables[name] = value
        for word in words[1:]:
            if " " in word and re.search(r"python|soccer-|\.sh\b", word):  # a command line for another tool
                yield from commands_in(Snippet(snippet.page, snippet.line, word), variables)


def block_commands() -> list[Command]:
    found: list[Command] = []
    for page in PAGES:
        variables: dict[str, str] = {}  # assignments carry over within a page, as a reader would type them
        for snippet in shell_lines(page):
            found += commands_in(snippet, variables)
    return found


def prose_commands() -> list[Command]:
    """Commands written in code spans, those that say more than a command's name (with flags, or a script)."""
    found: dict[tuple, Command] = {}
    for page in PAGES:
        for snippet in code_spans(page):
            words = tokens(snippet.text)
            if not words or classify(list(words), snippet) is None:
                continue
            for command in commands_in(snippet):
                if command.argv or command.kind != "module":
                    found.setdefault((snippet.where(), command.target, command.argv), command)
    return list(found.values())


# ---- parsing a command with its own parser ------------------------------------------------------------------------


class _Parsed(Exception):
    pass


def parse(module_name: str, argv: list[str]) -> tuple[object, str, argparse.ArgumentParser | None]:
    """(exit code, stderr, parser) of `module.main(argv)` stopped as soon as its argument parser accepted argv:
    0 and the parser when parsed (or --help, with no parser), argparse's code (2) when refused. The stop is in
    `parse_known_args`, which every ArgumentParser's `parse_args` (the project's `Parser` too) ends in."""
    module = importlib.import_module(module_name)
    main = getattr(module, "main", None)
    assert callable(main), f"{module_name} has no main(argv); teach tests/test_docs.py how it parses"
    original = argparse.ArgumentParser.parse_known_args

    def parse_known_only(self, args=None, namespace=None):
        parsed, extras = original(self, args, namespace)
        if extras:
            return parsed, extras  # the caller refuses them (parse_args: "unrecognized arguments", exit 2)
        raise _Parsed(self)

    err, out = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(argparse.ArgumentParser, "parse_known_args", parse_known_only),
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(out),
    ):
        try:
            main(list(argv))
        except _Parsed as parsed:
            return 0, err.getvalue(), parsed.args[0]
        except SystemExit as e:
            return e.code, err.getvalue(), None
    raise AssertionError(f"{module_name}.main returned without parsing its arguments")


def wrapper_options() -> tuple[dict[str, bool], set[str]]:
    """run_inference.sh: {option: takes a value} from its `case` statement, and the environment variables it reads."""
    text = (ROOT / WRAPPER).read_text(encoding="utf-8")
    loop = text[text.index("while (($#)); do") : text.index("\ndone", text.index("while (($#)); do"))]
    options: dict[str, bool] = {}
    for m in re.finditer(r"^\s+([-\w|]+)\)\s*(.*?);;", loop, re.M):
        for pattern in m.group(1).split("|"):
            if pattern.startswith("-") and pattern not in ("--", "-*"):
                options[pattern] = 'value "$@"' in m.group(2)
    assert "--model" in options and "--help" in options, f"{WRAPPER}: its option loop was not understood"
    return options, set(re.findall(r'^(\w+)="\$\{\1:-', text, re.M))


def wrapper_errors(command: Command) -> list[str]:
    options, env_names = wrapper_options()
    errors = [f"{WRAPPER} reads no environment variable {n}" for n in command.env if n not in env_names]
    argv = list(command.argv)
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            code, err, _ = parse(COMMANDS["soccer-highlights"], ["--model", "M.keras", "--out", "OUT", *argv[i + 1 :]])
            if code not in (0, None):
                errors.append(f"after --, inference.py refuses: {err.strip().splitlines()[-1]}")
            break
        if word.startswith("-"):
            if word not in options:
                errors.append(f"{WRAPPER} has no option {word}")
            elif options[word]:
                if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                    errors.append(f"{word} needs a value")
                i += 1
        i += 1
    return errors


def command_errors(command: Command, *, prose: bool = False) -> list[str]:
    if command.kind == "unknown":
        return [f"{command.target}: no such command (pyproject.toml installs {', '.join(sorted(COMMANDS))})"]
    if command.kind == "wrapper":
        return wrapper_errors(command)
    if command.kind == "script":
        path = command.target
        if path.startswith(("/", "~", "$")):
            return []
        return [] if (ROOT / path).is_file() else [f"{path}: no such script in the repository"]
    argv = list(command.argv)
    code, err, parser = parse(command.target, argv)
    errors = []
    if code not in (0, None):
        last = err.strip().splitlines()[-1] if err.strip() else f"exit {code}"
        if not (prose and PROSE_TOLERATED.search(last)):
            errors.append(f"{command.target} refuses it: {last}")
    errors += [f"an earlier spelling: {line}" for line in err.splitlines() if "deprecated" in line]
    aliases = getattr(parser, "aliases", {})  # the project's Parser: earlier spellings it still takes, silently
    flags = argv[: argv.index("--")] if "--" in argv else argv
    errors += [
        f"an earlier spelling: {f} (now {aliases[f]})" for f in (t.partition("=")[0] for t in flags) if f in aliases
    ]
    return errors


BLOCK_COMMANDS = block_commands()
PROSE_COMMANDS = prose_commands()


# ---- the tests ----------------------------------------------------------------------------------------------------


def test_readme_is_a_landing_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert 150 <= len(lines) <= 250, f"README.md has {len(lines)} lines; keep it 150-250 and move the rest to docs/"
    text = "\n".join(lines)
    for marker in ("demo-output", "python-example"):
        block = re.search(rf"<!-- {marker} -->\n```\w*\n.*?\n```\n<!-- /{marker} -->", text, re.S)
        assert block, f"README.md: the <!-- {marker} --> ... <!-- /{marker} --> block around one fenced block"
    assert "bash run_inference.sh " in text and "bash scripts/run_tests.sh " in text


def test_the_pages_show_project_commands():
    """The collector below finds what it should: guards the other tests against checking nothing."""
    kinds = {(c.kind, c.target) for c in BLOCK_COMMANDS}
    for module in ("soccer-highlights", "soccer-train", "soccer-spot", "soccer-evaluate", "soccer-extract"):
        assert ("module", COMMANDS[module]) in kinds, f"no shell block shows {module}'s command"
    assert any(c.kind == "wrapper" for c in BLOCK_COMMANDS)
    assert len(BLOCK_COMMANDS) >= 30


@pytest.mark.parametrize("command", BLOCK_COMMANDS, ids=str)
def test_shell_block_command_parses(command: Command):
    assert not command_errors(command), f"{command}\n" + "\n".join(command_errors(command))


@pytest.mark.parametrize("command", PROSE_COMMANDS, ids=str)
def test_command_in_prose_uses_existing_flags(command: Command):
    errors = command_errors(command, prose=True)
    assert not errors, f"{command}\n" + "\n".join(errors)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(page).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = _slug(m.group(1))
            out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return out


def links() -> list[tuple[Path, int, str]]:
    found = []
    for page in PAGES:
        text = _prose(page)
        for m in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
            found.append((page, text.count("\n", 0, m.start()) + 1, m.group(1)))
    return found


@pytest.mark.parametrize(
    ("page", "line", "target"),
    [link for link in links() if not re.match(r"^[a-z][a-z0-9+.-]*:", link[2])],
    ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else str(v),
)
def test_relative_link_points_to_a_file(page: Path, line: int, target: str):
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.relative_to(ROOT)}:{line}: {target} -> {dest} does not exist"
    if anchor and dest.suffix == ".md":
        assert anchor in anchors(dest), f"{page.relative_to(ROOT)}:{line}: {target}: no heading with that anchor"
