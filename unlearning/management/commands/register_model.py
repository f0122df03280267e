"""Put an operator's own causal LM (a Hugging Face folder) under governance, with the manifest of
the data it was trained on as its lineage. The API's POST /api/v1/models/ does the same through a
worker; both check their input with unlearning.intake."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from unlearning import intake
from unlearning.manifest import write_manifest


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

        try:
            intake.check_name(name)
            template = intake.question_template(question_template)
            training, never_trained = intake.read_records(manifest), intake.read_records(holdout)
            intake.check_lineage(manifest, training, never_trained)
            imported = import_checkpoint(checkpoint, settings.MODEL_STORE_DIR)
        except (intake.IntakeRejected, CheckpointRejected) as error:
            raise CommandError(str(error)) from None
        asset = services.register_external_model(
            name=name, sha256=imported.sha256, path=imported.path, architecture=imported.architecture,
            training_manifest=write_manifest(training, settings.MODEL_STORE_DIR)[1],
            holdout_manifest=write_manifest(never_trained, settings.MODEL_STORE_DIR)[1], training=training,
            question_template=template or imported.chat_question_template)
        owners = len({record["owner_key"] for record in training})
        self.stdout.write(self.style.SUCCESS(
            f"Registered {asset.name} (external: {imported.architecture}) @ {imported.sha256[:16]}…: "
            f"{len(training)} training records of {owners} owners, {len(never_trained)} never-trained records; "
            f"questions asked as {asset.question_template!r}."))
