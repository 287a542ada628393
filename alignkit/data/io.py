"""Reading data files into plain Python rows, each with its 1-based row number.

Supported inputs (README "Data formats"):

* ``.jsonl`` -- one JSON object per line. The row number is the 1-based *line number* in the file:
  blank lines are skipped but still counted, so an error points at the line an editor shows.
* ``.json`` -- a list of objects, or an object holding that list under ``"data"`` or ``"rows"``
  (row = 1-based index in the list). A ``.json`` file that is really JSON Lines is read as such.
* ``.csv`` -- a header line, then one row per record (row = 1-based data record, header not
  counted). Cells are strings, with two conversions: an empty cell is a missing value (``None``),
  and a cell holding a JSON list of objects (``[{"role": "user", ...}]``) is parsed into that list,
  so chat messages can live in a CSV. ``true``/``false``/``1``/``0`` stay strings; the schema layer
  accepts them for boolean fields such as ``label``.
* ``.parquet`` -- read with pyarrow (row = 1-based row index).
* a directory written by ``datasets.Dataset.save_to_disk`` (or a ``DatasetDict``: its ``train``
  split, or its only split), read with ``datasets.load_from_disk``.
* ``hf:org/name[:split]`` -- a Hugging Face Hub dataset (split ``train`` by default), read with
  ``datasets`` from its snapshot in the local Hugging Face cache, downloaded only when ``HF_HUB_OFFLINE``
  allows it (:mod:`alignkit.hub`). The row number is the 1-based index in the split.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUPPORTED = ".jsonl, .json, .csv, .parquet, a directory written by datasets' save_to_disk, or hf:org/name[:split]"
HUB_PREFIX = "hf:"


class DataError(ValueError):
    """A problem with a data file that the user can fix.

    The message names the file, the 1-based row and the field where they are known, e.g.
    ``data.jsonl: row 7: field 'chosen': expected a non-empty string or a list of chat messages``.
    The parts are also available as attributes ``path``, ``row``, ``field`` and ``reason``.
    """

    def __init__(self, reason: str, *, path: str | Path | None = None, row: int | None = None,
                 field: str | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        self.row = row
        self.field = field
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if row is not None:
            parts.append(f"row {row}")
        if field is not None:
            parts.append(f"field '{field}'")
        parts.append(reason)
        super().__init__(": ".join(parts))

    def with_location(self, path: str | Path | None = None, row: int | None = None) -> DataError:
        """A copy with the file and row filled in where they were missing."""
        return DataError(self.reason, path=self.path if self.path is not None else path,
                         row=self.row if self.row is not None else row, field=self.field)


Record = tuple[int, "dict[str, Any] | DataError"]


def iter_records(path: str | Path) -> Iterator[Record]:
    """Yield ``(row_number, row_dict)`` for each row, or ``(row_number, DataError)`` for a row that
    cannot be read (invalid JSON line, not an object). File-level problems (missing file, unknown
    type, unreadable file) raise :class:`DataError` straight away."""
    if isinstance(path, str) and path.startswith(HUB_PREFIX):
        yield from _iter_hub_dataset(path)
        return
    p = Path(path)
    if not p.exists():
        raise DataError("data file not found", path=path)
    if p.is_dir():
        yield from _iter_saved_dataset(p, path)
        return
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        yield from _iter_jsonl(p, path)
    elif suffix == ".json":
        yield from _iter_json(p, path)
    elif suffix == ".csv":
        yield from _iter_csv(p, path)
    elif suffix == ".parquet":
        yield from _iter_parquet(p, path)
    else:
        raise DataError(f"unsupported data file type '{p.suffix or p.name}'; expected {SUPPORTED}", path=path)


def read_rows(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """All rows of a data file as ``(row_number, row_dict)``; the first unreadable row raises
    :class:`DataError` naming the file and row."""
    rows = []
    for row_no, rec in iter_records(path):
        if isinstance(rec, DataError):
            raise rec
        rows.append((row_no, rec))
    return rows


# ----------------------------------------------------------------------------- formats


def _not_object(path, row: int, value: Any) -> DataError:
    return DataError(f"expected a JSON object with named fields, got {type(value).__name__}", path=path, row=row)


def _open_text(p: Path):
    return p.open("r", encoding="utf-8-sig", newline=None)


def _iter_jsonl(p: Path, path) -> Iterator[Record]:
    try:
        f = _open_text(p)
    except OSError as e:
        raise DataError(f"cannot read file: {e}", path=path) from None
    with f:
        try:
            # Iterating a text file splits on newlines only, never on U+2028 inside a JSON string.
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    yield line_no, DataError(f"not valid JSON ({e.msg} at column {e.colno})", path=path, row=line_no)
                    continue
                yield line_no, value if isinstance(value, dict) else _not_object(path, line_no, value)
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text: {e}", path=path) from None


def _iter_json(p: Path, path) -> Iterator[Record]:
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read file: {e}", path=path) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # several top-level values: the file is JSON Lines named .json
            yield from _iter_jsonl(p, path)
            return
        raise DataError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", path=path) from None
    if isinstance(value, dict):
        key = next((k for k in ("data", "rows") if isinstance(value.get(k), list)), None)
        if key is None:
            raise DataError('expected a JSON list of objects, or an object with a "data" or "rows" list',
                            path=path)
        value = value[key]
    if not isinstance(value, list):
        raise DataError(f"expected a JSON list of objects, got {type(value).__name__}", path=path)
    for i, item in enumerate(value, start=1):
        yield i, item if isinstance(item, dict) else _not_object(path, i, item)


def _csv_cell(cell: str | None) -> Any:
    if cell is None or cell == "":
        return None
    s = cell.strip()
    if s.startswith("[") and s.endswith("]"):
        try:
            parsed = json.loads(s)
        except json.JSONDecodeError:
            return cell
        if isinstance(parsed, list) and parsed and all(isinstance(x, dict) for x in parsed):
            return parsed
    return cell


def _iter_csv(p: Path, path) -> Iterator[Record]:
    try:
        f = p.open("r", encoding="utf-8-sig", newline="")
    except OSError as e:
        raise DataError(f"cannot read file: {e}", path=path) from None
    with f:
        try:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                return
            for i, raw in enumerate(reader, start=1):
                if None in raw:
                    yield i, DataError(f"has {len(raw[None])} more cell(s) than the header", path=path, row=i)
                    continue
                yield i, {k: _csv_cell(v) for k, v in raw.items()}
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text: {e}", path=path) from None
        except csv.Error as e:
            raise DataError(f"not valid CSV: {e}", path=path) from None


def _iter_parquet(p: Path, path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(p).to_pylist()
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read Parquet file: {e}", path=path) from None
    yield from enumerate(rows, start=1)


def _iter_saved_dataset(p: Path, path) -> Iterator[Record]:
    if not ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file()):
        raise DataError(f"is a directory but not one written by datasets' save_to_disk; expected {SUPPORTED}",
                        path=path)
    try:
        from datasets import DatasetDict, load_from_disk

        ds = load_from_disk(str(p))
    except Exception as e:
        raise DataError(f"cannot read saved dataset: {e}", path=path) from None
    if isinstance(ds, DatasetDict):
        if "train" in ds:
            ds = ds["train"]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise DataError(f"holds several splits ({', '.join(ds)}) and none is named 'train'", path=path)
    yield from enumerate(ds.to_list(), start=1)


def _iter_hub_dataset(spec: str) -> Iterator[Record]:
    """``hf:org/name[@rev][:split]``: the split's rows from the hub snapshot (cache first)."""
    from alignkit.hub import HubUnavailable, is_hub_name, snapshot

    name, _, split = spec[len(HUB_PREFIX):].partition(":")
    split = split or "train"
    if not is_hub_name(name):
        raise DataError("expected hf:org/name[:split] (a Hugging Face Hub dataset name)", path=spec)
    try:
        snap = snapshot(name, "dataset")
    except HubUnavailable as e:
        raise DataError(str(e), path=spec) from None
    try:
        from datasets import get_dataset_split_names, load_dataset

        splits = get_dataset_split_names(str(snap))
        if split not in splits:
            raise DataError(f"no split '{split}' (the dataset has {', '.join(splits)})", path=spec)
        ds = load_dataset(str(snap), split=split, cache_dir=os.environ.get("HF_DATASETS_CACHE") or None)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many types for unreadable repositories
        raise DataError(f"cannot read hub dataset snapshot {snap}: {type(e).__name__}: {e}", path=spec) from None
    yield from enumerate(ds.to_list(), start=1)
