"""The house rules that a linter does not check, checked on the project's own Python files.

- At the top level only the commands and `dataset.py` / `setup.py` (a library module belongs in a package).
- No module over 450 lines, no function over 60 lines (decorators and docstring included).
- No import cycle between project modules. Every import counts, function-local ones too (they still tie the
  modules together), except those under `if TYPE_CHECKING:`, which never run.

Prints one line per violation and exits 1 if there is any.  Usage: python scripts/check_house.py [ROOT]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
TOP_LEVEL = {"ClassificationMinuteBased.py", "ClassificationSecondBased.py", "evaluate.py", "inference.py"}
TOP_LEVEL_LIBRARY = {"dataset.py", "setup.py"}
SKIP_DIRS = {"tests", "bench", "scripts", "docs", "build", "dist"}


def project_files(root: Path) -> list[Path]:
    """The project's Python files: top-level modules and packages (not tests, benchmarks, hidden or built folders)."""
    files = sorted(root.glob("*.py"))
    for pkg in sorted(p.parent for p in root.glob("*/__init__.py")):
        if pkg.name not in SKIP_DIRS and not pkg.name.startswith("."):
            files += sorted(pkg.rglob("*.py"))
    return files


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The project modules (of `modules`) the file imports, outside `if TYPE_CHECKING:` blocks."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:  # `from pkg import submodule` imports the submodule, not a name of pkg
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path, files: list[Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's import of its own submodules included)."""
    trees = {module_name(root, f): (f, ast.parse(f.read_text(), str(f))) for f in files}
    graph: dict[str, set[str]] = {}
    for name, (path, tree) in trees.items():
        names = imported_names(tree, name, path.name == "__init__.py", set(trees))
        graph[name] = {n for n in names if n in trees and n != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def size_violations(root: Path, files: list[Path]) -> list[str]:
    out = []
    for f in files:
        rel = f.relative_to(root)
        text = f.read_text()
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            out.append(f"{rel}: module has {lines} lines (max {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, str(f))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1 if node.end_lineno else 0
                if length > MAX_FUNCTION_LINES:
                    out.append(
                        f"{rel}:{node.lineno}: function {node.name} has {length} lines (max {MAX_FUNCTION_LINES})"
                    )
    return out


def top_level_violations(root: Path) -> list[str]:
    allowed = TOP_LEVEL | TOP_LEVEL_LIBRARY
    return [
        f"{p.name}: a library module at the top level (only commands, dataset.py and setup.py belong there)"
        for p in sorted(root.glob("*.py"))
        if p.name not in allowed
    ]


def check(root: Path) -> list[str]:
    files = project_files(root)
    problems = top_level_violations(root) + size_violations(root, files)
    problems += [f"import cycle: {' <-> '.join(c)}" for c in cycles(import_graph(root, files))]
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else Path(__file__).resolve().parent.parent)
    problems = check(root)
    for line in problems:
        print(line)
    print(f"house: {len(problems)} violation(s)" if problems else "house: clean")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
