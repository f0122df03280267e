"""Every API error as RFC 9457 `application/problem+json`."""

import logging
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler

from compliance.errors import ServiceError

PROBLEM_CONTENT_TYPE = "application/problem+json"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the request body is too large"
    default_code = "payload_too_large"


class ProblemResponse(Response):
    """A problem body, rendered as JSON whatever renderer the request negotiated: the browsable API's
    HTML for a browser, or a file endpoint's CSV or PDF (they only say which media types it serves)."""

    @property
    def rendered_content(self):
        self.accepted_renderer, self.accepted_media_type = JSONRenderer(), PROBLEM_CONTENT_TYPE
        return super().rendered_content


def problem(status_code: int, title: str, detail, code: str, instance: str = "", **extra) -> Response:
    body = {"type": f"/api/v1/problems/{code}", "title": title, "status": status_code, "detail": detail, **extra}
    if instance:
        body["instance"] = instance
    return ProblemResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def problem_exception_handler(exc, context):
    request = context.get("request")
    instance = request.path if request is not None else ""
    if isinstance(exc, ServiceError):
        result = problem(exc.status, exc.title, exc.detail, exc.code, instance)
        if getattr(exc, "retry_after", None):  # a limit that lifts with time (compliance.errors.TooManyRequests)
            result["Retry-After"] = str(exc.retry_after)
        return result
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, SuspiciousOperation):
        exc = refused_body(exc, request)
    response = exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handling and logging take over
    if isinstance(exc, exceptions.ValidationError):
        # `errors` is always by field (compliance.api.schema.Problem): a view's ValidationError of a
        # message or a list of them is about the input as a whole, as a serializer's validate() is.
        errors = response.data
        if not isinstance(errors, dict):
            errors = {api_settings.NON_FIELD_ERRORS_KEY: errors}
        return problem(status.HTTP_400_BAD_REQUEST, "Invalid input", "some fields are missing or invalid",
                       "invalid_input", instance, errors=errors)
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    result = problem(response.status_code, HTTPStatus(response.status_code).phrase, str(detail),
                     code if isinstance(code, str) else "error", instance)
    for header, value in response.headers.items():
        if header.lower() in ("www-authenticate", "retry-after", "allow"):
            result[header] = value
    return result


def refused_body(exc: SuspiciousOperation, request) -> exceptions.APIException:
    """Django's refusals of a request, raised where a view first reads `request.data`: too large a
    body (413), too many fields or files, a malformed multipart body (400). Left to Django they
    answered its HTML 400 page. Logged to django.security, as Django logs them."""
    logging.getLogger(f"django.security.{exc.__class__.__name__}").warning(
        str(exc), extra={"status_code": 413 if isinstance(exc, RequestDataTooBig) else 400, "request": request})
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(f"the request body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes "
                               "this API accepts")
    return exceptions.ParseError(str(exc))
