from rest_framework.permissions import BasePermission

LEGAL_GROUP = "legal"


class IsLegalTeam(BasePermission):
    """Legal users (the `legal` group) and staff drive the request lifecycle through the API."""

    message = "this API is for the legal team: authenticate with a legal user's token"

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and (user.is_staff or user.groups.filter(name=LEGAL_GROUP).exists()))
