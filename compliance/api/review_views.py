"""The legal team's review actions on the API, the same as the review console's (compliance.console):
hold and resume, a question to the owner, the one extension of the deadline, internal notes, and
decisions on many requests at once. Each view: an input serializer → one service → the request (or
the notes, or the outcome). The services' refusals are ServiceErrors, answered as problem+json by
compliance.api.errors."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from compliance import selectors, services
from compliance.api.fields import ChoiceField
from compliance.api.views import RequestDetailOutput
from compliance.models import DenialGround, NoteKind


def request_answer(request_id) -> Response:
    return Response(RequestDetailOutput(selectors.request_detail(request_id)).data)


class HoldRequestApi(APIView):
    """Put a request in review on hold (the statutory deadline keeps running)."""

    class Input(serializers.Serializer):
        class Meta:
            ref_name = "HoldRequestInput"

        reason = serializers.CharField(max_length=4000, help_text="why it waits (internal)")

    @extend_schema(request=Input, responses=RequestDetailOutput)
    def post(self, request, request_id):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        services.hold_request(request_id=request_id, user=request.user, **data.validated_data)
        return request_answer(request_id)


class ResumeRequestApi(APIView):
    """Bring a request on hold back into review. It takes no input: the body, if any, is not read."""

    @extend_schema(request=None, responses=RequestDetailOutput)
    def post(self, request, request_id):
        services.resume_request(request_id=request_id, user=request.user)
        return request_answer(request_id)


class AskOwnerApi(APIView):
    """Ask the owner for what the decision needs: e-mailed to them; the request waits for their answer."""

    class Input(serializers.Serializer):
        class Meta:
            ref_name = "AskOwnerInput"

        question = serializers.CharField(max_length=4000, help_text="e-mailed to the owner as it is")

    @extend_schema(request=Input, responses=RequestDetailOutput)
    def post(self, request, request_id):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        services.ask_owner(request_id=request_id, user=request.user, **data.validated_data)
        return request_answer(request_id)


class ExtendDeadlineApi(APIView):
    """The one extension the law allows, before the deadline (GDPR: two more months; CCPA: 45 days);
    the owner is e-mailed the new date and the reason."""

    class Input(serializers.Serializer):
        class Meta:
            ref_name = "ExtendDeadlineInput"

        reason = serializers.CharField(max_length=4000, help_text="why more time is needed: e-mailed to the owner")

    @extend_schema(request=Input, responses=RequestDetailOutput)
    def post(self, request, request_id):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        services.extend_deadline(request_id=request_id, user=request.user, **data.validated_data)
        return request_answer(request_id)


class NoteOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=NoteKind.choices,
                                   help_text="internal (never shown to the owner), question (to the owner) or "
                                             "owner_reply (the owner's answer)")
    author = serializers.CharField(source="author.username", default=None, help_text="null: the owner")
    text = serializers.CharField()
    created_at = serializers.DateTimeField()


class RequestNotesApi(APIView):
    """The reviewers' thread on a request (internal notes, questions, the owner's answers), and a new internal note."""

    class Input(serializers.Serializer):
        class Meta:
            ref_name = "AddNoteInput"

        text = serializers.CharField(max_length=10_000)

    @extend_schema(responses=NoteOutput(many=True))
    def get(self, request, request_id):
        return Response(NoteOutput(selectors.request_notes(selectors.request_detail(request_id)), many=True).data)

    @extend_schema(request=Input, responses={201: NoteOutput})
    def post(self, request, request_id):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        note = services.add_note(request_id=request_id, user=request.user, **data.validated_data)
        return Response(NoteOutput(note).data, status=status.HTTP_201_CREATED)


class BulkDecideApi(APIView):
    """Approve or deny many requests, each on its own: one refused does not undo the others. A bulk
    approval forgets only the records linked to each owner; a request needing four eyes gets its
    first approval."""

    class Input(serializers.Serializer):
        class Meta:
            ref_name = "BulkDecideInput"

        request_ids = serializers.ListField(child=serializers.CharField(max_length=64), min_length=1, max_length=500)
        decision = ChoiceField(choices=[("approve", "approve"), ("deny", "deny")])
        reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000,
                                       help_text="a denial's reason, which the owners read (required to deny); "
                                                 "an approval's note")
        ground = ChoiceField(choices=DenialGround.choices, required=False, default="",
                             help_text="the exception a denial cites; one of another jurisdiction fails that request")

    @extend_schema(request=Input, responses=inline_serializer("BulkDecideOutput", {
        "succeeded": serializers.ListField(child=serializers.CharField(), help_text="the ids decided"),
        "failed": serializers.ListField(child=inline_serializer("BulkDecideFailure", {
            "id": serializers.CharField(), "detail": serializers.CharField(help_text="why it was refused")})),
    }))
    def post(self, request):
        data = self.Input(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(services.bulk_decide(user=request.user, **data.validated_data))
