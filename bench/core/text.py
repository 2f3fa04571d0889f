"""Users' text files (annotations, split lists, tag lists): read whole, so that a file that is not
UTF-8 is one line naming it and the offending byte, not a UnicodeDecodeError from deep in a reader."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path

from bench.core.errors import UserError


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of `path`, line ends as written (newline=""). UserError when it is not `encoding`."""
    try:
        with open(path, encoding=encoding, newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        "save it as UTF-8") from None


def text_file(path: str | Path, encoding: str = "utf-8") -> io.StringIO:
    """`read_text(path)` as a file object that iterates lines as `open(path, newline="")` does."""
    return io.StringIO(read_text(path, encoding), newline="")


def csv_lines(path: str | Path, what: str = "CSV text", **dialect) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number where the row starts, its fields)]) of a UTF-8 file of `what` (a spreadsheet's
    byte-order mark skipped; `dialect`: csv.reader's options), blank lines (and lines of spaces or empty fields,
    a spreadsheet's `,,`) left out. The line numbers are
    the file's, as an editor shows them, past blank lines and fields that hold line breaks, where a row's
    index would name another row. Text the csv module cannot read (a field past its size limit: an
    unbalanced quote takes in the rest of the file; a file that ends inside a quoted field) is a UserError
    naming the line its row starts on."""
    with text_file(path, "utf-8-sig") as handle:
        # strict: a file cut inside a quoted field (a truncated download) is refused, not read to its end
        reader = csv.reader(handle, strict=True, **dialect)
        rows, start = [], 1
        try:
            header = next(reader, [])
            while True:
                start = reader.line_num + 1
                fields = next(reader, None)
                if fields is None:
                    return header, rows
                if any(field.strip() for field in fields):  # not a line of spaces, or a spreadsheet's `,,`
                    rows.append((start, fields))
        except csv.Error as exc:
            raise UserError(f"{path}: the row from line {start}: not {what} ({exc}; an unbalanced quote?)") from None


def csv_rows(path: str | Path, reads: Iterable[str],
             **dialect) -> tuple[list[str], list[tuple[int, dict[str, str | None]]]]:
    """`csv_lines` with each row as {column: field}: a row shorter than the header has None for its
    missing columns, and one longer holds its extra fields, in order, under None (as csv.DictReader gives
    them). A column the caller `reads` named twice in the header is a UserError: a row's dict would keep
    the last, and the others' fields would be lost unsaid (columns read by none, such as the unnamed
    empty ones a spreadsheet writes, may repeat)."""
    header, lines = csv_lines(path, **dialect)
    twice = [name for name in dict.fromkeys(reads) if header.count(name) > 1]
    if twice:
        raise UserError(f"{path}: line 1: column(s) {', '.join(map(repr, twice))} twice in the header; each once")
    rows = []
    for start, fields in lines:
        row: dict = dict(zip(header, fields + [None] * (len(header) - len(fields)), strict=False))
        if len(fields) > len(header):
            row[None] = fields[len(header):]
        rows.append((start, row))
    return header, rows


def printable(name: str) -> str:
    """A file name as Python reads it from the file system, as text that can be written as UTF-8 and
    drawn: its bytes that are not UTF-8 (a Latin-1 "café" is b"caf\\xe9", read as a lone surrogate) as
    `\\xe9`; a lone surrogate that is no such byte (JSON's "\\ud800" in a tag name) as `\\ud800`."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn"})
"""Unicode categories of characters no font draws: controls (an escape sequence's ESC), formats (a
zero-width space), lone surrogates, unassigned code points. (Private-use characters, "Co", a font may
draw.)"""


def invisible(ch: str) -> bool:
    import unicodedata

    return unicodedata.category(ch) in INVISIBLE_CATEGORIES


def visible(name: str) -> str:
    """`name` (`printable`) with its `invisible` characters escaped (`\\x1b`, `\\u200b`): a tag name's
    escape sequence shown, not acted on by the terminal."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if invisible(ch) else ch for ch in printable(name))


def quoted(name: str) -> str:
    """`name` as one item of a list joined with ", ": in double quotes where it holds a comma, a quote or
    space at an end (a quote inside doubled, as CSV writes it), so that a tag "rock, pop" reads as one."""
    if "," in name or '"' in name or name != name.strip():
        return '"' + name.replace('"', '""') + '"'
    return name


def listed(names) -> str:
    """`names` joined with ", ", each `quoted`."""
    return ", ".join(quoted(str(n)) for n in names)


def first_of(names, shown: int) -> str:
    """The first `shown` of `names` joined with ", ", and how many more there are: "a, b, c and 261 more"
    (a line that stays readable for a grid of thousands)."""
    names = [str(n) for n in names]
    rest = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {rest:,} more" if rest > 0 else "")


def significant(value: float, digits: int = 2) -> str:
    """`value` to `digits` significant digits as a plain decimal, trailing zeros kept: 0.0070, 0.00093,
    18, 1.9 (never 0.007 beside 0.0093, or 7e-03)."""
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(float(f"{value:.{digits}g}")))))
    return f"{value:.{decimals}f}"
