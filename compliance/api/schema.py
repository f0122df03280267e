"""The OpenAPI schema's error answers: every operation lists the 4xx statuses it can answer, each an
RFC 9457 problem (compliance.api.errors), read from what the operation is rather than declared view
by view.

  400  it reads a body or query parameters: invalid input, a body that does not parse, or a service's
       refusal of what was asked (ServiceError)
  401  it authenticates: no token, or one that is not valid (WWW-Authenticate says how)
  403  it has permissions: the token's user is not in the API's group
  404  it names an object in its path (NotFound), or pages with a cursor that cannot be used
  409  a POST on an object named in its path that creates nothing (no 201): a transition of that
       object's state, which the service refuses when the state does not allow it
       (TransitionNotAllowed)
  413  it reads a body: one larger than Django accepts (DATA_UPLOAD_MAX_MEMORY_SIZE)
  415  it reads a body: one of a media type it does not parse
  429  it is throttled: Retry-After says when to ask again

A status the view declares itself (extend_schema's responses) is kept as declared."""

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from compliance.api.errors import PROBLEM_CONTENT_TYPE

PROBLEM_STATUSES = {
    400: "Invalid input (invalid_input: `errors` says what is wrong with each field), a body that does not parse "
         "(parse_error), or a request the service refuses (its detail says why).",
    401: "No token, or one that is not valid: send `Authorization: Token <key>`.",
    403: "The token's user may not do this: it is not in this API's group (an auditor's token only reads).",
    404: "No such object, or a pagination cursor that cannot be used.",
    409: "The object's state does not allow this now (transition_not_allowed): the detail says what it is.",
    413: "The request body is larger than this API accepts.",
    415: "The body's media type is not one this operation reads.",
    429: "Too many requests: Retry-After says in how many seconds to ask again.",
}


class Problem(serializers.Serializer):
    """An error answer, RFC 9457 `application/problem+json` (compliance.api.errors.problem)."""

    type = serializers.CharField(help_text="a URI reference naming the kind of problem: /api/v1/problems/<code>")
    title = serializers.CharField(help_text="the kind of problem, in words")
    status = serializers.IntegerField(help_text="the HTTP status of the answer")
    detail = serializers.CharField(help_text="what went wrong this time")
    instance = serializers.CharField(required=False, help_text="the path that answered")
    errors = serializers.DictField(
        child=serializers.JSONField(), required=False,
        help_text="invalid_input only: per field, what is wrong with it (a list of messages, or per key or index of "
                  "a nested field its own); non_field_errors: the input as a whole")


class ProblemAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema (REST_FRAMEWORK's DEFAULT_SCHEMA_CLASS), with each operation's
    problem answers (this module's docstring)."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        problem = {"schema": self.resolve_serializer(Problem, "response").ref}
        for status in self.problem_statuses(operation):
            response = {"description": PROBLEM_STATUSES[status], "content": {PROBLEM_CONTENT_TYPE: problem}}
            if status == 401:
                response["headers"] = {"WWW-Authenticate": {
                    "schema": {"type": "string"}, "required": True, "description": "the scheme to authenticate with"}}
            if status == 429:
                response["headers"] = {"Retry-After": {
                    "schema": {"type": "integer"}, "description": "seconds until the limit lifts (absent: not by "
                                                                  "waiting)"}}
            operation["responses"].setdefault(str(status), response)
        return operation

    def problem_statuses(self, operation: dict) -> list[int]:
        places = {parameter["in"] for parameter in operation.get("parameters", [])}
        has_body = "requestBody" in operation
        statuses = []
        if has_body or "query" in places:
            statuses.append(400)
        if self.view.get_authenticators():
            statuses.append(401)
        if self.view.get_permissions():
            statuses.append(403)
        if "path" in places or getattr(self.view, "paginator", None) is not None:
            statuses.append(404)
        if self.method == "POST" and "path" in places and "201" not in operation["responses"]:
            statuses.append(409)
        if has_body:
            statuses += [413, 415]
        if self.view.get_throttles():
            statuses.append(429)
        return statuses
