"""How a file is written atomically (the one place), plus JSON/JSONL reading and fingerprints.

Every file is written to a temporary name next to its target and renamed into place, so a file that
exists is complete: an interrupted job never leaves half a file behind. (Checkpoint and model
directories are written the same way, a directory at a time, by the engine and the model loader.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class OutputPathError(ValueError):
    """An output path that cannot be written (see :func:`check_output_path`)."""


def check_output_path(path: str | os.PathLike, what: str, directory: bool = False) -> None:
    """Refuse an output ``path`` before any work is done for it: a file's path that is an existing
    directory, a directory's path that is an existing file, or either inside an existing file (writing
    would fail only at the end, after the work). Nothing is touched. ``what`` names the path in the
    message (``--output``, ``output_dir``)."""
    p = Path(path).expanduser()
    kind = "a directory" if directory else "a file"
    if not directory and p.is_dir():
        raise OutputPathError(f"{what} '{path}' is an existing directory, not {kind} (left untouched); "
                              f"choose another {what}")
    for q in (p, *p.parents) if directory else p.parents:  # a file that exists is replaced atomically
        if q.is_dir():
            return
        if q.exists() or q.is_symlink():
            where = f"is an existing file, not {kind}" if q == p else f"lies inside '{q}', an existing file"
            raise OutputPathError(f"{what} '{path}' {where} (left untouched); choose another {what}")


def output_path_problem(path: str | os.PathLike | None, what: str, directory: bool = False) -> str | None:
    """:func:`check_output_path`'s message, or None when ``path`` is fine (or not given): for a
    command's argument checks (``error: MESSAGE``, exit 2) before it loads anything."""
    if path is None:
        return None
    try:
        check_output_path(path, what, directory)
    except OutputPathError as e:
        return str(e)
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer (``save_file(..., tmp)``); on success it is
    renamed onto ``path``, on an error it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)



def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write ``rows`` as JSON lines, atomically."""
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write one JSON document (indented), atomically."""
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


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
