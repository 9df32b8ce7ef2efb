"""Writing an evaluation report as JSON (every number, the configuration and the signatures) or CSV (one row
per system and bucket); each file appears whole or not at all."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from nmt.evaluation.report import EvalReport
from nmt.files import atomic_write


def write_json(report: EvalReport, path: Path) -> None:
    text = json.dumps(report.to_json_dict(), indent=2, ensure_ascii=False) + "\n"
    atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def write_csv(report: EvalReport, path: Path) -> None:
    rows = report.csv_rows()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(Path(path), lambda handle: handle.write(buffer.getvalue().encode("utf-8")))
