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
    return _private_uses_in(path.read_text(), str(path.relative_to(ROOT)))


def _private_uses_in(source: str, name: str) -> list[str]:
    tree = ast.parse(source, name)
    uses = []
    for line, module, names in _imports(tree):
        if module.split(".")[0] != "ray":
            continue
        parts = module.split(".")
        if any(p.startswith("_") for p in parts) or any(n.startswith("_") for n in names):
            uses.append(f"{name}:{line}: import of {module} {names}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            uses.append(f"{name}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Attribute) and _private_name(node.attr) and _rooted_at_ray(node):
            uses.append(f"{name}:{node.lineno}: attribute {node.attr} of ray")
        elif isinstance(node, ast.Call) and _is_getattr_of_private(node):
            uses.append(f"{name}:{node.lineno}: getattr of a private name")
        elif isinstance(node, ast.FunctionDef) and node.name in PRIVATE_ATTRIBUTES:
            uses.append(f"{name}:{node.lineno}: overrides {node.name}")
        elif isinstance(node, ast.Call) and _rooted_at_ray(node.func):
            uses += [
                f"{name}:{node.lineno}: keyword {k.arg}"
                for k in node.keywords
                if k.arg and k.arg.startswith("_")
            ]
    return uses


def _private_name(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_getattr_of_private(call: ast.Call) -> bool:
    """`getattr(x, "_name")`: a private attribute read around the scan of `x._name`."""
    return (
        isinstance(call.func, ast.Name)
        and call.func.id == "getattr"
        and len(call.args) >= 2
        and isinstance(call.args[1], ast.Constant)
        and isinstance(call.args[1].value, str)
        and _private_name(call.args[1].value)
    )


def _rooted_at_ray(func: ast.expr) -> bool:
    while isinstance(func, ast.Attribute):
        func = func.value
    return isinstance(func, ast.Name) and func.id == "ray"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_private_ray_api_outside_the_compat_modules(package: str) -> None:
    uses = [u for p in _sources(package) if p not in COMPAT for u in _private_ray_uses(p)]
    assert not uses, "\n".join(uses)


PRIVATE_FORMS = {
    "from ray._private import ray_constants": "import of ray._private",
    "from ray.train.v2._internal.exceptions import CollectiveTimeoutError": "import of ray.train",
    "from ray.train.torch.config import _TorchBackend": "import of ray.train.torch.config",
    "import ray._raylet": "import of ray._raylet",
    "queue = session._inter_actor_queue": "._inter_actor_queue",
    "ray_constants.ENABLE_RAY_CLUSTER = False": ".ENABLE_RAY_CLUSTER",
    "def _initialize_and_run_controller(self): pass": "overrides _initialize_and_run_controller",
    "ray.init(_node_ip_address='127.0.0.1')": "keyword _node_ip_address",
    "w = ray._private.worker.global_worker": "attribute _private of ray",
    "c = ray.train.torch.config._TorchBackend": "attribute _TorchBackend of ray",
    "q = getattr(session, '_inter_actor_queue')": "getattr of a private name",
}


@pytest.mark.parametrize("source", sorted(PRIVATE_FORMS))
def test_the_scan_sees_each_private_form(source: str) -> None:
    uses = _private_uses_in(source, "x.py")
    assert len(uses) == 1 and uses[0].startswith(f"x.py:1: {PRIVATE_FORMS[source]}"), uses


def test_the_scan_passes_the_public_routes() -> None:
    public = (
        "import ray\nfrom ray.train import UserCallback\nfrom ray.train.backend import Backend\n"
        "ray.init(num_cpus=2, include_dashboard=False)\n"
    )
    assert _private_uses_in(public, "x.py") == []


def test_the_cluster_compat_module_holds_private_uses() -> None:
    """The scan reads the real files: the one module allowed private uses has some."""
    assert _private_ray_uses(ROOT / "cluster" / "ray_compat.py")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _sources(package)
        for line, module, _ in _imports(ast.parse(path.read_text(), str(path)))
        if module.split(".")[0] in FORBIDDEN[package]
    ]
    assert not bad, "\n".join(bad)
