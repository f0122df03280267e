"""Domain errors. The API's exception handler maps each to one HTTP status and a problem+json body."""


class ServiceError(Exception):
    status = 400
    title = "Invalid request"
    code = "invalid"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    status, title, code = 404, "Not found", "not_found"


class TransitionNotAllowed(ServiceError):
    status, title, code = 409, "Transition not allowed", "transition_not_allowed"


class IdentityCodeRejected(ServiceError):
    status, title, code = 400, "Identity code rejected", "identity_code_rejected"


class TooManyRequests(ServiceError):
    """A limit on what one party may ask for was reached; `retry_after`: seconds until it may ask again
    (None: not by waiting)."""

    status, title, code = 429, "Too many requests", "too_many_requests"

    def __init__(self, detail: str, retry_after: int | None = None):
        super().__init__(detail)
        self.retry_after = retry_after


class TooManyCodes(TooManyRequests):
    title, code = "Too many codes requested", "too_many_codes"
