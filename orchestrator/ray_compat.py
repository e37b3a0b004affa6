"""Every Ray Tune behaviour the orchestrator relies on that Ray does not document, each with
why no public API would do.

Read from Ray 2.60 (the version `pyproject.toml` pins); a Ray upgrade starts here, and with
`cluster/ray_compat.py`. Nothing else in the orchestrator may import `ray._private`,
`ray.*._internal` or an underscored Ray name (`tests/test_layering.py` fails otherwise).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


def fit_noting_stops(tuner: Any) -> tuple[Any, bool]:
    """`tuner.fit()` and whether the user stopped it (Ctrl-C, SIGINT), also when every trial
    had already finished, which leaves no unfinished trial to tell by.

    Tune (2.60) saves the SIGINT handler it finds, installs its own for the fit, and puts the
    saved one back when a stop signal arrives (read in `ray/tune/tune.py`): Tune says whether
    it was stopped in no public way, so we install a marker first and find it back in place
    exactly when Tune took a stop. A second Ctrl-C raises KeyboardInterrupt, as Python's own
    handler would."""
    if (
        threading.current_thread() is not threading.main_thread()
        or os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") != "0"
    ):
        return tuner.fit(), False

    def marker(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, marker)
    try:
        grid = tuner.fit()
        stopped = signal.getsignal(signal.SIGINT) is marker
    finally:
        signal.signal(signal.SIGINT, previous)
    return grid, stopped
