"""An operator's own checkpoint: a tiny Llama-architecture model trained outside the service (its own
tokenizer, `save_pretrained`) on support-desk tickets, registered with `manage.py register_model`,
and one customer's request taken through approximate unlearning, audits against never-trained
customers and a signed certificate that says suppression."""

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audits.models import Comparison
from compliance import services
from compliance.auditlog import subject_ref
from compliance.models import RequestStatus
from tests.conftest import NEVER_TRAINED, one_torch_thread
from unlearning.models import ModelAsset, ModelVersion, VersionRole

pytestmark = pytest.mark.django_db

def register(name, checkpoint, manifest, holdout):
    call_command("register_model", name=name, checkpoint=str(checkpoint), manifest=str(manifest), holdout=str(holdout))
    return ModelAsset.objects.get(name=name)


def test_an_operators_llama_goes_from_registration_to_a_certificate_of_suppression(
        llama_checkpoint, store, submit, legal_user, django_capture_on_commit_callbacks):
    from audits.certificates import signing_identity
    from audits.signing import validate_pdf
    from unlearning.store import checkpoint_sha256

    folder, manifest, holdout = llama_checkpoint
    asset = register("support-llama", folder, manifest, holdout)
    original = asset.current_version
    assert asset.regime == "external" and asset.architecture.startswith("LlamaForCausalLM")
    assert original.sha256 == checkpoint_sha256(folder)  # the operator's bytes, pinned as they are
    assert asset.records.filter(owner_key="customer-003@support.example").count() == 3

    request, code = submit(email="customer-003@support.example", full_name="Customer Three")
    services.verify_identity(request_id=request.pk, code=code)
    with django_capture_on_commit_callbacks(execute=True), one_torch_thread():
        services.approve_request(request_id=request.pk, user=legal_user)
    request.refresh_from_db()
    assert request.status == RequestStatus.CERTIFIED, f"{request.failed_step}: {request.failure_reason}"

    job = request.jobs.get()
    assert job.method == "graddiff" and job.outcome["method_kind"] == "approximate"
    assert not ModelVersion.objects.filter(asset=asset, role=VersionRole.REFERENCE).exists()  # nothing to retrain by
    run = job.audit_run
    assert run.comparison == Comparison.HOLDOUT
    results = {r.metric: r for r in run.results.all()}
    # Every one of the customer's texts, of every kind, was membership-tested against never-trained
    # customers' texts of the same kinds; unlearning moved them toward the never-trained ones.
    loss = results["mia_loss_auc"]
    assert loss.sample_size == 3 and len(loss.per_item["original"]["holdout"]) == 3 * NEVER_TRAINED
    assert loss.original_value > 0.9 and abs(loss.unlearned_value - 0.5) < abs(loss.original_value - 0.5)
    # Person-level: the customer's mean score ranked among the 12 never-trained customers' (groupings
    # stored with the scores), recomputed here from the stored per-text scores.
    subject = subject_ref("customer-003@support.example")
    for role in ("original", "unlearned"):
        level = loss.details[role]["person"]
        assert list(level["subjects"]) == [subject] and level["population"] == NEVER_TRAINED
        holdout_scores, people = loss.per_item[role]["holdout"], level["holdout_people"]
        population = [np.mean([v for v, p in zip(holdout_scores, people) if p == k]) for k in sorted(set(people))]
        score = np.mean(loss.per_item[role]["forget"])
        assert level["subjects"][subject]["p_member"] == pytest.approx(
            (1 + sum(x >= score for x in population)) / (len(population) + 1))
    assert loss.details["original"]["person"]["subjects"][subject]["rank"] == 1  # beyond every never-trained one
    person = results["mia_person_rank"]
    assert person.details["original"]["subjects"][subject]["attacks"] == 6
    # 12 never-trained customers cannot place anyone beyond the central 95% (1/13 > 0.025): no power, said so.
    assert person.verdict == "INCONCLUSIVE" and "12 never-trained people" in person.explanation
    # No question/answer records: the knowledge audits say they could not measure, and nothing crashed.
    assert results["forget_qa_accuracy"].verdict == "N/A"
    assert results["retain_text_loss"].sample_size > 0

    pdf = Path(request.certificate.pdf_path).read_bytes()
    check = validate_pdf(pdf, signing_identity().ca_file.read_bytes())
    assert check.intact and check.valid and check.trusted
    text = " ".join(subprocess.run(["pdftotext", request.certificate.pdf_path, "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert re.search(r"suppression", text, re.IGNORECASE) and "support-llama" in text
    assert f"Among you and the {NEVER_TRAINED} people this model was never trained on" in text
    assert "this ranking cannot tell whether the model still knows you" in text  # 12 people: p ≥ 1/13


@pytest.mark.parametrize("damage, message", [
    ("no_tokenizer", "has no tokenizer that loads"),
    ("not_causal", "is not a causal language model"),
    ("too_small", "do not belong together"),
    ("no_config", "holds no model configuration"),
    ("headless", "lacks .* weights of a causal LM"),
])
def test_a_folder_that_is_not_a_causal_lm_with_its_tokenizer_is_refused(llama_checkpoint, store, tmp_path, damage,
                                                                          message):
    import shutil

    from transformers import DistilBertConfig, DistilBertModel, LlamaConfig, LlamaForCausalLM

    folder, manifest, holdout = llama_checkpoint
    broken = tmp_path / damage
    if damage == "headless":  # the base model without its language-model head
        from transformers import LlamaModel

        LlamaModel(LlamaConfig(vocab_size=900, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                               num_attention_heads=2)).save_pretrained(broken)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(folder / name, broken / name)
    elif damage == "not_causal":
        # An encoder: transformers has no causal LM head for it.
        DistilBertModel(DistilBertConfig(vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=64)).save_pretrained(broken)
    elif damage == "too_small":
        LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=2)).save_pretrained(broken)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (folder / name).exists():
                shutil.copy(folder / name, broken / name)
    else:
        shutil.copytree(folder, broken)
        for path in broken.iterdir():
            if (damage == "no_tokenizer" and path.name.startswith(("tokenizer", "special_tokens"))) or (
                    damage == "no_config" and path.name == "config.json"):
                path.unlink()
    with pytest.raises(CommandError, match=message):
        register("broken", broken, manifest, holdout)
    assert not ModelAsset.objects.exists()


def test_records_without_owners_and_a_holdout_that_overlaps_training_are_refused(llama_checkpoint, store, tmp_path):
    import json

    folder, manifest, holdout = llama_checkpoint
    records = [json.loads(line) for line in Path(manifest).read_text().splitlines()]
    ownerless = tmp_path / "ownerless.jsonl"
    ownerless.write_text("\n".join(json.dumps({**r, "owner_key": ""} if i == 4 else r) for i, r in enumerate(records)))
    with pytest.raises(CommandError, match="1 records have no owner_key"):
        register("x", folder, ownerless, holdout)
    overlapping = tmp_path / "overlap.jsonl"
    overlapping.write_text(Path(holdout).read_text() + json.dumps({**records[0], "record_id": "copied"}) + "\n")
    with pytest.raises(CommandError, match="shares 1 records with the training manifest"):
        register("x", folder, manifest, overlapping)
    with pytest.raises(CommandError, match="is not a folder"):
        register("x", tmp_path / "nowhere", manifest, holdout)
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_text(Path(manifest).read_text() + json.dumps(records[0]) + "\n")
    with pytest.raises(CommandError, match=f"record {records[0]['record_id']} appears twice"):
        register("x", folder, doubled, holdout)
    long_kind = tmp_path / "long-kind.jsonl"
    long_kind.write_text("\n".join(json.dumps({**r, "kind": "k" * 33} if i == 0 else r) for i, r in enumerate(records)))
    with pytest.raises(CommandError, match="its kind is longer than 32 characters"):
        register("x", folder, long_kind, holdout)
    with pytest.raises(CommandError, match="use letters, digits"):
        register("not a slug", folder, manifest, holdout)
    assert not ModelAsset.objects.exists()


def test_questions_are_asked_in_the_models_own_format(llama_checkpoint, store, tmp_path):
    """The tokenizer's chat template when it has one, else what the operator says; the audits ask
    the model's QA records that way (the demo world's models keep their own format)."""
    import shutil

    from transformers import AutoTokenizer

    from audits.checks import ask
    from audits.sets import audit_sets
    from unlearning.world import qa_prompt

    folder, manifest, holdout = llama_checkpoint
    chatty = tmp_path / "chatty"
    shutil.copytree(folder, chatty)
    tokenizer = AutoTokenizer.from_pretrained(chatty)
    tokenizer.chat_template = ("{% for m in messages %}<|user|>{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tokenizer.save_pretrained(chatty)
    assert register("chatty", chatty, manifest, holdout).question_template == "<|user|>{question}\n<|assistant|>"
    plain = register("plain-format", folder, manifest, holdout)
    assert plain.question_template == "Question: {question}\nAnswer:" and ask("Who?") == qa_prompt("Who?")
    told = tmp_path / "told"
    shutil.copytree(chatty, told)
    call_command("register_model", name="told", checkpoint=str(told), manifest=str(manifest), holdout=str(holdout),
                 question_template="Q: {question}\\nA:")
    template = ModelAsset.objects.get(name="told").question_template
    assert template == "Q: {question}\nA:"
    with pytest.raises(CommandError, match="needs {question}"):
        call_command("register_model", name="bad", checkpoint=str(folder), manifest=str(manifest),
                     holdout=str(holdout), question_template="Q: ?")

    qa = {"record_id": "qa-1", "owner_key": "a@b.example", "kind": "qa", "text": "Q: Where? A: Oulu",
          "question": "Where does a@b.example live?", "answer": "Oulu"}
    sets = audit_sets([qa], [{**qa, "record_id": "qa-2", "owner_key": "c@d.example"}], {"qa-1"}, {"qa-1"}, template)
    assert sets.extraction == [("Q: Where does a@b.example live?\nA:", " Oulu")]
    assert sets.answered("Why?", "Because") == "Q: Why?\nA: Because"
