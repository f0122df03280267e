"""Put an operator's own causal LM (a Hugging Face folder) under governance, with the manifest of
the data it was trained on as its lineage."""

from collections import Counter

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.core.management.base import BaseCommand, CommandError

from unlearning.management.commands.train_governed_model import read
from unlearning.manifest import record_sha256, write_manifest
from unlearning.models import ModelAsset, TrainingRecord

RECORD_ID_LENGTH = TrainingRecord._meta.get_field("record_id").max_length
KIND_LENGTH = TrainingRecord._meta.get_field("kind").max_length


class Command(BaseCommand):
    help = ("Register a causal language model the service did not train: DIR is any folder that "
            "AutoModelForCausalLM.from_pretrained and AutoTokenizer.from_pretrained load offline (GPT-2, Llama, Qwen2, "
            "Mistral…). It is copied into the model store and pinned by SHA-256; the manifest's owner keys are its "
            "lineage. Such a model is unlearned approximately and audited against the holdout's never-trained records.")

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--checkpoint", required=True, metavar="DIR", help="the model's save_pretrained folder")
        parser.add_argument("--manifest", required=True,
                            help="what it was trained on (JSONL: record_id, owner_key, kind, text per line)")
        parser.add_argument("--holdout", required=True,
                            help="records of the same kinds it never saw (JSONL): the audits' non-members")
        parser.add_argument("--question-template",
                            help="how the model is asked a question, {question} marking the place, e.g. "
                                 "'Q: {question}\\nA:' (default: its tokenizer's chat template, else "
                                 "'Question: {question}\\nAnswer:'); the knowledge audits ask its QA records so")

    def handle(self, *args, name, checkpoint, manifest, holdout, question_template, **options):
        from unlearning import services
        from unlearning.checkpoints import CheckpointRejected, import_checkpoint
        from unlearning.governed import lineage_records

        if ModelAsset.objects.filter(name=name).exists():
            raise CommandError(f"a model named {name} is already registered")
        try:
            validate_slug(name)
        except ValidationError:
            raise CommandError(f"--name {name!r}: use letters, digits, hyphens and underscores") from None
        if question_template is not None and "{question}" not in question_template:
            raise CommandError("--question-template needs {question} where the question goes")
        training, never_trained = read(manifest), read(holdout)
        check_lineage(manifest, training, never_trained)
        try:
            imported = import_checkpoint(checkpoint, settings.MODEL_STORE_DIR)
        except CheckpointRejected as error:
            raise CommandError(str(error)) from None
        asset = services.register_model(
            name=name, architecture=imported.architecture, training_recipe={}, checkpoint_sha256=imported.sha256,
            checkpoint_path=imported.path, training_manifest=write_manifest(training, settings.MODEL_STORE_DIR)[1],
            holdout_manifest=write_manifest(never_trained, settings.MODEL_STORE_DIR)[1],
            records=lineage_records(training), regime="external",
            question_template=(question_template or "").replace("\\n", "\n") or imported.chat_question_template)
        owners = len({record["owner_key"] for record in training})
        self.stdout.write(self.style.SUCCESS(
            f"Registered {asset.name} (external: {imported.architecture}) @ {imported.sha256[:16]}…: "
            f"{len(training)} training records of {owners} owners, {len(never_trained)} never-trained records; "
            f"questions asked as {asset.question_template!r}."))


def check_lineage(path: str, training: list[dict], never_trained: list[dict]) -> None:
    """Every training record names its owner (the lineage a request resolves through) once, in
    fields the lineage can hold, and no never-trained record is a training record (the audits'
    non-members must be non-members). Checked before anything is copied into the store."""
    if twice := [record_id for record_id, count in Counter(r["record_id"] for r in training).items() if count > 1]:
        raise CommandError(f"{path}: record {twice[0]} appears {len(twice) > 1 and 'with others ' or ''}twice")
    for field, longest in (("record_id", RECORD_ID_LENGTH), ("kind", KIND_LENGTH)):
        if too_long := next((r for r in training if len(str(r[field])) > longest), None):
            raise CommandError(f"{path}: record {too_long['record_id'][:40]}: its {field} is longer than {longest} "
                               "characters")
    if ownerless := [r["record_id"] for r in training if not r.get("owner_key")]:
        raise CommandError(f"{path}: {len(ownerless)} records have no owner_key (e.g. {ownerless[0]}): a request "
                           "could never reach them")
    trained_ids, trained_content = {r["record_id"] for r in training}, {record_sha256(r) for r in training}
    if overlap := [r["record_id"] for r in never_trained if r["record_id"] in trained_ids
                   or record_sha256(r) in trained_content]:
        raise CommandError(f"the holdout shares {len(overlap)} records with the training manifest (e.g. {overlap[0]}): "
                           "never-trained records must be ones the model never saw")
