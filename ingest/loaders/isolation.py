"""Run a loader in a long-lived worker process, so a file that hangs its parser is killed, not waited on.

Only the formats with heavy native or page-by-page parsing (PDF, images) go through it; the worker is
started once and reused, so a normal file pays a pipe round trip, not a process start. The worker is a
plain ``python -m ingest.loaders.worker`` subprocess (not multiprocessing's spawn, which re-imports
the caller's ``__main__`` and fails under ``python -c``, notebooks and some servers).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import struct
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from ingest.errors import CorruptFile, EmptyFile, EncryptedFile, FileRejected, UnsupportedFormat
from ingest.loaders.limits import LoadLimits, TimedOut, TooLarge
from ingest.models import Section

# The worker checks the budget itself; this is how much longer the parent waits before killing it.
KILL_GRACE_S = 5.0
# A frame: the sizes of a JSON header and of a binary payload, then both.
_SIZES = struct.Struct("<QQ")
_REJECTIONS = {cls.__name__: cls for cls in (FileRejected, UnsupportedFormat, EmptyFile, EncryptedFile,
                                             CorruptFile, TooLarge, TimedOut)}


def send_frame(stream: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> None:
    encoded = json.dumps(header, ensure_ascii=False).encode("utf-8")
    stream.write(_SIZES.pack(len(encoded), len(payload)) + encoded + payload)
    stream.flush()


def recv_frame(stream: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    sizes = stream.read(_SIZES.size)
    if len(sizes) < _SIZES.size:
        raise EOFError("worker closed its pipe")
    header_size, payload_size = _SIZES.unpack(sizes)
    header = stream.read(header_size)
    payload = stream.read(payload_size)
    if len(header) < header_size or len(payload) < payload_size:
        raise EOFError("worker closed its pipe mid-frame")
    return json.loads(header), payload


def rejection_to_json(exc: FileRejected) -> dict[str, Any]:
    return {"status": "rejected", "kind": type(exc).__name__, "reason": exc.reason}


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
                send_frame(process.stdin, {"suffix": suffix, "path": str(path), "limits": asdict(limits)}, data)
                ready, _, _ = select.select([process.stdout], [], [], limits.timeout_s + self._kill_grace_s)
                if not ready:
                    self.close()
                    raise TimedOut(f"took longer than {limits.timeout_s:g} s (the per-file time budget)")
                reply, _ = recv_frame(process.stdout)
            except (EOFError, OSError, ValueError) as exc:
                self.close()
                raise CorruptFile("the parser process died on this file (crash or out of memory)") from exc
        if reply["status"] == "ok":
            return [Section(**section) for section in reply["sections"]]
        if reply["status"] == "rejected":
            raise _REJECTIONS.get(reply["kind"], FileRejected)(reply["reason"])
        raise CorruptFile(reply["message"])

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
