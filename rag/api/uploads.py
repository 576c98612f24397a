"""Kept for importers of the old path: the upload store lives in ``rag.uploads`` (the facade uses it too)."""

from rag.uploads import UploadStore, check_batch, safe_relative_name

__all__ = ["UploadStore", "check_batch", "safe_relative_name"]
