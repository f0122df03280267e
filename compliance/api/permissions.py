from rest_framework.permissions import SAFE_METHODS, BasePermission

LEGAL_GROUP = "legal"
ML_OPERATOR_GROUP = "ml-operators"
AUDITOR_GROUP = "auditors"
SCOPES = {"legal": LEGAL_GROUP, "ml-operator": ML_OPERATOR_GROUP, "auditor": AUDITOR_GROUP}


class IsLegalTeam(BasePermission):
    """The request lifecycle's API. Legal users (the `legal` group, and only they: not staff as such)
    read it and drive it; auditors (the `auditors` group: a supervisory authority's or an internal
    auditor's token) read everything legal reads and change nothing. Staff is the admin site's flag,
    given for other work; a legal decision needs a member of the legal team."""

    message = "this API is for the legal team: authenticate with a token of a user in the legal group"

    def has_permission(self, request, view):
        access = lifecycle_access(request.user)
        if access == DRIVES or (access == READS and request.method in SAFE_METHODS):
            return True
        if access == READS:
            self.message = "an auditor's token reads the request lifecycle; only the legal team changes it"
        return False


DRIVES, READS = "drives", "reads"


def lifecycle_access(user) -> str:
    """What a user may do with the request lifecycle, by one rule for the API (IsLegalTeam) and the
    review console (compliance.console): DRIVES (the legal team), READS (an auditor), or "" (anyone
    else: anonymous, an ML operator even one also put in the legal group, staff as such)."""
    if not (user and user.is_authenticated) or in_group(user, ML_OPERATOR_GROUP):
        return ""  # an operator never drives requests, even one also put in the legal group
    if in_group(user, LEGAL_GROUP):
        return DRIVES
    return READS if in_group(user, AUDITOR_GROUP) else ""


class IsMLOperator(BasePermission):
    """ML operators (the `ml-operators` group, and only they: not staff as such) register and
    inspect the models under governance."""

    message = "this API is for ML operators: authenticate with a token of a user in the ml-operators group"

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and in_group(user, ML_OPERATOR_GROUP)
                    and not in_group(user, LEGAL_GROUP))


def in_group(user, name: str) -> bool:
    return user.groups.filter(name=name).exists()
