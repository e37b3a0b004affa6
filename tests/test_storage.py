"""Run folders on a path or a pyarrow.fs URI: joining, splitting and the driver's working copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas_core.errors import ProxylessError
from orchestrator.storage import (
    RunStorage,
    beside,
    fetch_if_present,
    fetch_to_local,
    file_name,
    join_uri,
    split_run_location,
)


def test_a_uri_query_stays_last_when_joining_and_splitting() -> None:
    base = "s3://bucket/runs?endpoint_override=localhost:9000"
    assert (
        join_uri(base, "demo/tune") == "s3://bucket/runs/demo/tune?endpoint_override=localhost:9000"
    )
    assert split_run_location(join_uri(base, "demo")) == (base, "demo")
    assert RunStorage(base, "demo").url("tune") == join_uri(base, "demo/tune")


def test_a_local_run_folder_is_its_own_working_copy(tmp_path: Path) -> None:
    store = RunStorage(str(tmp_path / "runs"), "demo")
    assert store.work_dir == tmp_path / "runs" / "demo" and store.url("x") == f"{store.path}/x"
    assert split_run_location(store.url()) == (str(tmp_path / "runs"), "demo")


def test_a_uri_run_folder_gets_the_drivers_files_back_and_forth(tmp_path: Path) -> None:
    uri = (tmp_path / "bucket").as_uri()
    store = RunStorage(uri, "demo")
    assert store.work_dir != tmp_path / "bucket" / "demo"  # a local copy, not the folder
    (store.work_dir / "sweep.yaml").write_text("name: demo\n")
    store.push()  # files only, into a folder that does not exist yet
    assert (tmp_path / "bucket" / "demo" / "sweep.yaml").is_file()
    (store.work_dir / "tensorboard").mkdir()
    (store.work_dir / "tensorboard" / "events").write_text("scalars")
    store.push()
    store.close()
    assert (tmp_path / "bucket" / "demo" / "tensorboard" / "events").read_text() == "scalars"
    again = RunStorage(uri, "demo")
    assert not (again.work_dir / "sweep.yaml").exists()
    again.pull("sweep.yaml", "tensorboard", "not-there")
    assert (again.work_dir / "sweep.yaml").read_text() == "name: demo\n"
    assert (again.work_dir / "tensorboard" / "events").read_text() == "scalars"
    assert again.exists("sweep.yaml") and not again.exists("results.parquet")
    local = fetch_to_local(again.url("sweep.yaml"), tmp_path / "fetched")
    assert local.read_text() == "name: demo\n"
    again.close()


def test_a_uri_pyarrow_cannot_open_is_one_line() -> None:
    with pytest.raises(ProxylessError, match="not a storage URI pyarrow opens"):
        RunStorage("nosuch://bucket/runs", "demo")


def test_a_file_beside_another_keeps_the_uri_query(tmp_path: Path) -> None:
    """How export / evaluate find a weights file's record, on a path or in a bucket."""
    uri = "s3://bucket/run/nets/t1/weights.pt?endpoint_override=localhost:9000"
    assert file_name(uri) == "weights.pt"
    assert (
        beside(uri, "w.json") == "s3://bucket/run/nets/t1/w.json?endpoint_override=localhost:9000"
    )
    assert beside(str(tmp_path / "w.pt"), "w.json") == str(tmp_path / "w.json")
    (tmp_path / "there.json").write_text("{}")
    for location in (str(tmp_path / "there.json"), (tmp_path / "there.json").as_uri()):
        got = fetch_if_present(location, tmp_path / "fetched")
        assert got is not None and got.read_text() == "{}"
        assert fetch_if_present(beside(location, "absent.json"), tmp_path / "fetched") is None


def test_copy_in_skips_only_the_optional_files_a_folder_lacks(tmp_path: Path) -> None:
    from pyarrow import fs

    source = tmp_path / "checkpoint"
    source.mkdir()
    (source / "a").write_text("a")
    store = RunStorage(str(tmp_path / "runs"), "demo")
    store.copy_in(fs.LocalFileSystem(), str(source), ["a", "b"], "nets/x", optional=["b"])
    assert sorted(p.name for p in (store.work_dir / "nets" / "x").iterdir()) == ["a"]
    with pytest.raises(ProxylessError):  # a required file that is not there
        store.copy_in(fs.LocalFileSystem(), str(source), ["a", "b"], "nets/y")
