"""The ML operators' REST API (v1): the models under governance, and registering an operator's own
checkpoint. A scope of its own (compliance.api.permissions.IsMLOperator): the legal team's tokens
do not reach it, nor do these reach the request lifecycle. Loading a checkpoint needs transformers,
which the web process never imports, so a registration is accepted here (202) and carried out by
a worker; its resource says how it ended."""

from dataclasses import asdict

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance.api.permissions import IsMLOperator
from compliance.api.views import JobOutput
from unlearning import intake
from unlearning.methods import METHODS
from unlearning import selectors as unlearning_selectors
from unlearning import services as unlearning_services


class ModelOutput(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField(help_text="causal_lm | classifier | regressor")
    regime = serializers.CharField(help_text="how a record leaves it: plain | sisa | s3t (exact) or external "
                                             "(a checkpoint the service did not train: approximate only)")
    architecture = serializers.CharField()
    current_sha256 = serializers.CharField(source="current_version.sha256", default=None, allow_null=True,
                                           help_text="the SHA-256 of the version served now (null: none yet)")
    records = serializers.IntegerField(source="record_count", help_text="training records in its lineage")
    owners = serializers.IntegerField(source="owner_count", help_text="distinct owners of those records")
    question_template = serializers.CharField(help_text="how the audits ask it a question")
    created_at = serializers.DateTimeField()


class RegistrationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField(help_text="queued | running | registered | rejected")
    error = serializers.CharField(help_text="why it was rejected")
    model = serializers.SerializerMethodField()
    requested_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_model(self, registration) -> dict | None:
        if registration.asset is None:
            return None
        return {"name": registration.asset.name, "url": reverse("api-model", args=[registration.asset.name])}


class RegistrationInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, help_text="a slug: letters, digits, hyphens, underscores")
    checkpoint = serializers.FileField(
        required=False, help_text="a zip or tar(.gz) archive of the folder save_pretrained wrote (model and "
                                  "tokenizer), at its top or in one folder")
    checkpoint_path = serializers.CharField(
        required=False, max_length=500, help_text="instead of an upload: a folder under the import folder "
                                                  "(MODEL_IMPORT_DIR), relative to it")
    manifest = serializers.FileField(help_text="what the model was trained on (JSONL: record_id, owner_key, kind, "
                                               "text; question/answer records add the knowledge audits)")
    holdout = serializers.FileField(help_text="records of the same kinds it never saw (JSONL): the audits' "
                                              "non-members")
    question_template = serializers.CharField(
        required=False, allow_blank=True, max_length=2000,
        help_text="how the model is asked a question, {question} marking the place (default: the tokenizer's chat "
                  "template, else 'Question: {question}\\nAnswer:')")

    def validate(self, data):
        if ("checkpoint" in data) == ("checkpoint_path" in data):
            raise serializers.ValidationError("send the checkpoint as an archive (checkpoint) or name a folder in the "
                                              "import folder (checkpoint_path): one of the two")
        return data


class ModelListApi(APIView):
    permission_classes = [IsMLOperator]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=ModelOutput(many=True))
    def get(self, request):
        return Response(ModelOutput(unlearning_selectors.governed_models(), many=True).data)

    @extend_schema(request={"multipart/form-data": RegistrationInput}, responses={202: RegistrationOutput},
                   description="Register a causal LM the service did not train. The name and manifests are checked "
                               "at once (400 with the reason); a worker then loads the checkpoint offline, copies it "
                               "into the content-addressed store and pins its SHA-256. Poll the registration "
                               "(Location) until it is registered or rejected.")
    def post(self, request):
        data = RegistrationInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        intake.check_name(fields["name"])  # before anything is stored
        training = intake.received_records(fields["manifest"], "manifest")
        holdout = intake.received_records(fields["holdout"], "holdout")
        source = (intake.import_folder(fields["checkpoint_path"], settings.MODEL_IMPORT_DIR)
                  if "checkpoint_path" in fields else intake.received_checkpoint(fields["checkpoint"]))
        try:
            registration = unlearning_services.request_registration(
                name=fields["name"], checkpoint_source=source, training=training, holdout=holdout,
                question_template=fields.get("question_template"), user=request.user)
        except Exception:
            # Nothing will come for the upload, unless the registration was stored before the error
            # (the broker refusing the task after the commit): then the sweep or an operator retries it.
            if "checkpoint" in fields and not unlearning_selectors.registration_of_source(source):
                source.unlink(missing_ok=True)
            raise
        location = reverse("api-model-registration", args=[registration.pk])
        return Response(RegistrationOutput(registration).data, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": location})


class ModelDetailApi(APIView):
    permission_classes = [IsMLOperator]

    @extend_schema(responses=ModelOutput)
    def get(self, request, name):
        return Response(ModelOutput(unlearning_selectors.governed_model(name)).data)


class ModelRegistrationApi(APIView):
    permission_classes = [IsMLOperator]

    @extend_schema(responses=RegistrationOutput)
    def get(self, request, registration_id):
        return Response(RegistrationOutput(unlearning_selectors.registration_detail(registration_id)).data)


class MethodOutput(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    kind = serializers.CharField(help_text="approximate: a suppression verified by the audits, not a removal")
    model_kinds = serializers.ListField(child=serializers.CharField(), help_text="the model kinds it applies to")
    citation = serializers.CharField()
    description = serializers.CharField(help_text="what it does and where its defaults come from")
    defaults = serializers.DictField(help_text="every parameter with its default: a job's parameters override these")


class MethodListApi(APIView):
    """The approximate methods an operator can choose for a job, with their parameters' defaults."""

    permission_classes = [IsMLOperator]

    @extend_schema(responses=MethodOutput(many=True))
    def get(self, request):
        return Response(MethodOutput([method_description(method) for method in METHODS.values()], many=True).data)


def method_description(method) -> dict:
    return {"name": method.name, "label": method.label, "kind": method.kind, "model_kinds": sorted(method.model_kinds),
            "citation": method.citation, "description": " ".join((method.params_type.__doc__ or "").split()),
            "defaults": asdict(method.params())}


class ChooseMethodInput(serializers.Serializer):
    method = serializers.CharField(help_text="a method's name (GET /api/v1/methods/)")
    params = serializers.DictField(required=False, default=dict,
                                   help_text="overrides of the method's defaults, checked against its parameters")


class ChooseMethodApi(APIView):
    """Choose the approximate method and its parameters for a queued job: checked against the
    method's parameters now, and cited by the deletion plan, the job and the certificate."""

    permission_classes = [IsMLOperator]

    @extend_schema(request=ChooseMethodInput, responses=JobOutput)
    def post(self, request, job_id):
        data = ChooseMethodInput(data=request.data)
        data.is_valid(raise_exception=True)
        job = unlearning_selectors.job_detail(job_id)
        unlearning_services.choose_method(job_id=job.pk, user=request.user, **data.validated_data)
        return Response(JobOutput(unlearning_selectors.job_detail(job.pk)).data)
