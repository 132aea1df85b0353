"""The wheel's top-level modules are the commands and `dataset.py` at the repository root, found by globbing so that
a new one cannot be missed (packages are found by `[tool.setuptools.packages.find]` in pyproject.toml)."""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
setup(py_modules=sorted(p.stem for p in ROOT.glob("*.py") if p.name != "setup.py"))
