"""What the training commands share: the regime options, and registering what was trained."""

from django.core.management.base import CommandError

from unlearning.recipe import SISA_EPOCH_SCALE

REGIMES = ("plain", "sisa", "s3t")


def add_regime_arguments(parser) -> None:
    parser.add_argument("--regime", choices=REGIMES, default="plain",
                        help="plain: one model (approximate unlearning); sisa: shards retrained for exact deletion; "
                             "s3t: a frozen base with LoRA adapters switched off for exact deletion")
    parser.add_argument("--shards", type=int, default=4, help="sisa (s3t: unlearning.s3t.S3TConfig's defaults)")
    parser.add_argument("--slices", type=int, default=4, help="sisa (s3t: unlearning.s3t.S3TConfig's defaults)")
    parser.add_argument("--epoch-scale", type=float, default=SISA_EPOCH_SCALE,
                        help="sisa: each shard's training compute relative to what plain training spends on its "
                             "records (1.25 kept the demo world's QA accuracy at the plain model's; 1.0 lost 3.5 "
                             "to 10 points)")


def regime_configs(regime: str, shards: int, slices: int, seed: int, epoch_scale: float) -> dict:
    """The keyword arguments of unlearning.governed.train_governed for the regime."""
    from unlearning.s3t import S3TConfig
    from unlearning.sisa import SisaConfig

    try:
        if regime == "sisa":
            return {"sisa": SisaConfig(shards=shards, slices=slices, seed=seed, epoch_scale=epoch_scale)}
    except ValueError as error:
        raise CommandError(str(error)) from None
    return {"s3t_config": S3TConfig(seed=seed)} if regime == "s3t" else {}


def register_trained(*, name: str, recipe, built):
    """Put what unlearning.governed trained (`built`, a GovernedModel) under governance, with its lineage."""
    from unlearning import services
    from unlearning.demo_world import recipe_dict

    return services.register_model(
        name=name, architecture=f"GPT-2 ({recipe.n_layer} layers, d={recipe.n_embd}) trained from scratch",
        training_recipe=recipe_dict(recipe), checkpoint_sha256=built.sha256, checkpoint_path=built.path,
        training_manifest=built.training_manifest, holdout_manifest=built.holdout_manifest, records=built.records,
        lineage=built.lineage,
    )
