from django.core.management.base import BaseCommand, CommandError

from compliance.errors import ServiceError
from unlearning.services import create_serving_key


class Command(BaseCommand):
    help = ("Create a key of the OpenAI-compatible endpoint (make serve-models) for the named language models; "
            "the key is printed once and stored only as its hash.")

    def add_arguments(self, parser):
        parser.add_argument("name", help="what the key is for (shown in lists and in the audit log)")
        parser.add_argument("--model", action="append", required=True, dest="models",
                            help="a governed language model the key may call (repeat for several)")

    def handle(self, *args, name, models, **options):
        try:
            _, key = create_serving_key(name=name, asset_names=models, created_by="cli")
        except ServiceError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(key)
