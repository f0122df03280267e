from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from compliance.api.permissions import LEGAL_GROUP


def ensure_legal_user(username: str):
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.groups.add(Group.objects.get_or_create(name=LEGAL_GROUP)[0])
    token, _ = Token.objects.get_or_create(user=user)
    return user, token


class Command(BaseCommand):
    help = "Create (or find) a legal-team user and print its API token."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        _, token = ensure_legal_user(username)
        self.stdout.write(token.key)
