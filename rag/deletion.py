"""Deleting a KB is immediate for the caller: the name is marked at once and refused from then on
(``KBDeleting``, 409), while its data is removed in the background; the name is free again afterwards."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from rag.errors import KBDeleting

log = logging.getLogger(__name__)


class KBDeletions:
    """The KBs of this process being deleted, each with the thread removing it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Thread] = {}

    def check(self, name: str) -> None:
        if name in self._pending:
            raise KBDeleting(f"knowledge base '{name}' is being deleted; its name is free again in a moment")

    def names(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._pending)

    def start(self, name: str, remove: Callable[[], None], wait: bool) -> None:
        """Mark ``name`` and run ``remove`` (now, or with ``wait=False`` on a background thread); the mark
        is lifted when ``remove`` ends, whether it succeeded or not."""
        def run() -> None:
            try:
                remove()
            except Exception:  # logged: the KB then reappears (its catalog rows were not deleted)
                log.exception("removing knowledge base '%s' failed", name)
                if wait:
                    raise
            finally:
                with self._lock:
                    self._pending.pop(name, None)

        with self._lock:
            self.check(name)
            thread = threading.Thread(target=run, name=f"rag-delete-{name}", daemon=True)
            self._pending[name] = thread
        if wait:
            run()
        else:
            thread.start()

    def join(self, name: str, timeout_s: float | None = None) -> None:
        """Wait for the background removal of ``name`` (tests, and a graceful shutdown)."""
        with self._lock:
            thread = self._pending.get(name)
        if thread is not None and thread.ident is not None:
            thread.join(timeout_s)
