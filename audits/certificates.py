"""Assemble a certificate's content from the database, and the service's signing identity."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db.models import prefetch_related_objects
from django.urls import reverse
from django.utils import timezone

from audits.certificate_pdf import (
    AuditLine,
    CertificateContent,
    CertificateFigure,
    FamilyLine,
    ModelEvidence,
    NoDataContent,
    SearchedModel,
)
from audits.figures import figures_of
from audits.selectors import labelled_results, own_judgement, person_ranking, request_verdict, verdict_for
from audits.signing import SigningIdentity, TimestampAuthority, create_local_identity
from audits.models import Comparison
from audits.persons import PERSON_METRIC, PERSON_RANK_METRIC
from audits.verdicts import PROVEN_BY_IDENTITY
from compliance import notifications
from compliance.auditlog import subject_ref
from config.version import code_version
from unlearning.methods import METHODS
from unlearning.models import ModelKind
from unlearning.selectors import forget_review, governed_models_searched
from unlearning.serving.filters import FILTERS

FIGURE_DPI = 150  # sharp in print at the text width
LANGUAGE_MODEL_LIMITATIONS = [
    "In-context risk: unlearning does not stop a model from using facts given to it in a prompt "
    "(in-context relearning); runtime filters lower that risk where listed, and cannot rule it out.",
    "The audits measure behaviour on the listed samples. One person's data is a handful of texts: "
    "text-level intervals on so few items are wide, and where they could not have shown a match they "
    "say so (no power). The person-level tests rank the person among the people the model never saw; "
    "their p-values are exact when every person has texts of the same kinds in the same numbers, and "
    "approximate otherwise.",
    "Text-level intervals resample texts, not people (one person's texts are correlated): they are "
    "supporting detail beside the person-level ranks. Canary exposure is judged against its known null "
    "distribution (p < 0.01), not against the reference's single draw from it.",
]
TABULAR_LIMITATIONS = [
    "A data subject of a tabular model is usually one row: forget metrics on so few rows cannot reach "
    "the policy's minimum sample and are INCONCLUSIVE by design. For an exact deletion the evidence is "
    "the lineage (which shard and slice held the rows, retrained from the checkpoint before them) and "
    "the comparison with the model retrained without them.",
    "A model that generalises well barely separates its training rows from unseen ones even before a "
    "deletion: membership attacks on it have little power either way.",
]
GOVERNED_MODELS_ONLY = (
    "Only the governed models listed here were changed. Copies of the original weights outside "
    "the service's model store are out of its reach.")


def limitations(model_kinds: set[str]) -> list[str]:
    """What the certificate cannot show, for the kinds of model it covers."""
    lines = []
    if ModelKind.CAUSAL_LM in model_kinds:
        lines += LANGUAGE_MODEL_LIMITATIONS
    if model_kinds - {ModelKind.CAUSAL_LM}:
        lines += TABULAR_LIMITATIONS
    return lines + [GOVERNED_MODELS_ONLY]


def signing_identity() -> SigningIdentity:
    """The configured key and certificate, or a local CA and signer made on first use."""
    if settings.SIGNING_KEY_FILE and settings.SIGNING_CERT_FILE:
        if not settings.SIGNING_CA_FILE:
            raise RuntimeError("SIGNING_CA_FILE must name the CA certificate that verifiers trust")
        passphrase = settings.SIGNING_KEY_PASSPHRASE.encode() if settings.SIGNING_KEY_PASSPHRASE else None
        return SigningIdentity(Path(settings.SIGNING_KEY_FILE), Path(settings.SIGNING_CERT_FILE),
                               Path(settings.SIGNING_CA_FILE), passphrase)
    directory = Path(settings.SIGNING_DIR)
    if (directory / "signer.pem").exists():
        return SigningIdentity(directory / "signer.key", directory / "signer.pem", directory / "ca.pem")
    return create_local_identity(directory, settings.CERTIFICATE_ISSUER)


def timestamp_authority() -> TimestampAuthority | None:
    """The configured RFC 3161 timestamp authority, or None: signatures without a timestamp."""
    if not settings.CERTIFICATE_TIMESTAMP_URL:
        return None
    return TimestampAuthority(settings.CERTIFICATE_TIMESTAMP_URL, settings.CERTIFICATE_TIMESTAMP_TIMEOUT_SECONDS)


def _date(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "—"


def certificate_content(*, request, runs, serial: str, head, summary: str = "") -> CertificateContent:
    prefetch_related_objects(runs, "results")  # read each run's results once: lines, panel and figures share them
    models, lines, panel, figures, families = [], [], [], [], []
    for run in runs:
        job = run.job
        prefix = f"{job.asset.name}: " if len(runs) > 1 else ""
        models.append(ModelEvidence(
            name=job.asset.name, architecture=job.asset.architecture,
            original_sha256=run.original_version.sha256, unlearned_sha256=run.unlearned_version.sha256,
            reference_sha256=run.reference_version.sha256 if run.reference_version else "none (not affordable)",
            method=method_label(job.method), method_kind=job.outcome["method_kind"], params=job.outcome["params"],
            job_id=job.pk, forget_records=len(job.forget_record_ids), forget_set_sha256=job.forget_set_sha256,
            outcome=outcome_in_words(job.outcome),
            compared_with_holdout=run.comparison == Comparison.HOLDOUT,
            executed_plan=job.outcome.get("plan_summary", ""), owner_material=owner_material(job, request),
            proven_by_identity=run.verdict_basis == PROVEN_BY_IDENTITY, person_ranking=person_ranking(run, request),
        ))
        families += [FamilyLine(prefix + family["label"], family["verdict"], family["counted"], family["explanation"])
                     for family in verdict_for(run, request)[1]]
        labelled = [(prefix + label, result) for label, result in labelled_results(run)]
        lines += [
            AuditLine(label=label,
                original=result.original_value, unlearned=result.unlearned_value,
                reference=result.reference_value, margin=result.margin, sample_size=result.sample_size,
                interval=(result.difference_low, result.difference_high),
                verdict=verdict, explanation=explanation)
            for label, result in labelled for verdict, explanation in [own_judgement(result, request)]
        ]
        panel += [membership_row(result, label) for label, result in labelled
                  if result.audit in ("membership_inference", "row_membership") and result.metric not in (PERSON_METRIC, PERSON_RANK_METRIC)]
        figures += [CertificateFigure(png=figure.draw(dpi=FIGURE_DPI), caption=prefix + figure.caption)
                    for figure in figures_of(run) if figure.lead]
    approximate = any(model.method_kind != "exact" for model in models)
    return CertificateContent(
        serial=serial, issuer=settings.CERTIFICATE_ISSUER, issued_at=_date(timezone.now()),
        request_reference=request.reference, subject_ref=subject_ref(request.email),
        jurisdiction=request.get_jurisdiction_display(),
        dates=[("Received", _date(request.received_at)), ("Identity verified", _date(request.identity_verified_at)),
               ("Approved", _date(request.decided_at)), ("Work completed", _date(timezone.now())),
               ("Statutory deadline", _date(request.due_at))],
        models=models, audits=lines, overall_verdict=request_verdict(request),
        policy_version=", ".join(sorted({run.policy["version"] for run in runs})), nature="suppression" if approximate else "removal",
        audit_log_seq=head.seq, audit_log_hash=head.entry_hash,
        verify_url=notifications.link(request, reverse("verify-certificate", args=[serial])), code_version=code_version(),
        limitations=limitations({run.job.asset.kind for run in runs}),
        membership_panel=panel, figures=figures, families=families,
        family_rule=" ".join(dict.fromkeys(run.policy["family_rule"] for run in runs if run.policy.get("family_rule"))),
        runtime_filters=[row for run in runs for row in filter_rows(run, len(runs) > 1)],
        runtime_filter_summary=[line for run in runs for line in filter_summary(run, len(runs) > 1)],
        summary=summary,
    )


# Why a method stopped (UnlearningOutcome.stopped_because, the runner's exact-deletion outcomes), in words.
STOPPED_IN_WORDS = {
    "reached_target_forget_loss": "stopped when the data's loss reached its target",
    "utility_floor": "stopped before the model's usefulness fell below its floor",
    "max_steps": "ran its full step budget",
    "best_trial_step": "kept the best of its trials",
    "deletion plan executed": "the deletion plan was carried out",
    "already deleted": "the records had already been deleted by an earlier request",
}


def method_label(name: str) -> str:
    return METHODS[name].label if name in METHODS else name


def outcome_in_words(outcome: dict) -> str:
    stopped = outcome.get("stopped_because")
    steps = f"{outcome['steps']} steps, " if outcome.get("steps") else ""
    return steps + STOPPED_IN_WORDS.get(stopped, stopped or "")


def no_data_content(*, request, serial: str, head) -> NoDataContent:
    """The statement that no governed model holds a training record of the request's verified person."""
    return NoDataContent(
        serial=serial, issuer=settings.CERTIFICATE_ISSUER, issued_at=_date(timezone.now()),
        request_reference=request.reference, subject_ref=subject_ref(request.email),
        jurisdiction=request.get_jurisdiction_display(),
        dates=[("Received", _date(request.received_at)), ("Identity verified", _date(request.identity_verified_at)),
               ("Approved", _date(request.decided_at)), ("Searched", _date(timezone.now())),
               ("Statutory deadline", _date(request.due_at))],
        models=[SearchedModel(**row) for row in governed_models_searched()],
        reviewed_near_matches=sum(entry["near_matches_total"] for entry in forget_review(request)),
        audit_log_seq=head.seq, audit_log_hash=head.entry_hash,
        verify_url=notifications.link(request, reverse("verify-certificate", args=[serial])), code_version=code_version(),
    )


def shown_rate(measured: dict) -> str:
    low, high = measured["interval"]
    if measured["rate"] is None:
        return "not measured"
    return f"{measured['rate']:.1%} ({measured['hits']}/{measured['trials']}) [{low:.1%}, {high:.1%}]"


def filter_rows(run, several: bool) -> list[list[str]]:
    measured = run.runtime_filters.get("measured", {}).get("filters", {})
    prefix = f"{run.job.asset.name}: " if several else ""
    return [[prefix + FILTERS[name].label, shown_rate(rates["block"]), shown_rate(rates["false_positive"])]
            for name, rates in measured.items()]


def filter_summary(run, several: bool) -> list[str]:
    """In-context leakage and retained people's answers with the filters off and on; or why none are served."""
    prefix = f"{run.job.asset.name}: " if several else ""
    measured = run.runtime_filters.get("measured")
    if run.runtime_filters.get("error"):
        return [f"{prefix}no runtime filters are served with this model: preparing them failed "
                f"({run.runtime_filters['error']})."]
    if not measured:
        return [f"{prefix}no runtime filters are served with this model."] if run.job.asset.kind == ModelKind.CAUSAL_LM else []
    off, on = measured["leakage_off"], measured["leakage_on"]
    return [
        f"{prefix}In-context relearning probes (excluding the fact handed over in the prompt): {shown_rate(off)} "
        f"answered correctly without filters, {shown_rate(on)} with them (upper bound {on['interval'][1]:.1%}). "
        f"With the fact in the prompt: {shown_rate(measured['fact_in_context_off'])} without filters, "
        f"{shown_rate(measured['fact_in_context_on'])} with them.",
        f"{prefix}Retained people's questions answered correctly: {shown_rate(measured['retain_accuracy_off'])} "
        f"without filters, {shown_rate(measured['retain_accuracy_on'])} with them. The gate's threshold was "
        f"calibrated on other retained people than these.",
    ]


def owner_material(job, request) -> str:
    """What became of the material this request's owner handed in, where the reviewer confirmed it
    (a job batching several requests says nothing of the others')."""
    if not request.material_confirmed:
        return ""
    if job.outcome.get("method_kind") == "exact":
        return ("Confirmed by the reviewer, not used: an exact deletion removes training records, and the owner's "
                "documents and questions are not among them.")
    return (f"The {request.materials.count()} items the owner handed in (documents, question/answer pairs), confirmed "
            "by the reviewer, were forgotten with the training records.")


def membership_row(result, label: str) -> list[str]:
    unlearned = result.details.get("unlearned", {})
    low_fpr = unlearned.get("tpr_at_0.01_fpr")
    tpr = (f"{low_fpr['hits']}/{low_fpr['n']} = {low_fpr['tpr']:.2f} [{low_fpr['interval'][0]:.2f}, {low_fpr['interval'][1]:.2f}]"
           if low_fpr else "n/a")
    beyond = unlearned.get("beyond_holdout_p99")
    return [label.replace("MIA AUC, ", ""), "n/a" if result.unlearned_value is None else f"{result.unlearned_value:.3f}", tpr,
            "n/a" if beyond is None else f"{beyond:.2f}",
            "n/a" if "privleak" not in result.details else f"{result.details['privleak']:+.1f}"]
