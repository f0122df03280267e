"""The legal team's REST API (v1). Views only translate HTTP: input serializer → service/selector → output serializer."""

import io

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view, inline_serializer
from rest_framework import exceptions, renderers, serializers
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from audits import exports
from audits import selectors as audit_selectors
from compliance import selectors, services
from compliance.api.fields import ChoiceField
from compliance.api.pagination import CheckedCursorPagination
from compliance.errors import NotFound
from compliance.models import DenialGround, RequestStatus
from unlearning import selectors as unlearning_selectors
from unlearning import services as unlearning_services


class JobOutput(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="asset.name")
    method = serializers.CharField()
    params = serializers.DictField(help_text="an operator's overrides of the method's defaults (empty: its defaults)")
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    progress = serializers.FloatField(help_text="a fraction from 0 to 1")
    progress_message = serializers.CharField()
    history = serializers.ListField(child=serializers.DictField(), help_text=(
        "approximate methods: each evaluation so far (epoch, step, forget loss, retained-text loss, retained QA, "
        "the loss's parts), kept when the job fails"))
    stopped_because = serializers.CharField(source="outcome.stopped_because", default=None)
    resolved_params = serializers.DictField(source="outcome.params", default=None,
                                            help_text="the parameters it ran with, defaults resolved")
    forget_records = serializers.SerializerMethodField()
    forget_set_sha256 = serializers.CharField()
    base_sha256 = serializers.CharField(source="base_version.sha256", default=None)
    result_sha256 = serializers.CharField(source="result_version.sha256", default=None)
    executed_plan = serializers.JSONField(source="outcome.plan", default=None,
                                          help_text="exact deletions: the deletion plan that was executed")
    error = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True, help_text="the worker's last sign of life while running")
    claimed_by = serializers.CharField(help_text="the worker of the latest claim: host and process id")
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_forget_records(self, job) -> int:
        return len(job.forget_record_ids)


class AuditResultOutput(serializers.Serializer):
    audit = serializers.CharField()
    metric = serializers.CharField()
    original = serializers.FloatField(source="original_value")
    unlearned = serializers.FloatField(source="unlearned_value")
    reference = serializers.FloatField(source="reference_value", allow_null=True)
    margin = serializers.FloatField()
    sample_size = serializers.IntegerField()
    difference_interval = serializers.SerializerMethodField()
    power_interval = serializers.SerializerMethodField()
    details = serializers.JSONField()
    verdict = serializers.CharField()
    explanation = serializers.CharField()


    def get_difference_interval(self, result) -> list[float]:
        return [result.difference_low, result.difference_high]

    def get_power_interval(self, result) -> list[float] | None:
        return None if result.power_low is None else [result.power_low, result.power_high]


class FamilyVerdictOutput(serializers.Serializer):
    family = serializers.CharField(help_text="membership | extraction | knowledge | in_context | recovery | utility")
    label = serializers.CharField(help_text="what the family asks, in plain words")
    verdict = serializers.CharField()
    counted = serializers.BooleanField(help_text="false: not applicable, or no power for this person (not counted "
                                                 "in the overall verdict)")
    basis = serializers.CharField(help_text="person: decided by a person-level test; metrics: by its metrics")
    explanation = serializers.CharField()


class AuditRunOutput(serializers.Serializer):
    id = serializers.IntegerField()
    job = serializers.IntegerField(source="job_id")
    model = serializers.CharField(source="job.asset.name")
    status = serializers.CharField()
    verdict = serializers.CharField()
    verdict_basis = serializers.CharField(help_text="identity: the model after deletion is the retrained reference, "
                                                    "byte for byte (removal proven); audits: the audits decided")
    policy_version = serializers.CharField(source="policy.version")
    families = FamilyVerdictOutput(many=True, help_text="one verdict per family of audits, from which the overall "
                                                        "verdict is made by the policy's rule (empty before families)")
    subjects = serializers.JSONField(help_text="for a job of several subjects, each one's own verdict and families, "
                                               "by salted pseudonym (the certificate of a request shows its "
                                               "subject's); empty for a job of one")
    comparison = serializers.CharField(help_text="what the forget metrics were compared with: retrained_reference or "
                                                 "holdout (never-trained people, when no retrained model was affordable)")
    finished_at = serializers.DateTimeField()
    original_sha256 = serializers.CharField(source="original_version.sha256", default=None)
    unlearned_sha256 = serializers.CharField(source="unlearned_version.sha256", default=None)
    reference_sha256 = serializers.CharField(source="reference_version.sha256", default=None)
    results = AuditResultOutput(many=True)


class RequestOutput(serializers.Serializer):
    id = serializers.UUIDField()
    reference = serializers.CharField()
    status = serializers.ChoiceField(choices=RequestStatus.choices)
    status_label = serializers.CharField(source="get_status_display", help_text="the status's name for people")
    jurisdiction = serializers.CharField()
    full_name = serializers.CharField()
    email = serializers.EmailField()
    description = serializers.CharField()
    received_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField()
    days_left = serializers.SerializerMethodField()
    identity_verified_at = serializers.DateTimeField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_note = serializers.CharField()
    denial_ground = serializers.CharField()
    completed_at = serializers.DateTimeField(allow_null=True)
    failed_step = serializers.CharField()
    failure_reason = serializers.CharField()
    hold_reason = serializers.CharField(help_text="why it waits: on hold, or the question asked of the owner")
    extended_at = serializers.DateTimeField(allow_null=True, help_text="when the one extension was granted")
    extension_reason = serializers.CharField()
    first_approval_by = serializers.CharField(allow_null=True, source="first_approval_by.username", default=None,
                                              help_text="four eyes: who gave the first approval, awaiting a second")
    duplicate_of = serializers.CharField(allow_null=True, source="duplicate_of.reference", default=None,
                                         help_text="the reference of the open request this one repeats")

    def get_days_left(self, request) -> int:
        return selectors.days_left(request)


class DeletionPlanOutput(serializers.Serializer):
    model = serializers.CharField()
    model_kind = serializers.CharField(help_text="causal_lm | classifier | regressor")
    regime = serializers.CharField(help_text="plain | sisa | s3t")
    kind = serializers.CharField(help_text="exact (removal) or approximate (suppression)")
    method = serializers.CharField(required=False)
    records = serializers.IntegerField(help_text="training records of the subject this model still holds")
    summary = serializers.CharField()
    plan = serializers.JSONField(required=False, help_text="exact: affected shards, checkpoints to resume from, "
                                                           "records per slice, estimated optimizer steps and seconds")


class ForgetMaterialOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField(help_text="document (its text; the file itself is not kept) or qa")
    name = serializers.CharField(help_text="the document's file name")
    size = serializers.IntegerField(help_text="bytes uploaded")
    sha256 = serializers.CharField()
    question = serializers.CharField()
    answer = serializers.CharField()
    text = serializers.CharField(help_text="a document's text")


class NearMatchOutput(serializers.Serializer):
    record_id = serializers.CharField()
    kind = serializers.CharField()
    owner_key = serializers.CharField(help_text="the record's owner in the lineage (empty: about no one)")
    matched = serializers.CharField(help_text="what its text contains: the subject's e-mail or name")
    snippet = serializers.CharField()


class ForgetReviewOutput(serializers.Serializer):
    model = serializers.CharField()
    linked_records = serializers.ListField(child=serializers.DictField(), help_text=(
        "record_id and kind of the subject's records through lineage: forgotten on approval"))
    near_matches = NearMatchOutput(many=True, help_text=(
        "other records whose text names the subject: forgotten only if confirmed in include_records"))
    near_matches_total = serializers.IntegerField()


class RequestDetailOutput(RequestOutput):
    deletion_plans = serializers.SerializerMethodField(
        help_text="until the request is scheduled: what removing the subject from each model will do and cost")
    forget_material = ForgetMaterialOutput(many=True, source="materials.all",
                                           help_text="what the owner handed in for the models to forget")
    forget_review = serializers.SerializerMethodField(
        help_text="until the request is scheduled, per model: the records linked to the subject and near matches")
    confirmed_records = serializers.JSONField(help_text="per model, the records legal added at approval")
    material_confirmed = serializers.BooleanField(help_text="whether the owner's material is forgotten too")

    @extend_schema_field(ForgetReviewOutput(many=True))
    def get_forget_review(self, request) -> list:
        return ForgetReviewOutput(selectors.pending_forget_review(request), many=True).data
    jobs = JobOutput(many=True, source="jobs.all")
    audits = serializers.SerializerMethodField()
    certificate = serializers.SerializerMethodField()

    @extend_schema_field(DeletionPlanOutput(many=True))
    def get_deletion_plans(self, request) -> list:
        return DeletionPlanOutput(selectors.pending_deletion_plans(request), many=True).data

    @extend_schema_field(AuditRunOutput(many=True))
    def get_audits(self, request) -> list:
        runs = [job.audit_run for job in request.jobs.all() if hasattr(job, "audit_run")]
        return AuditRunOutput(runs, many=True).data

    def get_certificate(self, request) -> dict | None:
        certificate = selectors.certificate_of(request)
        if certificate is None:
            return None
        return {"serial": certificate.serial, "pdf_sha256": certificate.pdf_sha256, "issued_at": certificate.issued_at,
                "download": f"/api/v1/requests/{request.pk}/certificate/", "verify": f"/verify/{certificate.serial}/"}


class RequestPagination(CheckedCursorPagination):
    ordering = "-received_at"


class RequestListApi(ListAPIView):
    serializer_class = RequestOutput
    pagination_class = RequestPagination

    class Query(serializers.Serializer):
        class Meta:
            ref_name = "RequestListQuery"

        status = ChoiceField(choices=RequestStatus.choices, required=False, allow_blank=True,
                             help_text="only the requests in this state (empty: all)")

    @extend_schema(parameters=[Query])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        query = self.Query(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.request_list(status=query.validated_data.get("status", ""))


class RequestDetailApi(APIView):
    @extend_schema(responses=RequestDetailOutput)
    def get(self, request, request_id):
        return Response(RequestDetailOutput(selectors.request_detail(request_id)).data)


class ApproveRequestApi(APIView):
    class Input(serializers.Serializer):
        class Meta:
            ref_name = "ApproveRequestInput"  # one schema component per input, not one "Input" for all

        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
        include_records = serializers.DictField(
            child=serializers.ListField(child=serializers.CharField(max_length=120), max_length=10_000),
            required=False, default=dict,
            help_text="per model name, training records to forget beyond those linked to the subject (from "
                      "forget_review's near matches)")
        forget_material = serializers.BooleanField(
            required=False, default=False,
            help_text="also forget what the owner handed in (forget_material): approximate methods take it as "
                      "forget texts")

    @extend_schema(request=Input, responses=RequestDetailOutput)
    def post(self, request, request_id):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        services.approve_request(request_id=request_id, user=request.user, **data.validated_data)
        return Response(RequestDetailOutput(selectors.request_detail(request_id)).data)


class DenyRequestApi(APIView):
    class Input(serializers.Serializer):
        class Meta:
            ref_name = "DenyRequestInput"

        reason = serializers.CharField(max_length=4000)
        ground = ChoiceField(choices=DenialGround.choices, required=False, default="",
                             help_text="the GDPR Art. 17(3) exception the denial cites (empty: none)")

    @extend_schema(request=Input, responses=RequestDetailOutput)
    def post(self, request, request_id):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        services.deny_request(request_id=request_id, user=request.user, **data.validated_data)
        return Response(RequestDetailOutput(selectors.request_detail(request_id)).data)


class JobDetailApi(APIView):
    @extend_schema(responses=JobOutput)
    def get(self, request, job_id):
        return Response(JobOutput(unlearning_selectors.job_detail(job_id)).data)


class RequeueJobInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class FailJobInput(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="what the requests' owners and the audit log read")


class JobActionApi(APIView):
    """An operator's action on a stuck job: one service each, with its audit event."""

    Input: type[serializers.Serializer]

    @staticmethod
    def act(*, job_id: int, user, reason: str) -> None: ...

    def post(self, request, job_id):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        job = unlearning_selectors.job_detail(job_id)
        self.act(job_id=job.pk, user=request.user, **data.validated_data)
        return Response(JobOutput(unlearning_selectors.job_detail(job.pk)).data)


@extend_schema_view(post=extend_schema(request=RequeueJobInput, responses=JobOutput))
class RequeueJobApi(JobActionApi):
    """Put a running job whose worker is gone back in the queue (it keeps its attempt count)."""

    Input = RequeueJobInput
    act = staticmethod(unlearning_services.operator_requeue_job)


@extend_schema_view(post=extend_schema(request=FailJobInput, responses=JobOutput))
class FailJobApi(JobActionApi):
    """Give up on a running job: it fails with the reason, and so do its requests."""

    Input = FailJobInput
    act = staticmethod(unlearning_services.operator_fail_job)


class RequestEventsApi(APIView):
    @extend_schema(responses=inline_serializer("AuditEventOutput", {
        "seq": serializers.IntegerField(), "at": serializers.DateTimeField(), "actor": serializers.CharField(),
        "action": serializers.CharField(), "object_type": serializers.CharField(), "object_id": serializers.CharField(),
        "data": serializers.JSONField(), "entry_hash": serializers.CharField(),
    }, many=True))
    def get(self, request, request_id):
        events = selectors.request_events(selectors.request_detail(request_id))
        return Response([
            {"seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action, "object_type": e.object_type,
             "object_id": e.object_id, "data": e.data, "entry_hash": e.entry_hash}
            for e in events
        ])


class FileRenderer(renderers.BaseRenderer):
    """Only tells content negotiation which media type a file endpoint serves (its view answers the
    file itself; its errors are problem+json whatever was negotiated: compliance.api.errors)."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class CsvRenderer(FileRenderer):
    media_type, format = "text/csv", "csv"


class PdfRenderer(FileRenderer):
    media_type, format = "application/pdf", "pdf"


class CertificateApi(APIView):
    renderer_classes = [PdfRenderer]

    @extend_schema(responses={(200, "application/pdf"): bytes})
    def get(self, request, request_id):
        certificate = selectors.certificate_of(selectors.request_detail(request_id))
        if certificate is None:
            raise NotFound("this request has no certificate yet")
        pdf = audit_selectors.certificate_pdf(certificate)
        return FileResponse(io.BytesIO(pdf), content_type="application/pdf", as_attachment=True,
                            filename=f"{certificate.serial}.pdf")


class AuditRunListApi(APIView):
    @extend_schema(responses=AuditRunOutput(many=True))
    def get(self, request, request_id):
        runs = audit_selectors.audit_runs_of(selectors.request_detail(request_id))
        return Response(AuditRunOutput(runs, many=True).data)


class AuditRunFileApi(APIView):
    """One of an audit run's export files (audits.exports.FILES), the same bytes as the portal's."""

    filename = ""

    def get(self, request, request_id, run_id):
        run = audit_selectors.audit_run_of(selectors.request_detail(request_id), run_id)
        return exports.download(run, self.filename)


@extend_schema_view(get=extend_schema(
    operation_id="requests_audits_results_json", responses={(200, "application/json"): OpenApiTypes.OBJECT},
    description="Everything the run stored: policy, verdict, the three models' SHA-256, and each result with values, "
                "intervals, margin, verdict, explanation, sample size, details and per-item scores."))
class AuditRunResultsJsonApi(AuditRunFileApi):
    filename = "results.json"


@extend_schema_view(get=extend_schema(
    operation_id="requests_audits_results_csv", responses={(200, "text/csv"): OpenApiTypes.STR},
    description="One row per metric: " + ", ".join(exports.SUMMARY_COLUMNS) + "."))
class AuditRunResultsCsvApi(AuditRunFileApi):
    filename = "results.csv"
    renderer_classes = [CsvRenderer]


@extend_schema_view(get=extend_schema(
    operation_id="requests_audits_items_csv", responses={(200, "text/csv"): OpenApiTypes.STR},
    description="One row per per-item score: " + ", ".join(exports.ITEM_COLUMNS) + "."))
class AuditRunItemsCsvApi(AuditRunFileApi):
    filename = "items.csv"
    renderer_classes = [CsvRenderer]


class UnroutedApi(APIView):
    """Every path under /api/v1/ that no route matches (the URLconf's last entry): a 404 problem
    instead of Django's HTML page. Answered before authentication: an unknown path reveals nothing."""

    schema = None  # not an endpoint: left out of the OpenAPI schema
    authentication_classes, permission_classes = [], []

    def initial(self, request, *args, **kwargs):
        raise exceptions.NotFound(f"no API endpoint at {request.path}")
