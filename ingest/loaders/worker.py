"""The isolated parser's worker process: reads {path, source, limits} + file bytes, replies with the document (JSON)."""

from __future__ import annotations

import os
import resource
import sys
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from ingest.errors import FileRejected, OutOfMemory
from ingest.loaders.isolation import mark_worker, recv_frame, rejection_to_json, send_frame


def limit_memory(max_bytes: int) -> None:
    """Cap the data segment (heap and anonymous mappings, not shared libraries): a parse past it gets a
    MemoryError here, and a converter it starts gets its own allocation failure, instead of the machine's
    memory being spent. Only the soft limit is lowered, so the next file may raise it again."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = max_bytes if hard == resource.RLIM_INFINITY else min(max_bytes, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    from ingest.loaders import parse_document
    from ingest.loaders.limits import LoadLimits, out_of_memory

    mark_worker()
    while True:
        try:
            request, data = recv_frame(requests)
        except EOFError:
            return
        limits = LoadLimits(**request["limits"])
        restart = False
        try:
            limit_memory(limits.max_parser_memory_bytes)
            document = parse_document(Path(request["path"]), request["source"], data, limits)
            body = asdict(document)
            del body["path"]
            reply: dict[str, Any] = {"status": "ok", "document": body}
        except FileRejected as exc:
            reply = rejection_to_json(exc)
            restart = isinstance(exc, OutOfMemory)  # a heap that hit its limit is not trusted with the next file
        except MemoryError:
            reply, restart = rejection_to_json(out_of_memory(limits)), True
        except Exception as exc:  # the parent turns this into a CorruptFile naming the parser's error
            lines = str(exc).strip().splitlines()
            detail = lines[0][:200] if lines else "no details"
            reply = {"status": "error", "message": f"could not parse the file: {type(exc).__name__}: {detail}"}
        del data
        send_frame(replies, reply)
        if restart:
            return


if __name__ == "__main__":
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)
