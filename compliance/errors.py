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


class TooManyCodes(ServiceError):
    status, title, code = 429, "Too many codes requested", "too_many_codes"
