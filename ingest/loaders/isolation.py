"""Parse files in a long-lived worker process, so a file that hangs or bloats its parser is stopped there.

Every format goes through it: untrusted bytes are never parsed in the caller (the CLI, the server).
The worker runs the whole pipeline for one file (sniffing, the loader, salvage, the text limit) under a
time budget (the parent kills it ``KILL_GRACE_S`` after ``timeout_s``) and a memory limit
(``RLIMIT_DATA`` = ``max_parser_memory_bytes``, inherited by LibreOffice, pandoc and Tesseract). It is
started once and reused, so a file pays a pipe round trip (~2 ms for a small Markdown file, see
docs/limits.md), not a process start. The worker is a plain ``python -m ingest.loaders.worker``
subprocess (not multiprocessing's spawn, which re-imports the caller's ``__main__`` and fails under
``python -c``, notebooks and some servers).
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
from ingest.loaders.limits import MB, LoadLimits, OutOfMemory, TimedOut, TooLarge
from ingest.models import ParsedDocument, Section

# The worker checks the budget itself; this is how much longer the parent waits before killing it.
KILL_GRACE_S = 5.0
# A frame: the sizes of a JSON header and of a binary payload, then both.
_SIZES = struct.Struct("<QQ")
_REJECTIONS = {cls.__name__: cls for cls in (FileRejected, UnsupportedFormat, EmptyFile, EncryptedFile,
                                             CorruptFile, TooLarge, OutOfMemory, TimedOut)}
_in_worker = False


def in_worker() -> bool:
    """True inside the worker process: a mail's attachments are parsed there in-process, not in another worker."""
    return _in_worker


def mark_worker() -> None:
    global _in_worker
    _in_worker = True


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

    def parse(self, path: Path, source: str, data: bytes, limits: LoadLimits) -> ParsedDocument:
        with self._lock:
            process = self._worker()
            assert process.stdin is not None and process.stdout is not None
            try:
                request = {"path": str(path), "source": source, "limits": asdict(limits)}
                send_frame(process.stdin, request, data)
                ready, _, _ = select.select([process.stdout], [], [], limits.timeout_s + self._kill_grace_s)
                if not ready:
                    self.close()
                    raise TimedOut(f"took longer than {limits.timeout_s:g} s (the per-file time budget)")
                reply, _ = recv_frame(process.stdout)
                if reply.get("kind") == OutOfMemory.__name__:
                    self.close()  # the worker exits after such a file; the next one must not find it half gone
            except (EOFError, OSError, ValueError) as exc:
                self.close()
                raise CorruptFile(
                    "the parser process died on this file (a crash, or past its "
                    f"{limits.max_parser_memory_bytes / MB:g} MB memory limit)"
                ) from exc
        if reply["status"] == "ok":
            document = reply["document"]
            sections = [Section(**section) for section in document.pop("sections")]
            return ParsedDocument(sections=sections, path=path, **document)
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


def isolated_parse(path: Path, source: str, data: bytes, limits: LoadLimits) -> ParsedDocument:
    return _shared.parse(path, source, data, limits)
