"""Train a governed causal LM from the operator's own JSONL manifests and register it."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from unlearning.management.regimes import add_regime_arguments, regime_config, register_trained
from unlearning.models import ModelAsset


class Command(BaseCommand):
    help = ("Train a causal LM from a JSONL training manifest (record_id, owner_key, kind, text per line) as a "
            "plain model, SISA shards or S3T adapters, with a fresh BPE tokenizer, and register it with its lineage.")

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--manifest", required=True, help="the training records (JSONL)")
        parser.add_argument("--holdout", help="never-trained records of the same kind (JSONL): the audits' non-members")
        parser.add_argument("--epochs", type=int, default=40)
        parser.add_argument("--vocab-size", type=int, default=3000)
        parser.add_argument("--seed", type=int, default=0)
        add_regime_arguments(parser)

    def handle(self, *args, name, manifest, holdout, epochs, vocab_size, seed, regime, shards, slices, epoch_scale,
               **options):
        from unlearning.governed import train_governed
        from unlearning.lm import TrainingRecipe, train_tokenizer

        if ModelAsset.objects.filter(name=name).exists():
            raise CommandError(f"a model named {name} is already registered")
        training, never_trained = read(manifest), read(holdout) if holdout else []
        config = regime_config(regime, shards, slices, seed, epoch_scale)
        recipe = TrainingRecipe(epochs=epochs, vocab_size=vocab_size, seed=seed)
        tokenizer = train_tokenizer([record["text"] for record in training + never_trained], vocab_size)
        self.stdout.write(f"Training {name} ({regime}) on {len(training)} records ({epochs} epochs)...")
        try:
            built = train_governed(training, never_trained, tokenizer, recipe, settings.MODEL_STORE_DIR, config=config)
        except ValueError as error:  # e.g. a record id twice, or more shards than people
            raise CommandError(str(error)) from None
        asset = register_trained(name=name, recipe=recipe, built=built)
        self.stdout.write(self.style.SUCCESS(
            f"Registered {asset.name} ({asset.regime}) @ {built.sha256[:16]}… in {built.seconds:.0f} s: "
            f"{len(built.records)} training records."))


def read(path: str, kind: str = "text") -> list[dict]:
    """A manifest's records (of text, or tabular rows when `kind` is "row"), or one line saying
    what is wrong with it."""
    from unlearning.manifest import read_manifest

    try:
        records = read_manifest(path)
    except (OSError, ValueError) as error:  # ValueError covers malformed JSON too
        raise CommandError(f"{path}: {error}") from None
    if not records:
        raise CommandError(f"{path}: no records")
    if wrong := next((r for r in records if (r["kind"] == "row") != (kind == "row")), None):
        use = "train_tabular_model" if kind == "text" else "train_governed_model"
        raise CommandError(f"{path}: record {wrong['record_id']} is of kind {wrong['kind']!r}: use {use} for it")
    if unreachable := next((r for r in records if r.get("owner_key") and not is_request_email(r["owner_key"])), None):
        raise CommandError(f"{path}: record {unreachable['record_id']}: owner_key {unreachable['owner_key']!r} is not an "
                           "e-mail address in lower case, so no removal request could ever name it")
    return records


def is_request_email(owner_key) -> bool:
    """What a request's subject key can equal: requests store their e-mail address in lower case."""
    try:
        validate_email(owner_key)
    except ValidationError:
        return False
    return owner_key == owner_key.lower()
