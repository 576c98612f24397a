"""Real `rag serve` processes shared by test modules whose servers have the same settings.

Each server starts on its first use and stops at the end of the test session (the ``shared_servers``
fixture in conftest.py). Modules that share one use their own KB names, so their tests don't meet; under
xdist they are put in one group (conftest.XDIST_GROUPS), so they also share it there.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.api_server import RunningServer, start_server


class SharedServers:
    def __init__(self) -> None:
        self._running: dict[str, RunningServer] = {}
        self._env: dict[str, dict[str, str]] = {}
        self._root = Path(tempfile.mkdtemp(prefix="rag-shared-servers-"))

    def get(self, name: str, env: dict[str, str] | None = None) -> RunningServer:
        """The server called ``name``, started with ``env`` on first use (later calls must pass the same)."""
        assert self._env.setdefault(name, env or {}) == (env or {}), f"shared server {name!r} has other settings"
        running = self._running.get(name)
        if running is not None and running.process.poll() is None:
            return running
        running = start_server(self._root / name / "home", env=env)
        self._running[name] = running
        return running

    def stop_all(self) -> None:
        for running in self._running.values():
            running.stop()
        self._running.clear()
        shutil.rmtree(self._root, ignore_errors=True)


# The keyless server with default settings: test_api_chat (KB "handbook") and test_security_browser.
PLAIN = "plain"
