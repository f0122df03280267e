"""An audit run's exports read back to the stored numbers, and its figures follow the stored scores."""

import csv
import io
import json
import math

import pytest

from audits import exports
from audits.figures import figures_of, item_values
from audits.models import AuditResult

pytestmark = pytest.mark.django_db
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VALUE_FIELDS = {"original": "original_value", "unlearned": "unlearned_value", "reference": "reference_value"}


def parsed_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def number(field: str) -> float | None:
    return None if field == "" else float(field)


def test_the_json_document_equals_the_database(audited_request):
    _, _, run = audited_request
    document = json.loads(exports.results_json(run))
    assert document["policy"] == run.policy and document["verdict"] == run.verdict == "INCONCLUSIVE"
    assert document["model_sha256"] == {"original": run.original_version.sha256, "unlearned": run.unlearned_version.sha256,
                                        "reference": run.reference_version.sha256}
    stored = {result.metric: result for result in AuditResult.objects.filter(run=run)}
    assert [entry["metric"] for entry in document["results"]] == ["forget_qa_accuracy", "mia_zlib_auc", "mia_loss_auc", "canary_exposure"]
    for entry in document["results"]:
        result = stored[entry["metric"]]
        assert entry["values"] == {role: getattr(result, field) for role, field in VALUE_FIELDS.items()}
        assert entry["difference_interval"] == [result.difference_low, result.difference_high]
        assert entry["power_interval"] == (None if result.power_low is None else [result.power_low, result.power_high])
        assert (entry["margin"], entry["verdict"], entry["explanation"], entry["sample_size"]) == (
            result.margin, result.verdict, result.explanation, result.sample_size)
        assert entry["details"] == result.details and entry["per_item"] == result.per_item
    labels = [entry["label"] for entry in document["results"]]
    assert labels == ["Forget QA accuracy", "MIA AUC, zlib", "MIA AUC, LOSS", "canary_exposure"]  # unnamed: its metric


def test_the_summary_csv_reads_back_to_the_stored_numbers(audited_request):
    _, _, run = audited_request
    rows = parsed_csv(exports.results_csv(run))
    assert list(rows[0]) == exports.SUMMARY_COLUMNS
    for row, result in zip(rows, AuditResult.objects.filter(run=run), strict=True):
        assert row["metric"] == result.metric and row["verdict"] == result.verdict
        assert row["explanation"] == result.explanation  # commas and line breaks survive
        for role, field in VALUE_FIELDS.items():
            assert number(row[role]) == getattr(result, field)  # exactly: floats are written in full
        for column in ("margin", "difference_low", "difference_high", "power_low", "power_high"):
            assert number(row[column]) == getattr(result, column)
        assert int(row["sample_size"]) == result.sample_size


def test_the_items_csv_rebuilds_every_stored_score(audited_request):
    _, _, run = audited_request
    rebuilt = {}
    for row in parsed_csv(exports.items_csv(run)):
        scores = rebuilt.setdefault(row["metric"], {}).setdefault(row["role"], {}).setdefault(row["side"], [])
        assert int(row["index"]) == len(scores)
        scores.append(float(row["score"]))
    stored = {result.metric: result.per_item for result in AuditResult.objects.filter(run=run)}
    assert rebuilt == {metric: per_item for metric, per_item in stored.items() if metric != "canary_exposure"}
    assert stored["canary_exposure"] == {"original": {}, "unlearned": {}, "reference": {}}  # nothing to write


def test_a_value_that_is_not_a_number_is_null_in_json_and_empty_in_csv(audited_request):
    _, _, run = audited_request
    AuditResult.objects.filter(run=run, metric="mia_zlib_auc").update(reference_value=math.nan)
    run.refresh_from_db()
    zlib = next(entry for entry in json.loads(exports.results_json(run))["results"] if entry["metric"] == "mia_zlib_auc")
    assert zlib["values"]["reference"] is None
    assert next(row for row in parsed_csv(exports.results_csv(run)) if row["metric"] == "mia_zlib_auc")["reference"] == ""


def test_the_loss_attack_leads_and_a_metric_without_scores_has_no_figure(audited_request):
    _, _, run = audited_request
    figures = figures_of(run)
    assert [figure.name for figure in figures if figure.lead] == ["roc-mia_loss_auc", "histogram-mia_loss_auc"]
    assert [figure.name for figure in figures if not figure.lead] == [
        "roc-attacks", "histogram-forget_qa_accuracy", "roc-mia_zlib_auc", "histogram-mia_zlib_auc"]
    assert all(figure.draw(dpi=40).startswith(PNG_SIGNATURE) for figure in figures)


def test_without_membership_scores_the_first_result_with_scores_leads(audited_request):
    _, _, run = audited_request
    AuditResult.objects.filter(run=run, audit="membership_inference").delete()
    AuditResult.objects.filter(run=run, metric="forget_qa_accuracy").update(
        per_item={"original": {"items": [1.0, None, 0.0]}, "unlearned": {}})  # an unscored item and a role without scores
    run.refresh_from_db()
    [figure] = figures_of(run)
    assert figure.name == "histogram-forget_qa_accuracy" and figure.lead
    assert item_values(run.results.get(metric="forget_qa_accuracy")) == {"original": [1.0, 0.0]}
    assert figure.draw(dpi=40).startswith(PNG_SIGNATURE)
