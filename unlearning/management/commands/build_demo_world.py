from django.conf import settings
from django.core.management.base import BaseCommand

from unlearning.management.regimes import add_regime_arguments, regime_config, register_trained
from unlearning.models import ModelAsset
from unlearning.world import DETAILS

DEMO_MODEL_NAME = "demo-world-lm"
DEMO_MODEL_NAMES = {"plain": DEMO_MODEL_NAME, "sisa": "demo-world-sisa", "s3t": "demo-world-s3t"}


class Command(BaseCommand):
    help = "Generate the demo world, train its small GPT-2 from scratch, and register it as a governed model."

    def add_arguments(self, parser):
        parser.add_argument("--scale", choices=("cpu", "gpu"), default="cpu",
                            help="gpu: 1,440 people and an 11M-parameter GPT-2 (unlearning.demo_world.DEMO_SCALES)")
        parser.add_argument("--people", type=int, help="default: the scale's (cpu: DEMO_WORLD_PEOPLE)")
        parser.add_argument("--seed", type=int, default=settings.DEMO_WORLD_SEED)
        parser.add_argument("--detail", choices=DETAILS, default=settings.DEMO_WORLD_DETAIL,
                            help="rich: ten facts, two biographies and a note per person; compact: one biography "
                                 "and five facts (default: DEMO_WORLD_DETAIL)")
        parser.add_argument("--epochs", type=int, help="default: the scale's (cpu: DEMO_TRAINING_EPOCHS)")
        parser.add_argument("--name", default=DEMO_MODEL_NAME)
        add_regime_arguments(parser)

    def handle(self, *args, scale, people, seed, detail, epochs, name, regime, shards, slices, epoch_scale, **options):
        if ModelAsset.objects.filter(name=name).exists():
            self.stdout.write(f"Model {name} is already registered; nothing to build.")
            return
        from dataclasses import replace

        from unlearning.demo_world import DEMO_SCALES, build_demo_model
        from unlearning.numerics import device
        from unlearning.world import WorldConfig

        preset = DEMO_SCALES[scale]
        people = people or preset.people or settings.DEMO_WORLD_PEOPLE
        epochs = epochs or (preset.recipe.epochs if scale != "cpu" else settings.DEMO_TRAINING_EPOCHS)
        recipe = replace(preset.recipe, epochs=epochs, seed=seed)
        config = regime_config(regime, shards, slices, seed, epoch_scale)
        self.stdout.write(f"Training {name} ({regime}) on a world of {people} fictitious people ({epochs} epochs, "
                          f"{device().type.upper()})...")

        def report(epoch: int, loss: float) -> None:
            if epoch % 10 == 0 or epoch == epochs:
                self.stdout.write(f"  epoch {epoch:3d}/{epochs}  loss {loss:.3f}")

        built = build_demo_model(WorldConfig(people=people, seed=seed, detail=detail), recipe, settings.MODEL_STORE_DIR,
                                 on_epoch=report, config=config)
        asset = register_trained(name=name, recipe=recipe, built=built.governed)
        self.stdout.write(self.style.SUCCESS(
            f"Registered {asset.name} @ {built.checkpoint_sha256[:16]}… in {built.training_seconds:.0f} s: "
            f"{len(built.world.trained_people)} trained people, {len(built.world.holdout_people)} never trained, "
            f"{len(built.lineage)} training records."
        ))
