"""The `proxyless arch` commands, through `main()` and as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from tests.test_official import REFERENCE

ROOT = Path(__file__).resolve().parents[1]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.fixtures
@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_arch_stats_json_on_official_configs(fixtures_dir: Path, capsys, name: str) -> None:
    code, out, _ = _run(capsys, "arch", "stats", str(fixtures_dir / f"{name}.config"), "--json")
    assert code == 0
    stats = json.loads(out)
    assert (stats["resolution"], stats["params"], stats["macs"]) == REFERENCE[name]


def test_derive_then_stats(tmp_path: Path, capsys) -> None:
    path = tmp_path / "arch.json"
    code, out, _ = _run(
        capsys, "arch", "derive", "--space", "pyramid_tree", "--B", "1", "--F", "64",
        "--out", str(path), "--json",
    )  # fmt: skip
    assert code == 0
    derived = json.loads(out)
    assert derived["searchable_layers"] == 36 and path.exists()
    code, out, _ = _run(capsys, "arch", "stats", str(path), "--json")
    stats = json.loads(out)
    assert code == 0 and stats["params"] == derived["params"] and stats["macs"] == derived["macs"]
    code, out, _ = _run(capsys, "arch", "stats", str(path), "--resolution", "64", "--json")
    assert json.loads(out)["macs"] > 3 * stats["macs"]
    code, out, _ = _run(capsys, "arch", "stats", str(path))
    assert code == 0 and "MACs" in out and "pyramid_tree" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["arch", "stats", "{missing}"],
        ["arch", "stats", "{bad}"],
        ["arch", "stats", "{bad}", "--resolution", "zero"],
        ["arch", "stats"],
        ["arch", "launch"],
        ["arch", "derive", "--space", "mobilenet", "--B", "0"],
        ["arch", "derive", "--space", "hyperspace"],
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, capsys, argv: list[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "ProxylessNASNets"')  # truncated
    argv = [a.format(missing=tmp_path / "nope.json", bad=bad) for a in argv]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("proxyless: error:")


@pytest.mark.fixtures
def test_wrong_resolution_for_a_fixed_pool_net(fixtures_dir: Path, capsys) -> None:
    path = fixtures_dir / "proxyless_cifar.config"
    code, _, err = _run(capsys, "arch", "stats", str(path), "--resolution", "64")
    assert code == 2 and "resolution 64" in err and len(err.strip().splitlines()) == 1


def test_real_process_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "arch", "stats", str(bad)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
