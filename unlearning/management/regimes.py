"""What the training commands share: the regime options, and registering what was trained."""

from dataclasses import asdict

from django.core.management.base import CommandError

from unlearning import services

from unlearning.recipe import SISA_EPOCH_SCALE
from unlearning.regimes import REGIMES


def add_regime_arguments(parser) -> None:
    parser.add_argument("--regime", choices=sorted(name for name, regime in REGIMES.items() if regime.trains), default="plain",
                        help="; ".join(regime.label for regime in REGIMES.values() if regime.trains))
    parser.add_argument("--shards", type=int, default=4, help="sisa (s3t: unlearning.s3t.S3TConfig's defaults)")
    parser.add_argument("--slices", type=int, default=4, help="sisa (s3t: unlearning.s3t.S3TConfig's defaults)")
    parser.add_argument("--epoch-scale", type=float, default=SISA_EPOCH_SCALE,
                        help="sisa: each shard's training compute relative to what plain training spends on its "
                             "records (the default kept the demo world's QA accuracy at the plain model's: "
                             "bench/RESULTS.md)")


def regime_config(regime: str, shards: int, slices: int, seed: int, epoch_scale: float):
    """The regime's training hyperparameters (unlearning.governed.train_governed's `config`)."""
    try:
        return REGIMES[regime].configure(shards=shards, slices=slices, seed=seed, epoch_scale=epoch_scale)
    except ValueError as error:
        raise CommandError(str(error)) from None


def register_trained(*, name: str, recipe, built):
    """Put what unlearning.governed trained (`built`, a GovernedModel) under governance, with its lineage."""
    return services.register_model(
        name=name, architecture=f"GPT-2 ({recipe.n_layer} layers, d={recipe.n_embd}) trained from scratch",
        training_recipe=asdict(recipe), checkpoint_sha256=built.sha256, checkpoint_path=built.path,
        training_manifest=built.training_manifest, holdout_manifest=built.holdout_manifest, records=built.records,
        lineage=built.lineage,
    )
