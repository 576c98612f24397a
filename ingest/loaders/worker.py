"""The isolated loader's worker process: reads (suffix, bytes, path, limits) frames, replies with sections."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Any

from ingest.errors import FileRejected
from ingest.loaders.isolation import recv_frame, send_frame


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    from ingest.loaders.formats import LOADERS
    from ingest.loaders.limits import using_limits
    from ingest.offline import configure_unstructured

    configure_unstructured()
    while True:
        try:
            suffix, data, path, limits = recv_frame(requests)
        except EOFError:
            return
        kind, loader = LOADERS[suffix]
        try:
            with using_limits(limits):
                reply: tuple[str, Any] = ("ok", loader(data, Path(path)))
        except FileRejected as exc:
            reply = ("rejected", exc)
        except Exception as exc:  # the parent turns this into a CorruptFile naming the parser's error
            lines = str(exc).strip().splitlines()
            detail = lines[0][:200] if lines else "no details"
            reply = ("error", f"could not parse {kind.upper()}: {type(exc).__name__}: {detail}")
        send_frame(replies, reply)


if __name__ == "__main__":
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)
