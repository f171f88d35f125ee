"""The package's layout: stages in one direction, no import cycle, lines of a readable length."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deployer"

# Lowest first: a stage imports only itself, `core` and the stages listed before it.
STAGES = ("core", "spec", "sources", "vllm", "checks", "render", "local", "deploy", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The deployer modules a file imports, at module level or inside functions alike."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in found if name in modules} - {"deployer", module_name(path)}


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if stage_of(m)))
def test_a_stage_imports_only_core_and_the_stages_before_it(module):
    stage = STAGES.index(stage_of(module))
    higher = {
        imported
        for imported in GRAPH[module]
        if stage_of(imported) and STAGES.index(stage_of(imported)) > stage
    }
    assert not higher, f"{module} imports a later stage: {sorted(higher)}"


def test_every_module_belongs_to_a_stage():
    loose = {m for m in GRAPH if not stage_of(m)} - {"deployer", "deployer.__main__"}
    assert not loose, f"modules outside the stage folders: {sorted(loose)}"


def test_no_import_cycle():
    def visit(module: str, trail: tuple[str, ...]) -> None:
        if module in trail:
            cycle = trail[trail.index(module) :] + (module,)
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for imported in sorted(GRAPH.get(module, ())):
            visit(imported, trail + (module,))
        done.add(module)

    done: set[str] = set()
    for module in sorted(GRAPH):
        visit(module, ())


def test_no_line_in_the_package_is_over_120_characters():
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{number}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if len(line) > 120
    ]
    assert not long, long


def test_no_test_file_is_over_1000_lines():
    tests = Path(__file__).resolve().parent
    long = {
        str(path.relative_to(tests)): lines
        for path in tests.rglob("test_*.py")
        if (lines := len(path.read_text().splitlines())) > 1000
    }
    assert not long, long
