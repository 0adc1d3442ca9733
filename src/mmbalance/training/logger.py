"""Per-epoch metrics: JSONL (the source of truth), CSV (rewritten from it), TensorBoard.

Rows are plain ``{name: number}`` dicts with an ``epoch`` key. On resume the JSONL is truncated
to the epochs the checkpoint covers, so a run killed between logging and checkpointing does not
end with a duplicated row.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from mmbalance.training.checkpoint import append_text, write_text_atomic


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf: store them as null so every reader can parse the file.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """Writes ``metrics.jsonl`` and ``metrics.csv`` in a run folder (and TensorBoard if asked)."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = False, write: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.write = write  # False on non-zero ranks: rows kept in memory, no files touched
        self.jsonl = self.run_dir / "metrics.jsonl"
        self.csv = self.run_dir / "metrics.csv"
        self.rows: list[dict[str, Any]] = read_rows(self.jsonl)
        self._tb: Any = None
        self._tensorboard = tensorboard  # the writer is made on the first row, not before

    def truncate(self, epochs_done: int) -> None:
        """Keep only rows of epochs ``< epochs_done`` (used when resuming)."""
        self.rows = [r for r in self.rows if r["epoch"] < epochs_done]
        if self.write:
            self._rewrite()

    def log(self, row: dict[str, Any]) -> None:
        """Append one epoch's row to every sink."""
        row = {k: _clean(v) for k, v in row.items()}
        self.rows.append(row)
        if not self.write:
            return
        append_text(self.jsonl, json.dumps(row) + "\n")
        self._write_csv()
        if self._tensorboard and self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: JSONL/CSV are enough
                self._tensorboard = False
            else:
                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        if self._tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k.replace("_", "/", 1), v, row["epoch"])
            self._tb.flush()

    def _rewrite(self) -> None:
        write_text_atomic(self.jsonl, "".join(json.dumps(r) + "\n" for r in self.rows))
        self._write_csv()

    def _write_csv(self) -> None:
        # Methods may add columns mid-run (e.g. a phase switch): the header is the union.
        columns: list[str] = []
        for r in self.rows:
            columns.extend(k for k in r if k not in columns)
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.csv, buf.getvalue())

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` (a torn last line from a crash is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows
