"""Errors raised while turning one file into text. The ingest run reports them per file and goes on."""

from __future__ import annotations


class FileRejected(Exception):
    """The file cannot be indexed; ``reason`` is a one-line explanation for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedFormat(FileRejected):
    pass


class EmptyFile(FileRejected):
    pass


class EncryptedFile(FileRejected):
    pass


class CorruptFile(FileRejected):
    pass


class TooLarge(FileRejected):
    """Over a limit on what the file is or becomes: pages, inflated size, pixels, text, chunks, nesting, memory."""


class OutOfMemory(TooLarge):
    """Parsing needed more memory than the parser worker may take; the worker is restarted after it."""


class TimedOut(FileRejected):
    pass
