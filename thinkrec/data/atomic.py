"""Reader for RecBole atomic files (``.inter``, ``.item``, ``.user``, ``.kg``, ``.link``).

Each file is tab-separated with a header of ``name:type`` fields, type one of token, token_seq,
float, float_seq. Errors name the file and the line, so a broken dataset is easy to mend.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


class DataFileError(ValueError):
    """A missing, malformed or empty atomic file."""


def _parse_header(path: Path, header: str) -> list[tuple[str, str]]:
    fields = []
    for column in header.rstrip("\r\n").split("\t"):
        name, sep, kind = column.partition(":")
        if not sep or not name or kind not in FIELD_TYPES:
            raise DataFileError(
                f"{path}, line 1: header field {column!r} must look like name:type "
                f"with type one of {', '.join(FIELD_TYPES)}"
            )
        fields.append((name, kind))
    return fields


def read_atomic(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read one atomic file into a DataFrame of strings (float fields as floats, *_seq as lists)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    with path.open(encoding="utf-8", errors="strict") as handle:
        try:
            lines = handle.read().splitlines()
        except UnicodeDecodeError as err:
            raise DataFileError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    if not lines:
        raise DataFileError(f"{path}: empty file (expected a name:type header)")
    fields = _parse_header(path, lines[0])
    names = [name for name, _ in fields]
    missing = [name for name in required if name not in names]
    if missing:
        raise DataFileError(f"{path}, line 1: missing field(s) {', '.join(missing)}; the header has {', '.join(names)}")

    rows, line_numbers = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != len(fields):
            raise DataFileError(f"{path}, line {number}: {len(values)} values for {len(fields)} header fields")
        rows.append(values)
        line_numbers.append(number)
    if not rows:
        raise DataFileError(f"{path}: no data rows after the header")

    frame = pd.DataFrame(rows, columns=names, dtype=object)
    for name, kind in fields:
        if kind == "float":
            frame[name] = _to_float(path, frame[name], name, line_numbers)
        elif kind == "token_seq":
            frame[name] = [value.split() for value in frame[name]]
        elif kind == "float_seq":
            frame[name] = [[float(v) for v in value.split()] for value in frame[name]]
    return frame


def _to_float(path: Path, column: pd.Series, name: str, line_numbers: list[int]) -> pd.Series:
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.astype(str).str.strip().ne("")
    if bad.any():
        position = int(bad.to_numpy().nonzero()[0][0])
        raise DataFileError(
            f"{path}, line {line_numbers[position]}: field {name} is a float field but holds {column.iloc[position]!r}"
        )
    return numbers.astype(float)
