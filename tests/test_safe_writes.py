"""Safe writes: a process killed in the middle of writing leaves the previous file intact.

A child process rewrites one file over and over (checkpoint, latency table, results table,
text); the parent kills it with SIGKILL the moment a temp file of a write is visible — i.e.
mid-write — and then loads the file: it must be a complete earlier version.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WRITER = r"""
import sys, torch
from pathlib import Path
kind, path = sys.argv[1], Path(sys.argv[2])
big = torch.arange(4_000_000, dtype=torch.float32)
i = 0
while True:
    i += 1
    if kind == "checkpoint":
        from nas_core.checkpoint import save_checkpoint
        save_checkpoint(path, {"version": i, "big": big + i})
    elif kind == "table":
        from nas_core.latency.table import LatencyEntry, LatencyTable
        t = LatencyTable()
        for k in range(20000):
            t.add(f"Logits-input:1x1x{k + 1}-output:10", LatencyEntry(1, float(i), 0.0))
        t.save(path)
    elif kind == "results":
        from orchestrator.results import write_results
        rows = [{"kind": "search", "trial_id": f"{i}-{k}", "architecture": "x" * 200}
                for k in range(20000)]
        write_results(path, rows)
    else:
        from nas_core.io import atomic_write_text
        atomic_write_text(path, (str(i) + "\n") * 2_000_000)
    print(i, flush=True)
"""


def _load(kind: str, path: Path) -> None:
    if kind == "checkpoint":
        from nas_core.checkpoint import load_checkpoint

        state = load_checkpoint(path)
        assert float(state["big"][0]) == state["version"]
    elif kind == "table":
        from nas_core.latency.table import LatencyTable

        table = LatencyTable.load(path)
        assert len(table.entries) == 20000
        assert len({e.mean for e in table.entries.values()}) == 1
    elif kind == "results":
        from orchestrator.results import read_results

        rows = read_results(path)
        assert len(rows) == 20000 and len({r["trial_id"].split("-")[0] for r in rows}) == 1
    else:
        lines = path.read_text().splitlines()
        assert len(lines) == 2_000_000 and len(set(lines)) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("checkpoint", "checkpoint.pt"),
        ("table", "latency.parquet"),
        ("results", "results.parquet"),
        ("text", "summary.json"),
    ],
)
def test_kill_during_a_write_keeps_the_previous_file(tmp_path: Path, kind: str, name: str) -> None:
    path = tmp_path / name
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, kind, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # one complete version exists
        deadline = time.time() + 60
        while True:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
            if temps:
                os.kill(proc.pid, signal.SIGKILL)  # mid-write: a temp file is being filled
                break
            assert time.time() < deadline, "never caught a write in progress"
    finally:
        proc.kill()
        proc.wait()
    _load(kind, path)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_get_the_mode_a_plain_open_gives(tmp_path: Path, umask: int) -> None:
    """Not mkstemp's 0600: teammates reading a shared run folder must see the results."""
    from nas_core.checkpoint import save_checkpoint
    from nas_core.io import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "summary.json", "{}\n")
        save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1})
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    want = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert want == 0o666 & ~umask
    for name in ("summary.json", "checkpoint.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == want, name
