"""Placement you can steer: custom node resources per phase (`resources.node_resources`), what
each trial asks Tune for, how many fit at once, and a request no node can meet refused before
anything waits. Where each phase really ran is checked on several nodes in test_multinode."""

from __future__ import annotations

import pytest

from cluster.resources import require_node_resources
from nas_core.errors import ProxylessError
from orchestrator.sweep_spec import ResourceConfig
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
