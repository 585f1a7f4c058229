"""User data files (JSONL, JSON, CSV, TSV, Parquet, TXT), read and validated: errors name the file, line and field."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Callable, Iterable

from ..errors import DataError, DetoxkitError


class Records(list):
    """A list of row dicts that remembers where each row came from (for error messages)."""

    def __init__(self, rows: Iterable[dict] = (), source: str = "<memory>", lines: list[int] | None = None):
        super().__init__(rows)
        self.source = source
        self.lines = lines if lines is not None else list(range(1, len(self) + 1))

    def line_of(self, i: int) -> int | None:
        return self.lines[i] if i < len(self.lines) else None


# ---------------------------------------------------------------- file readers


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(path, "file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 (byte 0x{raw[e.start]:02x}); re-save the file as UTF-8", line) from None


def _read_jsonl(path: Path) -> Records:
    rows, lines = [], []
    # JSONL rows end at "\n" only: str.splitlines() would also break at U+0085, U+2028 and other separators that
    # json.dumps(ensure_ascii=False) leaves unescaped inside strings (model outputs contain them).
    for lineno, line in enumerate(_decode(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, f"bad JSON line: {e.msg} at column {e.colno}", lineno) from None
        if not isinstance(row, dict):
            raise DataError(path, f"each line must be a JSON object, got {type(row).__name__}", lineno)
        rows.append(row)
        lines.append(lineno)
    return Records(rows, str(path), lines)


def _read_json(path: Path) -> Records:
    try:
        data = json.loads(_decode(path))
    except json.JSONDecodeError as e:
        raise DataError(path, f"bad JSON: {e.msg} at column {e.colno}", e.lineno) from None
    if isinstance(data, dict):  # {"data": [...]} or a column-oriented dict
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(path, "a JSON file must hold a list of objects")
    return Records(data, str(path), [None] * len(data))


def _read_delimited(path: Path, delimiter: str) -> Records:
    text = _decode(path)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    if not reader.fieldnames:
        raise DataError(path, "no header row")
    rows, lines = [], []
    start = 2
    for row in reader:
        if None in row:
            raise DataError(
                path,
                f"{len(row[None]) + len(reader.fieldnames)} fields where the header has {len(reader.fieldnames)}",
                start,
            )
        rows.append(row)
        lines.append(start)
        start = reader.line_num + 1
    return Records(rows, str(path), lines)


def _read_parquet(path: Path) -> Records:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a broken file
        raise DataError(path, f"not a readable Parquet file ({e})") from None
    rows = table.to_pylist()
    if not rows:
        raise DataError(path, "file is empty")
    return Records(rows, str(path), [None] * len(rows))


def _read_txt(path: Path) -> Records:
    pairs = [(i, line) for i, line in enumerate(_decode(path).splitlines(), 1) if line.strip()]
    return Records([{"text": line} for _, line in pairs], str(path), [i for i, _ in pairs])


READERS: dict[str, Callable[[Path], Records]] = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": lambda p: _read_delimited(p, ","),
    ".tsv": lambda p: _read_delimited(p, "\t"),
    ".parquet": _read_parquet,
    ".txt": _read_txt,
}


def read_file(path: str | Path) -> Records:
    path = Path(path)
    if not path.exists():
        raise DetoxkitError(f"{path}: file not found")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(path, f"unsupported file type {path.suffix!r} (use one of {', '.join(READERS)})")
    return reader(path)


def require_columns(rows: Records, columns: Iterable[str], allow_empty: bool = False) -> Records:
    """Check every row has every column (non-empty unless allow_empty); errors name file, line and field."""
    columns = list(columns)
    for i, row in enumerate(rows):
        for col in columns:
            if col not in row:
                raise DataError(
                    rows.source, f"missing column (found: {', '.join(map(str, row)) or 'none'})", rows.line_of(i), col
                )
            if not allow_empty and (row[col] is None or (isinstance(row[col], str) and not row[col].strip())):
                raise DataError(rows.source, "empty value", rows.line_of(i), col)
    return rows


TRL_FORMATS = {
    "text": ("text",),
    "prompt": ("prompt",),
    "prompt_completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
    "unpaired_preference": ("prompt", "completion", "label"),
    "classification": ("text", "label"),
}


def to_format(rows: Records, fmt: str, columns: dict[str, str] | None = None) -> Records:
    """Rename user columns onto a TRL shape (``columns`` maps TRL field -> user column) and validate."""
    if fmt not in TRL_FORMATS:
        raise DetoxkitError(f"unknown dataset format {fmt!r} (one of {', '.join(TRL_FORMATS)})")
    columns = columns or {}
    fields = TRL_FORMATS[fmt]
    require_columns(rows, [columns.get(f, f) for f in fields], allow_empty=fmt == "classification")
    out = [{f: row[columns.get(f, f)] for f in fields} for row in rows]
    return Records(out, rows.source, rows.lines)
