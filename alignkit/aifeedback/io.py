"""Small file helpers for multi-stage jobs: atomic JSONL/JSON writes, reading back, fingerprints.

Every stage file is written to a temporary name next to its target and renamed into place, so a file
that exists is complete: an interrupted job never leaves half a stage behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _atomic_write_text(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write ``rows`` as JSON lines, atomically."""
    return _atomic_write_text(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write one JSON document (indented), atomically."""
    return _atomic_write_text(Path(path), json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    p = Path(path)
    if not p.is_file():
        return default
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return default


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable ``parts`` (settings, upstream file digests, ...)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (first 16 hex digits)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
