"""Compare two results/ trees table by table: the check that a behaviour-preserving change is one.

    python scripts/compare_results.py BEFORE/results AFTER/results [--atol 1e-6]

Every Parquet file and metrics.csv present in both trees is compared row by row: integer, string,
boolean and list columns (token ids) exactly, float columns to ``--atol`` (absolute, NaN equal to
NaN). Columns only in one tree are listed, not failed (a new column is not a changed value); a file
only in BEFORE fails. Wall-clock columns (tokens_per_s, seconds) are skipped. Exits 1 on any
difference, printing each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TIMING_COLUMNS = {"tokens_per_s", "seconds"}


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def compare_tables(before: pd.DataFrame, after: pd.DataFrame, atol: float) -> list[str]:
    """Differences between two tables, as readable lines (empty: equal)."""
    problems = []
    if len(before) != len(after):
        return [f"{len(before)} rows before, {len(after)} after"]
    only_before = sorted(set(before.columns) - set(after.columns))
    if only_before:
        problems.append(f"columns dropped: {only_before}")
    for column in before.columns:
        if column not in after.columns or column in TIMING_COLUMNS:
            continue
        a, b = before[column].reset_index(drop=True), after[column].reset_index(drop=True)
        if pd.api.types.is_float_dtype(a) or pd.api.types.is_float_dtype(b):
            x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
            with np.errstate(invalid="ignore"):  # inf - inf is NaN: equal infinities are equal values
                bad = ~((x == y) | (np.abs(x - y) <= atol) | (np.isnan(x) & np.isnan(y)))
            if bad.any():
                i = int(np.argmax(bad))
                worst = float(np.nanmax(np.where(bad, np.abs(x - y), 0.0)))
                problems.append(f"{column}: {int(bad.sum())} value(s) differ beyond {atol:g} "
                                f"(max |diff| {worst:.3g}; row {i}: {x[i]!r} vs {y[i]!r})")
        else:
            same = [_equal(u, v) for u, v in zip(a, b, strict=True)]
            if not all(same):
                i = same.index(False)
                problems.append(f"{column}: {same.count(False)} value(s) differ "
                                f"(row {i}: {a[i]!r} vs {b[i]!r})")
    return problems


def _equal(u: object, v: object) -> bool:
    if isinstance(u, np.ndarray | list) or isinstance(v, np.ndarray | list):
        return np.array_equal(np.asarray(u), np.asarray(v))
    if pd.isna(u) if np.isscalar(u) or u is None else False:
        return bool(pd.isna(v)) if np.isscalar(v) or v is None else False
    return u == v


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--atol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    files = sorted(p.relative_to(args.before) for p in args.before.rglob("*")
                   if p.suffix == ".parquet" or p.name == "metrics.csv")
    failed = 0
    for rel in files:
        if "shards" in rel.parts:  # the gathered table is compared
            continue
        other = args.after / rel
        if not other.exists():
            print(f"MISSING {rel}")
            failed += 1
            continue
        problems = compare_tables(_read(args.before / rel), _read(other), args.atol)
        print(f"{'DIFF' if problems else 'same'} {rel}")
        for line in problems:
            print(f"    {line}")
        failed += bool(problems)
    print(f"{len(files)} tables compared, {failed} differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
