"""Property tests: random and mutated inputs to every loader raise only ProxylessError.

Each loader gets (a) arbitrary JSON-like values and (b) a valid document with one value
replaced, one key deleted or one key added anywhere in its tree. Whatever comes in, the result
is either a valid object or a ProxylessError — never a KeyError, TypeError, ValueError, …
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas_core.errors import ProxylessError

SPACE = {"name": "mobilenet", "B": 1, "F": 0.5, "resolution": 32, "num_classes": 10}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**4), max_value=10**4),  # huge widths would only test the OOM killer
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["zero", "3x3_MBConv6", "mobilenet", "gradient", "digits", "", "name"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside nested dicts and lists."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, valid: dict) -> Any:
    doc = copy.deepcopy(valid)
    paths = _paths(doc)
    path = draw(st.sampled_from(paths))
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = draw(values)
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
    else:
        parent.append(draw(values))
    return doc


def _only_proxyless_errors(load: Callable[[Any], Any], doc: Any) -> None:
    try:
        load(doc)
    except ProxylessError as e:
        assert "\n" not in str(e) or "has no entry" in str(e)


def _search(doc: Any) -> Any:
    from nas_core.search_config import SearchConfig

    return SearchConfig.from_config(doc)


def _sweep(doc: Any) -> Any:
    from orchestrator.sweep_spec import SweepSpec

    return SweepSpec.from_config(doc)


def _architecture(doc: Any) -> Any:
    from nas_core.architecture import Architecture, build_net

    return build_net(Architecture.from_config(doc))


def _table(doc: Any) -> Any:
    from nas_core.latency.table import LatencyTable

    table = LatencyTable.from_yaml_dict(doc, "t.yaml")
    for entry in table.entries.values():
        assert math.isfinite(entry.mean) and entry.mean >= 0
    return table


def _net_config(doc: Any) -> Any:
    from nas_core.nets import net_from_config

    return net_from_config(doc)


def _valid_docs() -> dict[str, tuple[Callable[[Any], Any], dict]]:
    from nas_core.architecture import Architecture
    from nas_core.latency.synthetic import synthetic_table
    from nas_core.search_config import SearchConfig
    from nas_core.spaces import SearchSpace
    from orchestrator.sweep_spec import demo_spec

    space = SearchSpace.from_config(SPACE)
    arch = Architecture(space, tuple(s.candidates[-1] for s in space.layer_specs()))
    table = synthetic_table(space).to_yaml_dict()
    table = dict(list(table.items())[:4])  # metadata + a few entries keep examples small
    return {
        "search": (_search, SearchConfig().to_config()),
        "sweep": (_sweep, demo_spec().to_config()),
        "architecture": (_architecture, arch.to_config()),
        "table": (_table, table),
        "net_config": (_net_config, arch.net_config()),
    }


LOADERS = ["search", "sweep", "architecture", "table", "net_config"]
SETTINGS = settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")),
    deadline=None,
    derandomize=True,  # the same examples in every CI run; raise PROPERTY_EXAMPLES to explore
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("name", LOADERS)
@SETTINGS
@given(doc=values)
def test_random_documents_raise_only_our_error(name: str, doc: Any) -> None:
    load, _ = _valid_docs()[name]
    _only_proxyless_errors(load, doc)


@pytest.mark.parametrize("name", LOADERS)
@SETTINGS
@given(data=st.data())
def test_mutated_documents_raise_only_our_error(name: str, data: st.DataObject) -> None:
    load, valid = _valid_docs()[name]
    load(copy.deepcopy(valid))  # the unmutated document loads
    _only_proxyless_errors(load, data.draw(mutated(valid)))
