"""Train a governed causal LM from the operator's own JSONL manifests and register it."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from unlearning import intake
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
    try:
        return intake.read_records(path, kind)
    except intake.IntakeRejected as error:
        raise CommandError(str(error)) from None
