"""`nas_core.environ.environment`: set for a block, the caller's values after it."""

from __future__ import annotations

import os

import pytest

from nas_core.environ import environment


def test_values_hold_inside_and_the_callers_come_back(monkeypatch) -> None:
    monkeypatch.setenv("PROXYLESS_T_SET", "mine")
    monkeypatch.delenv("PROXYLESS_T_UNSET", raising=False)
    with environment({"PROXYLESS_T_SET": "a", "PROXYLESS_T_UNSET": "b"}):
        assert os.environ["PROXYLESS_T_SET"] == "a"
        assert os.environ["PROXYLESS_T_UNSET"] == "b"
    assert os.environ["PROXYLESS_T_SET"] == "mine"
    assert "PROXYLESS_T_UNSET" not in os.environ


def test_keep_existing_lets_the_users_value_win_and_restores_after_an_error(monkeypatch) -> None:
    monkeypatch.setenv("PROXYLESS_T_SET", "mine")
    monkeypatch.delenv("PROXYLESS_T_UNSET", raising=False)
    values = {"PROXYLESS_T_SET": "a", "PROXYLESS_T_UNSET": "b"}
    with pytest.raises(RuntimeError, match="inside"), environment(values, keep_existing=True):
        assert os.environ["PROXYLESS_T_SET"] == "mine"
        assert os.environ["PROXYLESS_T_UNSET"] == "b"
        raise RuntimeError("inside")
    assert os.environ["PROXYLESS_T_SET"] == "mine"
    assert "PROXYLESS_T_UNSET" not in os.environ
