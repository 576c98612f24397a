"""Upload names from clients are untrusted: they become plain relative paths inside the KB's folder."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rag.api.uploads import UploadStore, safe_relative_name
from rag.errors import InvalidInput


@pytest.mark.parametrize(("given", "expected"), [
    ("report.pdf", "report.pdf"),
    ("../../x", "x"),
    ("/etc/passwd", "etc/passwd"),
    ("..\\..\\windows\\evil.txt", "windows/evil.txt"),
    ("C:\\Users\\me\\notes.md", "C_/Users/me/notes.md"),
    ("docs/./a/../b.md", "docs/a/b.md"),
    (".env", "_env"),
    ("sub/.hidden/file.txt", "sub/_hidden/file.txt"),
    ("bad\x00name\n.txt", "bad_name_.txt"),
    ("成都/美食.txt", "成都/美食.txt"),
    ("trailing.", "trailing"),
])
def test_safe_relative_name(given: str, expected: str) -> None:
    assert safe_relative_name(given) == expected


@pytest.mark.parametrize("given", ["", "..", "../..", "/", "./.", None])
def test_names_with_nothing_left_are_rejected(given: str | None) -> None:
    with pytest.raises(InvalidInput):
        safe_relative_name(given)


def test_store_writes_inside_the_kb_folder(tmp_path: Path) -> None:
    store = UploadStore(tmp_path / "uploads")
    target = store.save("kb", safe_relative_name("../../../../outside.txt"), io.BytesIO(b"data"))
    assert target == (tmp_path / "uploads" / "kb" / "outside.txt").resolve()
    assert target.read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["outside.txt"]
    with pytest.raises(InvalidInput):
        store.save("kb", "../escape.txt", io.BytesIO(b"x"))  # a raw name that skipped sanitising
