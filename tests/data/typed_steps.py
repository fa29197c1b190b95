"""Small typed step functions used by the component-rendering and runtime tests.

Only the standard library and compose_kfp.types are imported at module level, so
these run under ``python -S`` with nothing but the runtime on PYTHONPATH.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

from compose_kfp.types import InputPath, OutputPath


class Summary(NamedTuple):
    total: float
    count: int
    labels: List[str]


def make_rows(n: int, scale: float = 1.5, label: str = "row", shuffle: bool = False,
              rows: OutputPath("JSONLines") = "") -> int:
    """Write ``n`` JSON lines to ``rows`` and return how many were written.

    Args:
        n: number of rows.
        scale: multiplier of each value.
        label: prefix of each row's label.
        shuffle: reverse the order.
        rows: where the rows go.
    """
    values = [{"label": f"{label}-{i}", "value": i * scale} for i in range(n)]
    if shuffle:
        values.reverse()
    with open(rows, "w", encoding="utf-8") as f:
        for v in values:
            f.write(json.dumps(v) + "\n")
    return n


def summarize(rows: InputPath("JSONLines"), weights: Optional[Dict[str, float]] = None,
              keep: List[str] = ["row-0"]) -> Summary:  # noqa: B006 - literal default for the test
    """Sum the values of the rows.

    Args:
        rows: the rows written by make_rows.
        weights: per-label weight (default 1).
        keep: labels to list in the summary.
    """
    weights = weights or {}
    total, count, labels = 0.0, 0, []
    with open(rows, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            total += row["value"] * weights.get(row["label"], 1.0)
            count += 1
            if row["label"] in keep:
                labels.append(row["label"])
    return Summary(total, count, labels)


def report(total: float, count: int, labels: list, source: Path, report: OutputPath()) -> None:
    """Write a one-line report combining the summary and a file's size."""
    Path(report).write_text(f"{total} {count} {','.join(labels)} {len(source.read_bytes())}\n", encoding="utf-8")


class Tally:
    """A plain object defined in the step module: marshalled with joblib or pickle and loaded by the next step."""

    def __init__(self, counts: Dict[str, int]) -> None:
        self.counts = counts


def tally(words: List[str]) -> Tally:
    """Count words into a Tally object (an artifact output)."""
    counts: Dict[str, int] = {}
    for w in words:
        counts[w] = counts.get(w, 0) + 1
    return Tally(counts)


def read_tally(tally: Tally, word: str) -> int:
    """How often ``word`` was counted (the Tally arrives as an object)."""
    return tally.counts.get(word, 0)
