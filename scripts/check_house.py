"""The house rules that a linter does not check, on the project's own Python files (the package and the card's
thin entries at the top level).

Errors (exit 1):
- Layers: the package's subpackages are stacked in the `layers` block of docs/DESIGN.md (highest first); a module
  imports only from its own subpackage or from a lower layer. The top-level entries stand above every layer.
- No import cycle between modules. Every import counts, function-local ones too (they still tie the modules
  together), except those under `if TYPE_CHECKING:`, which never run.
- No import of another module's private name (`from m import _x`, or `m._x` on an imported project module).
- A project import inside a function says why on its line or the line above (a comment: TensorFlow, a cycle it
  would make, start-up time); otherwise it belongs at the top of the module.
- At the top level only the card's entries (the commands and `dataset.py`), thin files over the package.

Warnings (printed, exit 0): modules over 450 lines and functions over 60 lines, a hint to look, not a rule to
move code around for.

Usage: python scripts/check_house.py [ROOT]
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "soccer_highlights"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
TOP_LEVEL = {
    "ClassificationMinuteBased.py",
    "ClassificationSecondBased.py",
    "evaluate.py",
    "inference.py",
    "dataset.py",
}
ENTRY_PACKAGES = ("archis", "extract_features")  # the card's folders: thin entries over the package
LAYERS_BLOCK = re.compile(r"```layers\n(.*?)```", re.S)


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: list[str]
    is_package: bool
    imports: list[tuple[str, ast.stmt, bool]] = field(default_factory=list)  # (module, node, inside a function)


def project_files(root: Path) -> list[Path]:
    """The package's files and the top-level entries (not tests, benchmarks, scripts or built folders)."""
    files = sorted(root.glob("*.py"))
    for pkg in (PACKAGE, *ENTRY_PACKAGES):
        if (root / pkg).is_dir():
            files += sorted((root / pkg).rglob("*.py"))
    return files


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_layers(root: Path) -> list[set[str]]:
    """The layers of docs/DESIGN.md, highest first: one line each, the subpackages of that layer."""
    design = root / "docs" / "DESIGN.md"
    match = LAYERS_BLOCK.search(design.read_text()) if design.is_file() else None
    if not match:
        return []
    return [set(line.split()) for line in match.group(1).splitlines() if line.strip()]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _collect(module: Module, modules: set[str]) -> None:
    """The project imports of `module` (outside `if TYPE_CHECKING:`), each with its node and whether it runs inside a
    function."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, in_function)
            return
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in modules:
                    module.imports.append((a.name, node, in_function))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for a in node.names:  # `from pkg import submodule` imports the submodule, not a name of pkg
                target = f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                if target in modules:
                    module.imports.append((target, node, in_function))
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(module.tree, False)


def load(root: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for f in project_files(root):
        text = f.read_text()
        name = module_name(root, f)
        modules[name] = Module(name, f, ast.parse(text, str(f)), text.splitlines(), f.name == "__init__.py")
    names = set(modules)
    for m in modules.values():
        _collect(m, names)
    return modules


def import_graph(modules: dict[str, Module]) -> dict[str, set[str]]:
    return {name: {t for t, _, _ in m.imports if t != name} for name, m in modules.items()}


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


def subpackage(name: str) -> str | None:
    """`soccer_highlights.core.pipeline` -> `core`; a top-level entry -> None."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else ""


def layer_violations(root: Path, modules: dict[str, Module]) -> list[str]:
    layers = read_layers(root)
    if not layers:
        return ["docs/DESIGN.md: no ```layers block (the package's layers, highest first)"]
    rank = {pkg: len(layers) - i for i, layer in enumerate(layers) for pkg in layer}
    out = []
    for name, m in sorted(modules.items()):
        own = subpackage(name)
        if own is None or own == "":
            continue  # the top-level entries and the package's root stand above every layer
        if own not in rank:
            out.append(f"{m.path.relative_to(root)}: subpackage {own!r} is in no layer of docs/DESIGN.md")
            continue
        for target, node, _ in m.imports:
            theirs = subpackage(target)
            if theirs is None or theirs == own:
                continue
            if theirs == "" or rank.get(theirs, 10**6) >= rank[own]:
                where = f"{m.path.relative_to(root)}:{node.lineno}"
                out.append(f"{where}: {own} imports {target} (layer {theirs or PACKAGE} is not below {own})")
    return out


def private_violations(root: Path, modules: dict[str, Module]) -> list[str]:
    out = []
    for name, m in sorted(modules.items()):
        aliases: dict[str, str] = {}
        for target, node, _ in m.imports:
            where = f"{m.path.relative_to(root)}:{node.lineno}"
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__") and target != name:
                        out.append(f"{where}: imports {target}'s private name {a.name}")
                    if f"{node.module}.{a.name}" == target or target.endswith(f".{a.name}"):
                        aliases[a.asname or a.name] = target
            else:
                for a in node.names:
                    if a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(m.tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                out.append(
                    f"{m.path.relative_to(root)}:{node.lineno}: uses {aliases[node.value.id]}'s private {node.attr}"
                )
    return out


def local_import_violations(root: Path, modules: dict[str, Module]) -> list[str]:
    out = []
    for m in modules.values():
        for _, node, in_function in m.imports:
            if not in_function:
                continue
            lines = m.lines[node.lineno - 2 : (node.end_lineno or node.lineno)]
            if not any("#" in line for line in lines):
                out.append(
                    f"{m.path.relative_to(root)}:{node.lineno}: a project import inside a function with no comment "
                    "saying why it is not at the top of the module"
                )
    return sorted(set(out))


def size_warnings(root: Path, modules: dict[str, Module]) -> list[str]:
    out = []
    for m in modules.values():
        rel = m.path.relative_to(root)
        if len(m.lines) > MAX_MODULE_LINES:
            out.append(f"{rel}: module has {len(m.lines)} lines (guide {MAX_MODULE_LINES})")
        for node in ast.walk(m.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1 if node.end_lineno else 0
                if length > MAX_FUNCTION_LINES:
                    out.append(
                        f"{rel}:{node.lineno}: function {node.name} has {length} lines (guide {MAX_FUNCTION_LINES})"
                    )
    return sorted(out)


def top_level_violations(root: Path) -> list[str]:
    return [
        f"{p.name}: a module at the top level that is not one of the card's entries (library code belongs in "
        f"{PACKAGE}/)"
        for p in sorted(root.glob("*.py"))
        if p.name not in TOP_LEVEL
    ]


def check(root: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings)."""
    modules = load(root)
    errors = top_level_violations(root) + layer_violations(root, modules) + private_violations(root, modules)
    errors += local_import_violations(root, modules)
    errors += [f"import cycle: {' <-> '.join(c)}" for c in cycles(import_graph(modules))]
    return errors, size_warnings(root, modules)


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else Path(__file__).resolve().parent.parent)
    errors, warnings = check(root)
    for line in warnings:
        print(f"warning: {line}")
    for line in errors:
        print(line)
    print(f"house: {len(errors)} violation(s)" if errors else f"house: clean ({len(warnings)} size warning(s))")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
