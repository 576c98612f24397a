"""`make run` on a machine where it cannot install Tesseract and LibreOffice serves anyway and says so once."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_missing_format_tools_are_named_with_the_command_that_installs_them(tmp_path: Path) -> None:
    # An empty PATH: no apt-get, no sudo, no tesseract, no soffice, and `id` unknown (so not root).
    result = subprocess.run([str(shutil.which("make")), "--no-print-directory", "-s", "run-deps"], cwd=ROOT,
                            env={"PATH": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    assert "OCR" in lines[0] and "legacy Office (doc, ppt, xls)" in lines[0]
    assert lines[0].endswith("Turn them on with: sudo make format-deps")


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("tesseract") is None or shutil.which("soffice") is None,
                    reason="needs make, tesseract and soffice")
def test_nothing_is_said_when_the_tools_are_there() -> None:
    result = subprocess.run(["make", "--no-print-directory", "-s", "run-deps"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == ""
