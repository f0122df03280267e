"""Train a governed tabular classifier or regressor as SISA shards and register it."""

from dataclasses import asdict

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from unlearning.management.commands.train_governed_model import read
from unlearning.models import ModelAsset, ModelKind

KINDS = {"classification": ModelKind.CLASSIFIER, "regression": ModelKind.REGRESSOR}
# unlearning.tabular.LOADERS' names, spelled out so that loading this command imports no torch.
BUNDLED_DATASETS = ("digits", "breast_cancer", "diabetes")


class Command(BaseCommand):
    help = ("Train a small MLP classifier or regressor as SISA shards (majority vote / mean) on a data set bundled "
            "with scikit-learn, or on your own JSONL rows (record_id, owner_key, kind \"row\", features, target), "
            "and register it with its lineage. --shards 1 --slices 1 trains one plain model, which an exact "
            "deletion retrains in full; --regime plain trains one MLP whose rows leave it by an approximate method "
            "(IAU by default).")

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--dataset", choices=BUNDLED_DATASETS,
                            help="bundled with scikit-learn; one fictitious subject per row "
                                 "(subject-00017@digits.example owns row 17)")
        source.add_argument("--manifest", help="your training rows (JSONL), features already prepared")
        parser.add_argument("--holdout", help="with --manifest: never-trained rows (JSONL), the audits' non-members")
        parser.add_argument("--task", choices=tuple(KINDS), help="with --manifest: what the target is")
        parser.add_argument("--shards", type=int, default=4)
        parser.add_argument("--slices", type=int, default=4)
        parser.add_argument("--epochs", type=int, default=40, help="of plain training; SISA spreads them over slices")
        parser.add_argument("--hidden", type=int, default=64)
        parser.add_argument("--epoch-scale", type=float, default=1.0,
                            help="each shard's training compute relative to what plain training spends on its rows "
                                 "(1.0: digits within 1.3 points of plain on average over five seeds)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--regime", choices=("sisa", "plain"), default="sisa",
                            help="sisa: exact deletion by shard retraining; plain: one MLP, approximate unlearning")
        parser.add_argument("--gradient-norm-penalty", type=float, default=0.0,
                            help="α·‖∇loss‖² added in training (IAU's gradient restriction: 0.005 in its paper)")

    def handle(self, *args, name, dataset, manifest, holdout, task, shards, slices, epochs, hidden, seed,
               epoch_scale, regime, gradient_norm_penalty, **options):
        from unlearning.governed import train_governed_rows
        from unlearning.management.regimes import regime_config
        from unlearning.services import register_model
        from unlearning.tabular import MLPRecipe, load_tabular, rows_dataset

        if ModelAsset.objects.filter(name=name).exists():
            raise CommandError(f"a model named {name} is already registered")
        if manifest and not (task and holdout):
            raise CommandError("--manifest needs --task and --holdout (the audits compare with never-trained rows)")
        try:
            data = (load_tabular(dataset, seed=seed) if dataset
                    else rows_dataset(name, task, read(manifest, kind="row"), read(holdout, kind="row")))
        except ValueError as error:
            raise CommandError(str(error)) from None
        sisa = regime_config("sisa", shards, slices, seed, epoch_scale) if regime == "sisa" else None
        if gradient_norm_penalty < 0:
            raise CommandError("--gradient-norm-penalty must not be negative")
        recipe = MLPRecipe(hidden=hidden, epochs=epochs, gradient_norm_penalty=gradient_norm_penalty)
        shape = f"SISA {shards}×{slices}" if sisa else "plain"
        self.stdout.write(f"Training {name} ({data.task}, {shape}) on {len(data.train)} rows...")
        try:
            built = train_governed_rows(data, recipe, sisa, settings.MODEL_STORE_DIR, seed=seed)
        except ValueError as error:  # e.g. a record id twice, or more shards than owners
            raise CommandError(str(error)) from None
        asset = register_model(
            name=name, kind=KINDS[data.task],
            architecture=f"MLP {data.features}→{hidden}→{data.outputs} ({data.task}), {shape}",
            training_recipe=asdict(recipe), checkpoint_sha256=built.sha256, checkpoint_path=built.path,
            training_manifest=built.training_manifest, holdout_manifest=built.holdout_manifest, records=built.records,
            lineage=built.lineage)
        self.stdout.write(self.style.SUCCESS(
            f"Registered {asset.name} ({regime}) @ {built.sha256[:16]}… in {built.seconds:.1f} s: "
            f"{len(built.records)} training rows, {len(data.test)} held out."))
