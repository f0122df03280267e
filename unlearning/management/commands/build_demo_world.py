from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from unlearning.models import ModelAsset

DEMO_MODEL_NAME = "demo-world-lm"
DEMO_MODEL_NAMES = {"plain": DEMO_MODEL_NAME, "sisa": "demo-world-sisa", "s3t": "demo-world-s3t"}


class Command(BaseCommand):
    help = "Generate the demo world, train its small GPT-2 from scratch, and register it as a governed model."

    def add_arguments(self, parser):
        parser.add_argument("--people", type=int, default=settings.DEMO_WORLD_PEOPLE)
        parser.add_argument("--seed", type=int, default=settings.DEMO_WORLD_SEED)
        parser.add_argument("--epochs", type=int, default=settings.DEMO_TRAINING_EPOCHS)
        parser.add_argument("--name", default=DEMO_MODEL_NAME)
        parser.add_argument("--regime", choices=("plain", "sisa", "s3t"), default="plain",
                            help="plain: one model (approximate unlearning); sisa: shards retrained for exact deletion; "
                                 "s3t: a frozen base with LoRA adapters switched off for exact deletion")
        parser.add_argument("--shards", type=int, default=4, help="sisa (s3t: see unlearning.s3t.S3TConfig)")
        parser.add_argument("--slices", type=int, default=4, help="sisa (s3t: see unlearning.s3t.S3TConfig)")

    def handle(self, *args, people, seed, epochs, name, regime, shards, slices, **options):
        if ModelAsset.objects.filter(name=name).exists():
            self.stdout.write(f"Model {name} is already registered; nothing to build.")
            return
        from unlearning import services
        from unlearning.demo_world import build_demo_model, recipe_dict
        from unlearning.lm import TrainingRecipe
        from unlearning.s3t import S3TConfig
        from unlearning.sisa import SisaConfig
        from unlearning.world import WorldConfig

        config = WorldConfig(people=people, seed=seed)
        recipe = TrainingRecipe(epochs=epochs, seed=seed)
        try:
            sisa = SisaConfig(shards=shards, slices=slices, seed=seed) if regime == "sisa" else None
        except ValueError as error:
            raise CommandError(str(error)) from None
        shape = f", {shards} shards × {slices} slices" if sisa else ", S3T adapters" if regime == "s3t" else ""
        self.stdout.write(f"Training {name} on a world of {people} fictitious people ({epochs} epochs{shape}, CPU)...")

        def report(epoch: int, loss: float) -> None:
            if epoch % 10 == 0 or epoch == epochs:
                self.stdout.write(f"  epoch {epoch:3d}/{epochs}  loss {loss:.3f}")

        built = build_demo_model(config, recipe, settings.MODEL_STORE_DIR, on_epoch=report, sisa=sisa,
                                 s3t_config=S3TConfig(seed=seed) if regime == "s3t" else None)
        asset = services.register_model(
            name=name, architecture=f"GPT-2 ({recipe.n_layer} layers, d={recipe.n_embd}) trained from scratch",
            training_recipe=recipe_dict(recipe), checkpoint_sha256=built.checkpoint_sha256,
            checkpoint_path=built.checkpoint_path, training_manifest=built.training_manifest,
            holdout_manifest=built.holdout_manifest, records=built.lineage, lineage=built.sisa_lineage or built.s3t_lineage,
        )
        self.stdout.write(self.style.SUCCESS(
            f"Registered {asset.name} @ {built.checkpoint_sha256[:16]}… in {built.training_seconds:.0f} s: "
            f"{len(built.world.trained_people)} trained people, {len(built.world.holdout_people)} never trained, "
            f"{len(built.lineage)} training records."
        ))
