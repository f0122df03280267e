"""An audit run as files: a JSON document of everything it stored, a CSV summary with one row per
metric, and a CSV of every per-item score. The portal and the API serve the same bytes.

Numbers read back exactly: JSON and CSV both write a float's shortest round-trip form (repr). A
value that is not a finite number (NaN has no JSON form) is null in JSON and empty in CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpResponse
from django.utils.http import content_disposition_header

from audits.models import AuditRun
from audits.selectors import ROLES, labelled_results, scores_by_role

SUMMARY_COLUMNS = ["metric", "audit", "label", "verdict", "original", "unlearned", "reference", "margin",
                   "difference_low", "difference_high", "power_low", "power_high", "sample_size", "explanation"]
ITEM_COLUMNS = ["metric", "role", "side", "index", "score"]


def run_document(run: AuditRun) -> dict:
    """Everything the run stored: its policy and verdict, the SHA-256 of the three models it
    scored, and each result with its values, intervals, margin, verdict, reasons, details and
    per-item scores."""
    return _finite({
        "run": run.pk,
        "job": run.job_id,
        "model": run.job.asset.name,
        "status": run.status,
        "verdict": run.verdict, "verdict_basis": run.verdict_basis, "families": run.families,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "policy": run.policy,
        "comparison": run.comparison,
        "model_sha256": {role: getattr(getattr(run, f"{role}_version"), "sha256", None) for role in ROLES},
        "sample_sizes": run.sample_sizes,
        "results": [
            {
                "metric": result.metric,
                "audit": result.audit,
                "label": label,
                "values": {"original": result.original_value, "unlearned": result.unlearned_value,
                           "reference": result.reference_value},
                "margin": result.margin,
                "difference_interval": [result.difference_low, result.difference_high],
                "power_interval": None if result.power_low is None else [result.power_low, result.power_high],
                "verdict": result.verdict,
                "explanation": result.explanation,
                "sample_size": result.sample_size,
                "details": result.details,
                "per_item": result.per_item,
            }
            for label, result in labelled_results(run)
        ],
    })


def _finite(value):
    """The value with every non-finite float (NaN, ±inf) replaced by None, however deeply nested."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def results_json(run: AuditRun) -> str:
    return json.dumps(run_document(run), indent=2, ensure_ascii=False, allow_nan=False)


def results_csv(run: AuditRun) -> str:
    """One row per metric: its values on the three models, margin, intervals, verdict and reasons."""
    rows = []
    for result in run_document(run)["results"]:
        power = result["power_interval"] or [None, None]
        rows.append([result["metric"], result["audit"], result["label"], result["verdict"],
                     *(result["values"][role] for role in ROLES), result["margin"], *result["difference_interval"],
                     *power, result["sample_size"], result["explanation"]])
    return _csv(SUMMARY_COLUMNS, rows)


def items_csv(run: AuditRun) -> str:
    """One row per stored score: metric, role (model), side (forget, holdout or items), index, score."""
    rows = [
        [result.metric, role, side, index, score]
        for result in run.results.all()
        for role, sides in scores_by_role(result)
        for side, scores in sides.items()
        for index, score in enumerate(_finite(scores))
    ]
    return _csv(ITEM_COLUMNS, rows)


def _csv(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)  # None is written as an empty field, a float as its repr
    return buffer.getvalue()


@dataclass(frozen=True)
class ExportFile:
    description: str
    content_type: str
    write: Callable[[AuditRun], str]


FILES = {
    "results.json": ExportFile("everything, with per-item scores (JSON)", "application/json", results_json),
    "results.csv": ExportFile("one row per test (CSV)", "text/csv; charset=utf-8", results_csv),
    "items.csv": ExportFile("every per-item score (CSV)", "text/csv; charset=utf-8", items_csv),
}


def download(run: AuditRun, filename: str) -> HttpResponse:
    """One of FILES as an attachment named after the run; KeyError for any other name."""
    export = FILES[filename]
    return HttpResponse(export.write(run), content_type=export.content_type, headers={
        "Content-Disposition": content_disposition_header(as_attachment=True, filename=f"audit-run-{run.pk}-{filename}"),
    })
