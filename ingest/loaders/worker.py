"""The isolated loader's worker process: reads {suffix, path, limits} + file bytes, replies with sections (JSON)."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from ingest.errors import FileRejected
from ingest.loaders.isolation import recv_frame, rejection_to_json, send_frame


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    from ingest.loaders.formats import LOADERS
    from ingest.loaders.limits import LoadLimits, using_limits
    from ingest.offline import configure_unstructured

    configure_unstructured()
    while True:
        try:
            request, data = recv_frame(requests)
        except EOFError:
            return
        kind, loader = LOADERS[request["suffix"]]
        try:
            with using_limits(LoadLimits(**request["limits"])):
                sections = loader(data, Path(request["path"]))
            reply: dict[str, Any] = {"status": "ok", "sections": [asdict(section) for section in sections]}
        except FileRejected as exc:
            reply = rejection_to_json(exc)
        except Exception as exc:  # the parent turns this into a CorruptFile naming the parser's error
            lines = str(exc).strip().splitlines()
            detail = lines[0][:200] if lines else "no details"
            reply = {"status": "error", "message": f"could not parse {kind.upper()}: {type(exc).__name__}: {detail}"}
        send_frame(replies, reply)


if __name__ == "__main__":
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)
