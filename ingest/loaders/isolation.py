"""Run a loader in a long-lived worker process, so a file that hangs its parser is killed, not waited on.

Only the formats with heavy native or page-by-page parsing (PDF, images) go through it; the worker is
started once and reused, so a normal file pays a pipe round trip, not a process start. The worker is a
plain ``python -m ingest.loaders.worker`` subprocess (not multiprocessing's spawn, which re-imports
the caller's ``__main__`` and fails under ``python -c``, notebooks and some servers).
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from ingest.errors import CorruptFile, FileRejected
from ingest.loaders.limits import LoadLimits, TimedOut
from ingest.models import Section

# The worker checks the budget itself; this is how much longer the parent waits before killing it.
KILL_GRACE_S = 5.0
_HEADER = struct.Struct("<Q")


def send_frame(stream: IO[bytes], value: Any) -> None:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def recv_frame(stream: IO[bytes]) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("worker closed its pipe")
    (size,) = _HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("worker closed its pipe mid-reply")
    return pickle.loads(payload)  # noqa: S301 - our own worker's replies


class IsolatedLoader:
    def __init__(self, worker_module: str = "ingest.loaders.worker", kill_grace_s: float = KILL_GRACE_S) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._worker_module = worker_module
        self._kill_grace_s = kill_grace_s

    def load(self, suffix: str, data: bytes, path: Path, limits: LoadLimits) -> list[Section]:
        with self._lock:
            process = self._worker()
            assert process.stdin is not None and process.stdout is not None
            try:
                send_frame(process.stdin, (suffix, data, str(path), limits))
                ready, _, _ = select.select([process.stdout], [], [], limits.timeout_s + self._kill_grace_s)
                if not ready:
                    self.close()
                    raise TimedOut(f"took longer than {limits.timeout_s:g} s (the per-file time budget)")
                status, payload = recv_frame(process.stdout)
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                self.close()
                raise CorruptFile("the parser process died on this file (crash or out of memory)") from exc
        if status == "ok":
            return payload
        if isinstance(payload, FileRejected):
            raise payload
        raise CorruptFile(str(payload))

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()

    def _worker(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self.close()
            package_root = str(Path(__file__).resolve().parents[2])
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
            self._process = subprocess.Popen(
                [sys.executable, "-m", self._worker_module],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            )
        return self._process


_shared = IsolatedLoader()
atexit.register(_shared.close)


def isolated_load(suffix: str, data: bytes, path: Path, limits: LoadLimits) -> list[Section]:
    return _shared.load(suffix, data, path, limits)
