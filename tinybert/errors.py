"""The one exception type every entry point turns into a one-line message and a non-zero exit,
and the two messages several readers build from other libraries' errors."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable


class InputError(Exception):
    """Bad input: a missing file, column or model folder, an empty dataset, a malformed parameter."""


def one_line_errors(main: Callable[[], None]) -> Callable[[], None]:
    """An entry point that ends on bad input with ``error: ...`` on one line and exit status 2."""

    @functools.wraps(main)
    def entry_point() -> None:
        try:
            main()
        except InputError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return entry_point


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's text, or its type's name when it has none.
    Libraries put what went wrong first and context or advice after, over many lines; a
    one-line error keeps the first."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0].strip()


def not_utf8(path: str | Path, err: UnicodeDecodeError, offset: int = 0, line: int | None = None) -> InputError:
    """``PATH: not UTF-8 text (byte 0xNN at offset N[, line L])``; ``offset`` is where the decoded
    bytes began in the file."""
    where = f"offset {offset + err.start}" + (f", line {line}" if line is not None else "")
    return InputError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at {where})")


def first_utf8_error(path: str | Path) -> InputError | None:
    """``not_utf8``'s error for the file's first byte that is not UTF-8, with its line; None if
    the whole file decodes. For readers that decode in chunks of their own and report the
    position within a chunk: only the file's offset and line help a user find the byte."""
    offset = 0
    with open(path, "rb") as fh:
        # Line by line: a UTF-8 sequence never contains the newline byte, so lines decode alone.
        for number, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                return not_utf8(path, err, offset, number)
            offset += len(raw)
    return None
