"""Every API error as RFC 9457 `application/problem+json`."""

from http import HTTPStatus

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from compliance.errors import ServiceError

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem(status_code: int, title: str, detail, code: str, instance: str = "", **extra) -> Response:
    body = {"type": f"/api/v1/problems/{code}", "title": title, "status": status_code, "detail": detail, **extra}
    if instance:
        body["instance"] = instance
    return Response(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def problem_exception_handler(exc, context):
    request = context.get("request")
    instance = request.path if request is not None else ""
    if isinstance(exc, ServiceError):
        return problem(exc.status, exc.title, exc.detail, exc.code, instance)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handling and logging take over
    if isinstance(exc, exceptions.ValidationError):
        return problem(status.HTTP_400_BAD_REQUEST, "Invalid input", "some fields are missing or invalid",
                       "invalid_input", instance, errors=response.data)
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    result = problem(response.status_code, HTTPStatus(response.status_code).phrase, str(detail),
                     code if isinstance(code, str) else "error", instance)
    for header, value in response.headers.items():
        if header.lower() in ("www-authenticate", "retry-after", "allow"):
            result[header] = value
    return result
