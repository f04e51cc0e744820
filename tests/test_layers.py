"""The backend's architecture, read from its imports (ast, nothing imported): every module imports only
its own layer or the ones below, no modules import each other in a circle, and serving never reaches
training code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "thinkrec"
LAYERS = (  # bottom first; a module may import its own layer and the layers below it
    ("foundation", ("config", "errors", "files", "metrics", "intervals", "svg_chart", "manifest", "assets",
                    "registry", "timebox", "chunks")),
    ("data", ("data", "subsets", "text_metrics", "text_intervals", "claims")),
    ("System-1", ("cf",)),
    ("teacher and guests", ("teacher", "guest")),
    ("LLM", ("llm",)),
    ("fusion", ("fusion",)),
    ("serving and stored predictions", ("serving", "predictions", "reasoning_scores", "workbench")),
    ("facade, pipeline and report", ("explorer", "pipeline", "expert_stages", "plan", "report", "faithfulness")),
    ("entry points", ("cli", "__main__")),
)
TRAINING = ("thinkrec.llm.train", "accelerate")  # what serving must never load


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (absolute names; relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # ``from thinkrec import registry``
    return found


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: {i for i in imports_of(path) if i in MODULES and i != name} for name, path in MODULES.items()}
EXTERNAL = {name: {i for i in imports_of(path) if not i.startswith("thinkrec")} for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for number, (_, members) in enumerate(LAYERS):
        if top in members:
            return number
    raise AssertionError(f"{module} sits in no layer: add it to LAYERS in {Path(__file__).name}")


def test_every_module_sits_in_a_layer():
    for module in MODULES:
        if module != "thinkrec":
            layer_of(module)


def test_no_import_runs_upward():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in GRAPH.items() if module != "thinkrec"
              for target in targets if target != "thinkrec" and layer_of(target) > layer_of(module)]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                return [*path, module, target]
            if target not in state and (circle := visit(target, [*path, module])):
                return circle
        state[module] = "done"
        return None

    for module in MODULES:
        if module not in state:
            assert visit(module, []) is None


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += GRAPH[module]
    return seen


@pytest.mark.parametrize("start", ["thinkrec.explorer", "thinkrec.serving.bank"])
def test_serving_never_loads_training_code(start):
    loaded = reachable(start)
    names = loaded | {e for module in loaded for e in EXTERNAL[module]}
    assert [n for n in names if n.split(".")[0] in TRAINING or n in TRAINING] == []


def test_the_backend_never_imports_the_ui_libraries():
    assert [m for m, names in EXTERNAL.items() if {n.split(".")[0] for n in names} & {"gradio", "plotly", "demo"}] == []
