"""The packages' layering and the fence around Ray's private API, read from the source (AST).

nas_core is pure PyTorch (never Ray, cluster or orchestrator); cluster never imports the
orchestrator; only the two `ray_compat` modules touch Ray's private API: `ray._private`,
`ray.*._internal`, an underscored name imported from Ray, an underscored keyword of a Ray call,
or one of the private attributes below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("nas_core", "cluster", "orchestrator")
FORBIDDEN = {"nas_core": ("ray", "cluster", "orchestrator"), "cluster": ("orchestrator",)}
COMPAT = {ROOT / "cluster" / "ray_compat.py", ROOT / "orchestrator" / "ray_compat.py"}
PRIVATE_ATTRIBUTES = {"_inter_actor_queue", "_initialize_and_run_controller", "ENABLE_RAY_CLUSTER"}


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """(line, module, names imported from it) of every import, function-local ones included."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module, [a.name for a in node.names]))
    return found


def _private_ray_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    uses = []
    for line, module, names in _imports(tree):
        if module.split(".")[0] != "ray":
            continue
        parts = module.split(".")
        if any(p.startswith("_") for p in parts) or any(n.startswith("_") for n in names):
            uses.append(f"{path.relative_to(ROOT)}:{line}: import of {module} {names}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            uses.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.FunctionDef) and node.name in PRIVATE_ATTRIBUTES:
            uses.append(f"{path.relative_to(ROOT)}:{node.lineno}: overrides {node.name}")
        elif isinstance(node, ast.Call) and _is_ray_call(node.func):
            uses += [
                f"{path.relative_to(ROOT)}:{node.lineno}: keyword {k.arg}"
                for k in node.keywords
                if k.arg and k.arg.startswith("_")
            ]
    return uses


def _is_ray_call(func: ast.expr) -> bool:
    while isinstance(func, ast.Attribute):
        func = func.value
    return isinstance(func, ast.Name) and func.id == "ray"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_private_ray_api_outside_the_compat_modules(package: str) -> None:
    uses = [u for p in _sources(package) if p not in COMPAT for u in _private_ray_uses(p)]
    assert not uses, "\n".join(uses)


def test_the_compat_modules_are_where_the_private_uses_are() -> None:
    """The scan sees what it is meant to see: each compat module holds private uses."""
    for path in COMPAT:
        assert _private_ray_uses(path), path


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _sources(package)
        for line, module, _ in _imports(ast.parse(path.read_text(), str(path)))
        if module.split(".")[0] in FORBIDDEN[package]
    ]
    assert not bad, "\n".join(bad)
