"""Run a loader in a long-lived worker process, so a file that hangs its parser is killed, not waited on.

Only the formats with heavy native or pure-Python page parsing (PDF, images) go through it; the worker
is started once and reused, so a normal file pays a pipe round trip, not a process start.
"""

from __future__ import annotations

import atexit
import multiprocessing
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ingest.errors import CorruptFile, FileRejected
from ingest.loaders.limits import LoadLimits, TimedOut
from ingest.models import Section

# The worker checks the budget itself; this is how much longer the parent waits before killing it.
KILL_GRACE_S = 5.0


class IsolatedLoader:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None

    def load(self, suffix: str, data: bytes, path: Path, limits: LoadLimits) -> list[Section]:
        with self._lock:
            conn = self._connection()
            try:
                conn.send((suffix, data, str(path), limits))
                if not conn.poll(limits.timeout_s + KILL_GRACE_S):
                    self.close()
                    raise TimedOut(f"took longer than {limits.timeout_s:g} s (the per-file time budget)")
                status, payload = conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                self.close()
                raise CorruptFile("the parser crashed on this file") from exc
        if status == "ok":
            return payload
        if isinstance(payload, FileRejected):
            raise payload
        raise CorruptFile(str(payload))

    def close(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._process = None
        self._conn = None

    def _connection(self) -> Connection:
        if self._process is None or not self._process.is_alive():
            self.close()
            context = multiprocessing.get_context("spawn")  # fork would copy a process holding model threads
            parent, child = context.Pipe()
            self._process = context.Process(target=_serve, args=(child,), daemon=True, name="rag-ingest-worker")
            self._process.start()
            child.close()
            self._conn = parent
        assert self._conn is not None
        return self._conn


def _serve(conn: Connection) -> None:
    from ingest.loaders.formats import LOADERS
    from ingest.loaders.limits import using_limits
    from ingest.offline import configure_unstructured

    configure_unstructured()
    while True:
        try:
            suffix, data, path, limits = conn.recv()
        except EOFError:
            return
        _kind, loader = LOADERS[suffix]
        try:
            with using_limits(limits):
                reply: tuple[str, Any] = ("ok", loader(data, Path(path)))
        except FileRejected as exc:
            reply = ("rejected", exc)
        except Exception as exc:  # the parent turns this into a CorruptFile naming the parser's error
            lines = str(exc).strip().splitlines()
            detail = lines[0][:200] if lines else "no details"
            reply = ("error", f"could not parse {_kind.upper()}: {type(exc).__name__}: {detail}")
        conn.send(reply)


_shared = IsolatedLoader()
atexit.register(_shared.close)


def isolated_load(suffix: str, data: bytes, path: Path, limits: LoadLimits) -> list[Section]:
    return _shared.load(suffix, data, path, limits)
