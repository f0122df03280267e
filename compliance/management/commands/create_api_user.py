from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from compliance.api.permissions import SCOPES


def ensure_api_user(username: str, scope: str = "legal"):
    """A user of the API's `scope` (legal: the request lifecycle; auditor: reading it; ml-operator:
    registering models)
    and its token; found again on a second call."""
    user, _ = get_user_model().objects.get_or_create(username=username)
    if other := user.groups.filter(name__in=[g for s, g in SCOPES.items() if s != scope]).first():
        raise CommandError(f"{username} already holds the {other.name} scope: one user, one scope")
    user.groups.add(Group.objects.get_or_create(name=SCOPES[scope])[0])
    token, _ = Token.objects.get_or_create(user=user)
    return user, token


class Command(BaseCommand):
    help = "Create (or find) an API user of a scope and print its token."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--scope", choices=sorted(SCOPES), default="legal",
                            help="legal: drive removal requests; auditor: read them, change nothing; "
                                 "ml-operator: register and inspect governed models")

    def handle(self, *args, username, scope, **options):
        _, token = ensure_api_user(username, scope)
        self.stdout.write(token.key)
