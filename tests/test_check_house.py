"""scripts/check_house.py: the house rules a linter does not check (top level, sizes, import cycles)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_house", ROOT / "scripts" / "check_house.py")
check_house = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_house)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_a_function_local_import_cycle_is_reported(tmp_path):
    root = _tree(
        tmp_path,
        {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n", "pkg/b.py": "def f():\n    import pkg.a\n"},
    )
    assert check_house.check(root) == ["import cycle: pkg.a <-> pkg.b"]


def test_imports_under_type_checking_do_not_make_a_cycle(tmp_path):
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import X\n",
        },
    )
    assert check_house.check(root) == []


def test_long_functions_long_modules_and_top_level_libraries_are_reported(tmp_path):
    body = "def long():\n" + "    x = 1\n" * 60 + "\n" + "y = 2\n" * 400
    root = _tree(tmp_path, {"helpers.py": "", "pkg/__init__.py": "", "pkg/big.py": body})
    problems = check_house.check(root)
    assert problems[0].startswith("helpers.py: a library module at the top level")
    assert problems[1] == "pkg/big.py: module has 462 lines (max 450)"
    assert problems[2] == "pkg/big.py:1: function long has 61 lines (max 60)"
