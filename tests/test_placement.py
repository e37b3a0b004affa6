"""Placement you can steer: custom node resources per phase (`resources.node_resources`), what
each trial asks Tune for, how many fit at once, a request no node can meet refused before
anything waits, and tables profiled on labelled nodes (`grid.lut: [{profile_on: ...}]`). Where
each phase really ran, and two labelled tables giving two fronts, are checked on several nodes
in test_multinode."""

from __future__ import annotations

import pytest

from cluster.resources import require_node_resources
from nas_core.errors import ProxylessError
from orchestrator.profile_on import profile_labelled_tables, requested, table_path
from orchestrator.sweep_spec import ResourceConfig, SweepSpec
from orchestrator.tune_run import require_resources, trial_request

LABELLED = {"search_workers": {"gpu-a10g": 0.5}, "retrain": {"cpu-box": 1}}


def test_node_resources_round_trip_and_scale_with_the_workers() -> None:
    res = ResourceConfig.from_config({"workers": 2, "node_resources": LABELLED})
    assert ResourceConfig.from_config(res.to_config()) == res
    assert res.custom_resources("search") == {"gpu-a10g": 1.0}  # two workers
    assert res.custom_resources("retrain") == {"cpu-box": 1.0}
    assert ResourceConfig().custom_resources("search") == {}


def test_what_a_trial_asks_tune_for() -> None:
    on_train = ResourceConfig.from_config({"workers": 2, "node_resources": LABELLED})
    # the trial only drives its Train workers, which ask for the node resources themselves
    assert trial_request(on_train, "search") == {"cpu": 0.01}
    assert trial_request(on_train, "retrain") == {"cpu": 1.0, "cpu-box": 1.0}
    in_process = ResourceConfig.from_config({"workers": 0, "node_resources": LABELLED})
    assert trial_request(in_process, "search") == {"cpu": 1.0, "gpu-a10g": 0.5}


def test_concurrency_counts_the_node_resources_too() -> None:
    res = ResourceConfig.from_config({"workers": 1, "node_resources": LABELLED})
    cluster = {"CPU": 16.0, "gpu-a10g": 1.0, "cpu-box": 3.0}
    assert res.concurrency(cluster, "search") == 2  # 1 / 0.5, though 16 CPUs would fit 16
    assert res.concurrency(cluster, "retrain") == 3


def test_a_resource_no_node_offers_is_one_line_before_anything_waits(local_ray) -> None:
    with pytest.raises(ProxylessError) as e:
        require_node_resources({"gpu-a10g": 1.0}, "each retrain trial", "x.retrain")
    message = str(e.value)
    assert message.startswith("x.retrain: each retrain trial needs 1 of 'gpu-a10g'")
    assert "--resources='{\"gpu-a10g\": 1}'" in message and "\n" not in message
    res = ResourceConfig.from_config({"node_resources": {"retrain": {"cpu-box": 1}}})
    with pytest.raises(ProxylessError, match=r"^resources\.node_resources\.retrain: each retrain"):
        require_resources(res)  # the retrain phase's, checked before the searches run
    # Ray's own `node:<ip>` resource pins a phase to one machine; this one has it
    pinned = {"node_resources": {"retrain": {"node:127.0.0.1": 0.01}}}
    require_resources(ResourceConfig.from_config(pinned))


def test_a_profile_on_entry_is_kept_as_one_string_that_round_trips() -> None:
    spec = SweepSpec.from_config({"grid": {"lut": [{"profile_on": {"b": 1, "a": 2}}, None]}})
    entry, profiled_here = spec.grid["lut"].values
    assert entry == 'profile_on:{"a":2.0,"b":1.0}' and profiled_here is None
    assert requested(entry) == {"a": 2.0, "b": 1.0} and requested("/t/table.parquet") is None
    assert SweepSpec.from_config(spec.to_config()) == spec
    point = {"lut": entry, "lambda2": 0.1}
    assert spec.search_config(point, out_dir="unused").lut is None  # the trial gets the table


def test_a_labelled_table_is_profiled_on_its_node_named_for_it_and_reused(
    local_ray, tmp_path
) -> None:
    """Ray's `node:127.0.0.1` stands in for a node type's label on this one-node Ray."""
    from nas_core.spaces import create_space

    space = create_space("mobilenet", B=1, F=0.25, resolution=16, num_classes=10)
    keys = space.latency_layout().all_keys()[:3]
    entry = (
        SweepSpec.from_config({"grid": {"lut": [{"profile_on": {"node:127.0.0.1": 0.01}}]}})
        .grid["lut"]
        .values[0]
    )
    (table,) = profile_labelled_tables({entry: keys}, tmp_path, "cpu", {"sweep": "t"}).values()
    assert table.meta.name == "node:127.0.0.1" and not table.missing(keys)
    assert table.meta.extra["profiled_on"]["node_id"] == local_ray_node_id()
    saved = table_path(tmp_path, requested(entry))
    assert saved.parent.name == "tables" and saved.is_file()
    stamp = saved.stat().st_mtime_ns
    (again,) = profile_labelled_tables({entry: keys}, tmp_path, "cpu", {}).values()
    assert again == table and saved.stat().st_mtime_ns == stamp  # a resumed sweep's: no task
    with pytest.raises(ProxylessError, match=r"^grid\.lut profile_on:.*needs 1 of 'gpu-a10g'"):
        profile_labelled_tables({'profile_on:{"gpu-a10g":1}': keys}, tmp_path, "cpu", {})


def local_ray_node_id() -> str:
    import ray

    (node,) = [n for n in ray.nodes() if n["Alive"]]
    return node["NodeID"]
