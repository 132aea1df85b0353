"""scripts/check_house.py: the layers of docs/DESIGN.md, import cycles, private names, function-local imports,
the top level (errors), and sizes (warnings)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_house", ROOT / "scripts" / "check_house.py")
assert _spec and _spec.loader
check_house = importlib.util.module_from_spec(_spec)
sys.modules["check_house"] = check_house  # its dataclasses look their module up
_spec.loader.exec_module(check_house)

LAYERS = "# Design\n\n```layers\ncommands\ncore\nspotting training\ncommon\n```\n"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    files = {"docs/DESIGN.md": LAYERS, "soccer_highlights/__init__.py": "", **files}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    for pkg in ("commands", "core", "spotting", "training", "common"):
        init = tmp_path / "soccer_highlights" / pkg / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        init.touch()
    return tmp_path


def _errors(root: Path) -> list[str]:
    return check_house.check(root)[0]


def test_the_project_itself_is_clean():
    errors, _ = check_house.check(ROOT)
    assert errors == []


def test_downward_imports_pass(tmp_path):
    root = _tree(
        tmp_path,
        {
            "soccer_highlights/core/run.py": "from soccer_highlights.spotting import scores\n",
            "soccer_highlights/spotting/scores.py": "from soccer_highlights.common import errors\n",
            "soccer_highlights/common/errors.py": "",
        },
    )
    assert _errors(root) == []


def test_an_upward_import_inside_a_function_is_reported(tmp_path):
    root = _tree(
        tmp_path,
        {
            "soccer_highlights/spotting/scores.py": "def f():\n    from soccer_highlights.core import run  # cycle\n",
            "soccer_highlights/core/run.py": "",
        },
    )
    assert _errors(root) == [
        "soccer_highlights/spotting/scores.py:2: spotting imports soccer_highlights.core.run "
        "(layer core is not below spotting)"
    ]


def test_packages_of_one_layer_do_not_import_each_other(tmp_path):
    root = _tree(
        tmp_path,
        {"soccer_highlights/training/loop.py": "from soccer_highlights.spotting import scores\n"}
        | {"soccer_highlights/spotting/scores.py": ""},
    )
    assert _errors(root) == [
        "soccer_highlights/training/loop.py:1: training imports soccer_highlights.spotting.scores "
        "(layer spotting is not below training)"
    ]


def test_a_subpackage_in_no_layer_is_reported(tmp_path):
    root = _tree(tmp_path, {"soccer_highlights/extra/__init__.py": ""})
    assert _errors(root) == ["soccer_highlights/extra/__init__.py: subpackage 'extra' is in no layer of docs/DESIGN.md"]


def test_a_function_local_import_cycle_is_reported(tmp_path):
    root = _tree(
        tmp_path,
        {
            "soccer_highlights/core/a.py": "from soccer_highlights.core import b\n",
            "soccer_highlights/core/b.py": "def f():\n    import soccer_highlights.core.a  # a cycle, on purpose\n",
        },
    )
    assert _errors(root) == ["import cycle: soccer_highlights.core.a <-> soccer_highlights.core.b"]


def test_imports_under_type_checking_do_not_count(tmp_path):
    root = _tree(
        tmp_path,
        {
            "soccer_highlights/core/a.py": "from soccer_highlights.core import b\n",
            "soccer_highlights/core/b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from soccer_highlights.core.a import X\n"
            ),
        },
    )
    assert _errors(root) == []


def test_private_names_of_other_modules_are_reported(tmp_path):
    root = _tree(
        tmp_path,
        {
            "soccer_highlights/core/a.py": "from soccer_highlights.common.x import _hidden\n",
            "soccer_highlights/core/b.py": "from soccer_highlights.common import x\n\nx._hidden()\n",
            "soccer_highlights/common/x.py": "def _hidden(): ...\n",
        },
    )
    assert _errors(root) == [
        "soccer_highlights/core/a.py:1: imports soccer_highlights.common.x's private name _hidden",
        "soccer_highlights/core/b.py:3: uses soccer_highlights.common.x's private _hidden",
    ]


def test_a_local_project_import_needs_a_comment(tmp_path):
    root = _tree(
        tmp_path,
        {
            "soccer_highlights/core/a.py": "def f():\n    from soccer_highlights.common import x\n",
            "soccer_highlights/core/b.py": "def f():\n    from soccer_highlights.common import x  # TensorFlow\n",
            "soccer_highlights/common/x.py": "",
        },
    )
    assert _errors(root) == [
        "soccer_highlights/core/a.py:2: a project import inside a function with no comment saying why it is not "
        "at the top of the module"
    ]


def test_top_level_library_modules_are_errors_and_sizes_only_warnings(tmp_path):
    body = "def long():\n" + "    x = 1\n" * 60 + "\n" + "y = 2\n" * 400
    root = _tree(tmp_path, {"helpers.py": "", "soccer_highlights/core/big.py": body})
    errors, warnings = check_house.check(root)
    assert errors == [
        "helpers.py: a module at the top level that is not one of the card's entries (library code belongs in "
        "soccer_highlights/)"
    ]
    assert warnings == [
        "soccer_highlights/core/big.py: module has 462 lines (guide 450)",
        "soccer_highlights/core/big.py:1: function long has 61 lines (guide 60)",
    ]
