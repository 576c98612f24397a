"""Source code and config files as plain text under their file name; no prose parsing."""

from __future__ import annotations

from pathlib import Path

from ingest.loaders.decoding import decode_text
from ingest.models import Section

CODE_SUFFIXES = (
    ".py", ".pyi", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".java", ".kt", ".kts", ".scala", ".go", ".rs",
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".cs", ".swift", ".rb", ".php", ".pl", ".lua", ".r",
    ".sh", ".bash", ".zsh", ".ps1", ".bat", ".sql", ".css", ".scss", ".vue", ".svelte", ".toml", ".ini",
    ".cfg", ".conf", ".proto", ".gradle", ".tf", ".dart", ".ex", ".exs", ".erl", ".hs", ".clj", ".jl",
)


def load_code(data: bytes, path: Path) -> list[Section]:
    return [Section(text=decode_text(data), heading=path.name)]
