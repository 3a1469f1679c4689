"""The package's shape: imports flow one way, no cycles, thin stages, no print in the library, no
process-wide state changed by library code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
# lower layers first; a module may import its own layer and those below, never above
LAYERS = [
    {"errors", "environment", "config", "io", "progress", "cli", "pipeline"},
    {"devices", "tracking", "hub"},
    {"data"},
    {"features"},
    {"models"},
    {"deploy"},  # a model on new audio: predict, ONNX, the MLflow Model (evaluate logs it)
    {"evaluation", "training"},  # training may use evaluation's metrics; evaluation never training
    {"experiments"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every audioclf module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("audioclf"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("audioclf"))
    return found


MODULES = {_module(p): p for p in (SRC / "audioclf").rglob("*.py")}
GRAPH = {
    name: {m for m in _imports(path) if m in MODULES and m != name}
    for name, path in MODULES.items()
}


def _unit(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "audioclf"


def test_every_unit_has_a_layer():
    assert {_unit(m) for m in MODULES} - {"audioclf", "__main__"} == set(RANK)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _unit(m) in RANK))
def test_imports_flow_down_the_layers(module):
    for target in GRAPH[module]:
        if _unit(target) in RANK:
            assert RANK[_unit(target)] <= RANK[_unit(module)], (
                f"{module} imports {target}, a higher layer"
            )


def test_evaluation_never_imports_training():
    offenders = {
        m: t
        for m in MODULES
        if _unit(m) == "evaluation"
        for t in GRAPH[m]
        if _unit(t) == "training"
    }
    assert offenders == {}


def test_there_is_no_import_cycle():
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(GRAPH[node]):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*path, node, target]))
            if target not in state:
                visit(target, [*path, node])
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])


def test_every_subpackage_says_what_it_owns_and_may_import():
    for path in (SRC / "audioclf").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "import" in doc and len(doc) > 150, path


LIBRARY = sorted((SRC / "audioclf").rglob("*.py"))


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(SRC)))
def test_library_code_prints_nothing(path):
    if path.name == "cli.py":  # the command's usage, and a broken install's one line
        return
    calls = [
        n
        for n in ast.walk(ast.parse(path.read_text()))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"
    ]
    assert not calls, f"{path} prints; log instead"


def _process_wide_changes(tree: ast.AST) -> list[str]:
    """What in ``tree`` changes the whole process: ctypes into libc (malloc settings), a replaced
    exception or signal hook, the environment written in place."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            found += [f"imports {n}" for n in names if n.split(".")[0] == "ctypes"]
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            text = ast.unparse(target)
            if text in ("sys.excepthook", "sys.unraisablehook") or text.startswith("os.environ["):
                found.append(f"assigns {text}")
        if isinstance(node, ast.Delete):
            found += [
                f"deletes {ast.unparse(t)}" for t in node.targets if "os.environ" in ast.unparse(t)
            ]
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in (
                "os.environ.update",
                "os.environ.setdefault",
                "os.environ.pop",
                "os.putenv",
                "signal.signal",
            ):
                found.append(f"calls {name}")
    return found


def test_the_process_wide_check_finds_what_it_looks_for():
    code = "import ctypes\nimport os, sys\nos.environ['X'] = '1'\nsys.excepthook = print\n"
    assert _process_wide_changes(ast.parse(code)) == [
        "imports ctypes",
        "assigns os.environ['X']",
        "assigns sys.excepthook",
    ]


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(SRC)))
def test_library_code_changes_no_process_wide_state(path):
    """Environment variables go to child processes (``env=``), hooks and malloc settings belong to
    entry points: importing or calling the library leaves the caller's process as it was (a
    thread count set for a call is set back after it)."""
    assert _process_wide_changes(ast.parse(path.read_text())) == [], path


@pytest.mark.parametrize("path", sorted((REPO / "stages").glob("*.py")), ids=lambda p: p.name)
def test_stage_scripts_are_thin(path):
    assert len(path.read_text().splitlines()) <= 60
