"""A JSON task file -> columns of Python values, typed by nobody.

``datasets`` reads JSON in blocks of about 10 MB and types each column from the first block, so
a label column of integers that turns into floats, or a field that is missing from every early
row, fails the whole file far past its start. The task stage parses labels and texts itself, so
it needs only the values as written. Three layouts are read, as ``datasets`` reads them:
JSON Lines (one object per line), a JSON array of objects, and one object of equal-length
column lists (``{"text": [...], "label": [...]}``).
"""
from __future__ import annotations

import json
from pathlib import Path

from tinybert.errors import InputError, not_utf8


def read_json_table(path: Path) -> dict[str, list]:
    """Columns in first-seen key order; a row without a key holds None there."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise not_utf8(path, err) from None
    start = text.lstrip()[:1]
    if not start:
        raise InputError(f"{path}: empty file")
    if start == "[":
        return _rows_to_columns(path, _whole(path, text), "entry")
    if start == "{":
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            document = None  # not one object: JSON Lines
        if isinstance(document, dict) and document and all(isinstance(v, list) for v in document.values()):
            return _columns(path, document)
        if isinstance(document, dict):
            return _rows_to_columns(path, [document], "line")
    return _rows_to_columns(path, _lines(path, text), "line")


def _whole(path: Path, text: str) -> list:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None


def _lines(path: Path, text: str):
    # Not splitlines(): JSON strings may hold U+2028 and other characters it would split at.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: line {number} is not a JSON object ({err.msg}, column {err.colno})") from None


def _rows_to_columns(path: Path, rows, where: str) -> dict[str, list]:
    columns: dict[str, list] = {}  # keys in the order the rows first name them
    count = 0
    for count, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise InputError(f"{path}: data row {count} is a JSON {type(row).__name__}, not an object with named "
                             f"fields (one object per {where})")
        for key in row:
            if key not in columns:
                columns[key] = [None] * (count - 1)
        for key, values in columns.items():
            values.append(row.get(key))
    if not count:
        raise InputError(f"{path}: no data rows")
    return columns


def _columns(path: Path, document: dict) -> dict[str, list]:
    lengths = {key: len(values) for key, values in document.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"{path}: the column lists have different lengths: "
                         + ", ".join(f"{key!r} {n}" for key, n in lengths.items()))
    if not next(iter(lengths.values())):
        raise InputError(f"{path}: no data rows")
    return dict(document)
