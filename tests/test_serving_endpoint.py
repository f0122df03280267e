"""The OpenAI-compatible endpoint, called by the stock `openai` client over real HTTP (the serving
process's URLs on a live server), serving a trained model with its runtime filters on."""

import json

import openai
import pytest

from tests.conftest import one_torch_thread, register_tiny_model
from unlearning.world import answer_is_correct, qa_prompt


@pytest.fixture
def serving(settings, live_server, audit_log_reset_allowed, store, tiny_model):
    """The tiny model under governance, served with filters for its first trained person, and a key for it."""
    from dataclasses import asdict

    from unlearning import endpoint, services
    from unlearning.models import ModelAsset
    from unlearning.serving.filters import EcoParams
    from unlearning.serving.targets import targets_from_records
    from unlearning.store import store_file

    settings.ROOT_URLCONF = "config.serving_urls"
    world = tiny_model.world
    forgotten = world.trained_people[0]
    asset = register_tiny_model(tiny_model)
    targets = targets_from_records(r.as_json() for r in world.person_records(forgotten, include_canary=True))
    sha256, path = store_file(targets.to_json().encode(), settings.MODEL_STORE_DIR, "filter-targets", ".json")
    prepared = {"filters": {"prompt_classifier": {}, "eco": asdict(EcoParams(strength=1.0)), "guard": {}, "output_filter": {}},
                "targets_sha256": sha256, "targets_path": str(path), "targets": 1}
    services.activate_runtime_filters(version=asset.current_version, prepared=prepared, request_id="request-1")
    services.register_model(
        name="other-model", architecture="GPT-2 (tiny)", training_recipe=vars(tiny_model.recipe),
        checkpoint_sha256=tiny_model.checkpoint_sha256, checkpoint_path=tiny_model.checkpoint_path,
        training_manifest=tiny_model.training_manifest, holdout_manifest=tiny_model.holdout_manifest,
        records=tiny_model.lineage)
    _, key = services.create_serving_key(name="tests", asset_names=[asset.name], created_by="tests")
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0)
    with one_torch_thread():
        yield client, ModelAsset.objects.get(pk=asset.pk), world, forgotten
    endpoint._loaded.clear()


def streamed_text(stream, chat: bool) -> tuple[str, str]:
    text, finish = "", None
    for part in stream:
        choice = part.choices[0]
        text += (choice.delta.content or "") if chat else choice.text
        finish = choice.finish_reason or finish
    return text, finish


def test_the_openai_client_completes_chats_and_streams_with_the_filters_on(serving):
    from unlearning.models import FilterCount

    client, asset, world, forgotten = serving
    assert [m.id for m in client.models.list()] == [asset.name]  # the key's scope only
    someone = world.trained_people[1]
    known = [qa for qa in world.qa_pairs(someone)
             if answer_is_correct(client.completions.create(model=asset.name, prompt=qa_prompt(qa.question),
                                                            max_tokens=12, temperature=0, stop=["\n"]).choices[0].text,
                                  qa.answer)]
    assert known, "the model answers a retained person's questions through the endpoint"
    qa = known[0]
    completion = client.completions.create(model=asset.name, prompt=qa_prompt(qa.question), max_tokens=12, temperature=0,
                                           stop=["\n"])
    chat = client.chat.completions.create(model=asset.name, messages=[{"role": "user", "content": qa.question}],
                                          max_tokens=12, temperature=0)
    assert chat.choices[0].message.content == completion.choices[0].text
    assert chat.choices[0].finish_reason == "stop" and completion.usage.completion_tokens > 0
    stream = client.completions.create(model=asset.name, prompt=qa_prompt(qa.question), max_tokens=12, temperature=0,
                                       stop=["\n"], stream=True)
    assert streamed_text(stream, chat=False)[0] == completion.choices[0].text
    chat_stream = client.chat.completions.create(model=asset.name, messages=[{"role": "user", "content": qa.question}],
                                                 max_tokens=12, temperature=0, stream=True)
    assert streamed_text(chat_stream, chat=True) == (chat.choices[0].message.content, "stop")

    theirs = world.qa_pairs(forgotten)
    for question in theirs:
        answer = client.chat.completions.create(model=asset.name, messages=[
            {"role": "user", "content": question.question}], max_tokens=12, temperature=0).choices[0].message.content
        assert not answer_is_correct(answer, question.answer)
    counted = {(c.filter, c.action): c.count for c in FilterCount.objects.filter(version=asset.current_version)}
    assert counted[("prompt_classifier", "flagged")] == len(theirs)
    stored = json.dumps(list(FilterCount.objects.values()), default=str)
    assert forgotten.name not in stored and theirs[0].question not in stored  # counts, never text


def test_the_endpoint_answers_errors_in_openai_shape(serving, live_server):
    import urllib.error
    import urllib.request

    from unlearning import services
    from unlearning.models import ServingKey

    client, asset, *_ = serving
    with pytest.raises(openai.NotFoundError):  # registered, but not in this key's scope
        client.completions.create(model="other-model", prompt="Hello", max_tokens=4)
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model=asset.name, prompt="Hello", max_tokens=10**6)
    assert too_long.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=asset.name, messages=[{"role": "assistant", "content": "hi"}])
    wrong = openai.OpenAI(base_url=client.base_url, api_key="uck-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    services.revoke_serving_key(key_id=ServingKey.objects.get().pk, revoked_by="tests")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    raw = urllib.request.Request(f"{live_server.url}/v1/completions", data=b"{not json",
                                 headers={"Authorization": "Bearer x"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(raw)
    assert refused.value.code == 401 and json.load(refused.value)["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("body, param", [
    ({"prompt": "Hi", "stop": 5}, "stop"),
    ({"prompt": "Hi", "stop": {"x": 1}}, "stop"),
    ({"prompt": "Hi", "seed": 2**64}, "seed"),
    ({"prompt": "Hi", "temperature": "hot"}, "temperature"),
    ({"prompt": ["Hi"] * 65}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "\ud800"}, "prompt"),
    ({"prompt": "word " * 400}, "prompt"),  # past the model's 128-token context
    (None, None),  # nested 100,000 deep
])
def test_bad_bodies_are_openai_shaped_400s(serving, live_server, body, param):
    import urllib.error
    import urllib.request

    client, asset, *_ = serving
    data = (b"[" * 100_000 + b"]" * 100_000) if body is None else json.dumps({"model": asset.name, **body}).encode()
    raw = urllib.request.Request(f"{live_server.url}/v1/completions", data=data, method="POST",
                                 headers={"Authorization": f"Bearer {client.api_key}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(raw)
    error = json.load(refused.value)["error"]
    assert refused.value.code == 400 and error["type"] == "invalid_request_error" and error["param"] == param


def test_a_later_version_is_served_with_the_earlier_requests_filters_until_its_own_are_active(serving):
    """A new job's version has no filters of its own until its request is certified; the earlier
    certified requests stay filtered meanwhile."""
    from unlearning.models import FilterCount, ModelVersion

    client, asset, world, forgotten = serving
    current = asset.current_version
    later = ModelVersion.objects.create(asset=asset, sha256=current.sha256, storage_path=current.storage_path,
                                        role="unlearned", parent=current)
    asset.current_version = later
    asset.save(update_fields=["current_version"])
    question = world.qa_pairs(forgotten)[0]
    client.chat.completions.create(model=asset.name, messages=[{"role": "user", "content": question.question}],
                                   max_tokens=12, temperature=1e-40)  # as good as greedy
    assert FilterCount.objects.get(version=later, filter="prompt_classifier").count == 1


def test_alu_reviews_flagged_answers_with_agents_on_the_projects_own_endpoint(serving, monkeypatch, tiny_model):
    """ALU's agents on this endpoint (the tiny model, no filters of its own here: a second, unfiltered
    model under governance). The tiny model follows no instructions, so its critic scores nothing and
    every leaking answer is refused; the deterministic check never lets a fact through; prompts the
    gate does not flag never reach the agents."""
    from unlearning import services
    from unlearning.lm import load_pretrained
    from unlearning.serving.decoding import Sampling
    from unlearning.serving.encoder import sentence_encoder
    from unlearning.serving.stack import ServedModel, build_filters
    from unlearning.serving.targets import targets_from_records

    client, _, world, forgotten = serving
    _, agents_key = services.create_serving_key(name="agents", asset_names=["other-model"], created_by="tests")
    monkeypatch.setenv("ALU_API_KEY", agents_key)
    targets = targets_from_records(r.as_json() for r in world.person_records(forgotten, include_canary=True))
    config = {"prompt_classifier": {}, "alu": {"endpoint": str(client.base_url), "model": "other-model", "variants": 2}}
    model, tokenizer = load_pretrained(tiny_model.checkpoint_path)
    filtered = ServedModel(model, tokenizer, build_filters(targets, config, sentence_encoder()))
    theirs = world.qa_pairs(forgotten)
    answers = filtered.generate([qa_prompt(qa.question) for qa in theirs], Sampling(max_new_tokens=12, stop=("\n",)))
    assert not any(answer_is_correct(a.text, qa.answer) for a, qa in zip(answers, theirs))
    reviewed = [e for a in answers for e in a.events if e.filter == "alu"]
    assert reviewed and all(e.action == "refuse" for e in reviewed)
    someone = world.trained_people[1]
    others = filtered.generate([qa_prompt(qa.question) for qa in world.qa_pairs(someone)], Sampling(max_new_tokens=12, stop=("\n",)))
    assert not any(a.events for a in others)


def test_alus_agents_are_where_the_deployment_says_now(settings):
    from unlearning.endpoint import with_agents_of_this_deployment

    audited = {"prompt_classifier": {}, "alu": {"endpoint": "http://old:8000/v1", "model": "old", "variants": 3}}
    settings.SERVING_ALU_ENDPOINT, settings.SERVING_ALU_MODEL = "http://agents:9000/v1", "agents"
    assert with_agents_of_this_deployment(audited)["alu"] == {"endpoint": "http://agents:9000/v1", "model": "agents",
                                                              "variants": 3}
    settings.SERVING_ALU_ENDPOINT = ""
    assert with_agents_of_this_deployment(audited)["alu"]["endpoint"] == ""  # switched off: build_filters leaves ALU out
    assert with_agents_of_this_deployment({"guard": {}}) == {"guard": {}}
