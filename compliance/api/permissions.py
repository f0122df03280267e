from rest_framework.permissions import BasePermission

LEGAL_GROUP = "legal"
ML_OPERATOR_GROUP = "ml-operators"
SCOPES = {"legal": LEGAL_GROUP, "ml-operator": ML_OPERATOR_GROUP}


class IsLegalTeam(BasePermission):
    """Legal users (the `legal` group, and only they: not staff as such) drive the request
    lifecycle through the API. Staff is the admin site's flag, given for other work; a legal
    decision needs a member of the legal team."""

    message = "this API is for the legal team: authenticate with a token of a user in the legal group"

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated) or in_group(user, ML_OPERATOR_GROUP):
            return False  # an operator's token never drives requests, even one also put in the legal group
        return in_group(user, LEGAL_GROUP)


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
