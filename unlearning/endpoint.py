"""The OpenAI-compatible endpoint: `/v1/models`, `/v1/completions` and `/v1/chat/completions`, as a
stock `openai` client calls them (streaming included), serving each governed language model's
current version with the runtime filters of the requests certified against it.

It runs in a process of its own (config/serving_wsgi.py, `make serve-models`): it loads torch and
the models, which the web process never does. Callers authenticate with a serving key (their own
scope: the models the key names; unlearning.services.create_serving_key), not with the REST API's
tokens. Errors have OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`), which its
clients turn into their exceptions. What the filters did is counted per version and day
(FilterCount); no prompt and no output is logged or stored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from unlearning import services
from unlearning.lm import context_length, prompt_ids
from unlearning.loading import load_model
from unlearning.models import ModelAsset, ModelKind, ModelVersion, ServingKey
from unlearning.serving.decoding import Sampling
from unlearning.serving.encoder import sentence_encoder
from unlearning.serving.stack import ServedModel, build_filters
from unlearning.serving.targets import ForgetTargets
from unlearning.store import read_verified_file, verified_folder

log = logging.getLogger(__name__)

MAX_STOPS = 4  # as OpenAI's API
MAX_PROMPTS = 64  # prompts in one completion request: one batch, under the model's lock
MAX_PROMPT_CHARACTERS = 100_000  # in all, per request
GREEDY_BELOW = 1e-5  # a temperature this small is greedy decoding


class EndpointError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def response(self) -> JsonResponse:
        return JsonResponse({"error": {"message": self.message, "type": self.kind, "param": self.param,
                                       "code": self.code}}, status=self.status)


# Loaded models: one per governed model in this process, reloaded when its current version or that
# version's filters change. One generation at a time per model (torch modules are not re-entrant).

@dataclass
class Loaded:
    version_pk: int
    filters_key: str
    served: ServedModel
    lock: threading.Lock


_loaded: dict[int, Loaded] = {}
_loading = threading.Lock()


def active_filters(asset: ModelAsset) -> dict:
    """The filters to serve: the newest activated on any version of the model. A later version's
    own are activated only when its request is certified; until then the earlier requests' filters
    stay on (each version's targets cover every request removed before it)."""
    version = (ModelVersion.objects.filter(asset=asset).exclude(runtime_filters={})
               .order_by("-created_at", "-pk").first())
    return version.runtime_filters if version is not None else {}


def loaded_model(asset: ModelAsset) -> tuple[ModelVersion, Loaded]:
    with _loading:  # read under the lock: a request that read an older version never reloads it
        asset.refresh_from_db(fields=["current_version"])
        version = ModelVersion.objects.get(pk=asset.current_version_id)
        config = active_filters(asset)
        filters_key = json.dumps([config.get("targets_sha256"), config.get("filters")], sort_keys=True)
        current = _loaded.get(asset.pk)
        if current is None or current.version_pk != version.pk or current.filters_key != filters_key:
            model, tokenizer = load_model(asset.kind, verified_folder(Path(version.storage_path), version.sha256))
            current = Loaded(version.pk, filters_key, ServedModel(model, tokenizer, served_filters(config)), threading.Lock())
            _loaded[asset.pk] = current
    return version, current


def served_filters(config: dict):
    """The filters of an activated configuration, its targets read back from the store and checked
    against their hash."""
    if not config.get("filters"):
        return None
    targets = ForgetTargets.from_json(read_verified_file(Path(config["targets_path"]), config["targets_sha256"]).decode())
    return build_filters(targets, with_agents_of_this_deployment(config["filters"]),
                         sentence_encoder(settings.SERVING_ENCODER_PATH))


def with_agents_of_this_deployment(filters: dict) -> dict:
    """ALU's agents are where this deployment says they are now (SERVING_ALU_ENDPOINT, _MODEL), not
    where they were when the version was audited: an endpoint moves, or is switched off (ALU then off)."""
    if "alu" not in filters:
        return filters
    return {**filters, "alu": {**filters["alu"], "endpoint": settings.SERVING_ALU_ENDPOINT,
                               "model": settings.SERVING_ALU_MODEL}}


# Requests.

def serving_key(request) -> ServingKey:
    header = request.headers.get("Authorization", "")
    key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    found = (ServingKey.objects.filter(key_sha256=services.serving_key_sha256(key), revoked_at__isnull=True).first()
             if key else None)
    if found is None:
        raise EndpointError(401, "a valid serving key is required (Authorization: Bearer <key>)", "authentication_error",
                            code="invalid_api_key")
    return found


def body_of(request) -> dict:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise EndpointError(400, f"the body is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(body, dict):
        raise EndpointError(400, "the body must be a JSON object")
    return body


def asset_for(key: ServingKey, name) -> ModelAsset:
    if not isinstance(name, str) or not name:
        raise EndpointError(400, "name the model (`model`)", param="model")
    asset = key.assets.filter(name=name, kind=ModelKind.CAUSAL_LM, current_version__isnull=False).first()
    if asset is None:
        raise EndpointError(404, f"the model {name!r} does not exist or this key may not call it", param="model",
                            code="model_not_found")
    return asset


def number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise EndpointError(400, f"`{name}` must be a number from {low} to {high}", param=name)
    return float(value)


def sampling_from(body: dict, default_stop: tuple[str, ...] = ()) -> Sampling:
    limit = settings.SERVING_MAX_NEW_TOKENS
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is None:
        max_tokens = 16
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= limit:
        raise EndpointError(400, f"`max_tokens` must be an integer from 1 to {limit}", param="max_tokens")
    if body.get("n", 1) != 1:
        raise EndpointError(400, "only one choice per request is served (`n` must be 1)", param="n")
    stop = body.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop) if isinstance(stop, list) else () if stop is None else None
    if stops is None or len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise EndpointError(400, f"`stop` must be a string or a list of up to {MAX_STOPS} non-empty strings", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise EndpointError(400, "`seed` must be an integer from 0 to 2**63 - 1", param="seed")
    temperature, top_p = number(body, "temperature", 1.0, 0.0, 2.0), number(body, "top_p", 1.0, 0.0, 1.0)
    if temperature < GREEDY_BELOW or top_p == 0:  # as good as greedy, without dividing by almost nothing
        temperature = 0.0
    return Sampling(max_new_tokens=max_tokens, temperature=temperature, top_p=top_p or 1.0, seed=seed,
                    stop=stops or default_stop)


def streaming(body: dict) -> bool:
    value = body.get("stream", False)
    if not isinstance(value, bool):
        raise EndpointError(400, "`stream` must be true or false", param="stream")
    return value


def answer(view):
    """Key, JSON body and errors for every endpoint view."""
    @csrf_exempt
    def wrapped(request, *args, **kwargs):
        try:
            if request.method != view.method:
                raise EndpointError(405, f"use {view.method}", code="method_not_allowed")
            return view(request, serving_key(request), *args, **kwargs)
        except EndpointError as error:
            return error.response()
    return wrapped


def get(view):
    view.method = "GET"
    return answer(view)


def post(view):
    view.method = "POST"
    return answer(view)


@get
def models(request, key: ServingKey):
    assets = key.assets.filter(kind=ModelKind.CAUSAL_LM, current_version__isnull=False).order_by("name")
    return JsonResponse({"object": "list", "data": [
        {"id": asset.name, "object": "model", "created": int(asset.created_at.timestamp()), "owned_by": "unlearning-compliance"}
        for asset in assets]})


@post
def completions(request, key: ServingKey):
    body = body_of(request)
    asset = asset_for(key, body.get("model"))
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise EndpointError(400, "`prompt` must be a non-empty string or a non-empty list of them", param="prompt")
    if len(prompts) > MAX_PROMPTS:
        raise EndpointError(400, f"at most {MAX_PROMPTS} prompts per request", param="prompt")
    checked_text(prompts, "prompt")
    sampling = sampling_from(body)
    return respond(asset, prompts, sampling, streaming(body), "text_completion")


def checked_text(texts: list[str], param: str) -> None:
    """Text the tokenizer can read (UTF-8: no lone surrogates), within the size a request may have."""
    if sum(len(t) for t in texts) > MAX_PROMPT_CHARACTERS:
        raise EndpointError(400, f"at most {MAX_PROMPT_CHARACTERS:,} characters per request", param=param)
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EndpointError(400, "the text is not valid Unicode (a lone surrogate)", param=param) from exc


@post
def chat_completions(request, key: ServingKey):
    body = body_of(request)
    asset = asset_for(key, body.get("model"))
    version, loaded = loaded_model(asset)
    prompt, default_stop = chat_prompt(loaded.served.tokenizer, asset.question_template, body.get("messages"))
    return respond(asset, [prompt], sampling_from(body, default_stop), streaming(body), "chat.completion",
                   loaded=(version, loaded))


def message_text(message) -> tuple[str, str]:
    if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
        raise EndpointError(400, "each message needs a role (system, developer, user or assistant) and content",
                            param="messages")
    content = message.get("content")
    if isinstance(content, list):  # content parts: only text is served
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
            raise EndpointError(400, "only text content parts are served", param="messages")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise EndpointError(400, "a message's content must be text", param="messages")
    return message["role"], content


def chat_prompt(tokenizer, question_template: str, messages) -> tuple[str, tuple[str, ...]]:
    """The conversation as the model reads it: its tokenizer's chat template when it has one; else
    the model's question template (each user turn a question, each assistant turn its answer, other
    turns as plain lines), answered to the end of the line."""
    if not isinstance(messages, list) or not messages:
        raise EndpointError(400, "`messages` must be a non-empty list", param="messages")
    turns = [message_text(m) for m in messages]
    if turns[-1][0] != "user":
        raise EndpointError(400, "the last message must be the user's", param="messages")
    checked_text([c for _, c in turns], "messages")
    if getattr(tokenizer, "chat_template", None):
        try:
            rendered = tokenizer.apply_chat_template(
                [{"role": "system" if r == "developer" else r, "content": c} for r, c in turns], tokenize=False,
                add_generation_prompt=True)
        except Exception as exc:  # the model's own template refuses the conversation (jinja raises its own errors)
            raise EndpointError(400, f"the model's chat template refuses these messages: {str(exc)[:200]}",
                                param="messages") from exc
        return rendered.removeprefix(tokenizer.bos_token or ""), ()
    lines: list[str] = []
    for role, content in turns:
        if role == "user":
            lines.append(question_template.replace("{question}", content))
        elif role == "assistant" and lines:
            lines[-1] = f"{lines[-1]} {content}"
        else:
            lines.append(content)
    return "\n".join(lines), ("\n",)


def respond(asset, prompts: list[str], sampling: Sampling, stream: bool, kind: str, loaded=None):
    version, model = loaded or loaded_model(asset)
    limit = context_length(model.served.backend.model) if model.served.backend.name == "transformers" else None
    if limit is not None and any(len(prompt_ids(model.served.tokenizer, p)) >= limit for p in prompts):
        raise EndpointError(400, f"a prompt does not fit the model's context of {limit} tokens with room to answer",
                            param="messages" if kind == "chat.completion" else "prompt", code="context_length_exceeded")
    ident = ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + uuid.uuid4().hex
    header = {"id": ident, "created": int(time.time()), "model": asset.name}
    if stream:
        response = StreamingHttpResponse(stream_events(version, model, prompts, sampling, kind, header),
                                         content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
    else:
        with model.lock:
            generations = model.served.generate(prompts, sampling)
        services.count_filter_events(version_id=version.pk, events=events_of(generations))
        response = JsonResponse({**header, "object": kind, "choices": [
            choice(kind, index, g.text, g.finish_reason) for index, g in enumerate(generations)],
            "usage": usage(generations)})
    response["X-Runtime-Filters"] = ",".join(model.served.filters.active) if model.served.filters else "none"
    return response


def choice(kind: str, index: int, text: str, finish_reason: str | None) -> dict:
    if kind == "chat.completion":
        return {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


def chunk(kind: str, header: dict, index: int, text: str | None, finish_reason: str | None, first: bool = False) -> str:
    if kind == "chat.completion":
        delta = ({"role": "assistant", "content": ""} if first else {}) | ({"content": text} if text else {})
        body = {**header, "object": "chat.completion.chunk",
                "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}]}
    else:
        body = {**header, "object": "text_completion",
                "choices": [{"index": index, "text": text or "", "logprobs": None, "finish_reason": finish_reason}]}
    return f"data: {json.dumps(body)}\n\n"


def stream_events(version, model: Loaded, prompts: list[str], sampling: Sampling, kind: str, header: dict):
    """Server-sent events as OpenAI streams them; a failure mid-stream ends it with an error event
    (the status line is long sent), and what the filters did is counted however it ends."""
    generations = []
    try:
        with model.lock:
            for index, prompt in enumerate(prompts):
                if kind == "chat.completion":
                    yield chunk(kind, header, index, None, None, first=True)
                pieces = model.served.stream(prompt, sampling)
                try:
                    while True:
                        try:
                            piece = next(pieces)
                        except StopIteration as done:
                            generations.append(done.value)
                            break
                        if piece:
                            yield chunk(kind, header, index, piece, None)
                finally:
                    pieces.close()  # ECO's hooks come off before the lock is released
                yield chunk(kind, header, index, None, generations[-1].finish_reason)
    except Exception:
        log.exception("a streamed generation failed")
        yield f"data: {json.dumps({'error': {'message': 'the generation failed', 'type': 'server_error', 'param': None, 'code': None}})}\n\n"
    finally:
        services.count_filter_events(version_id=version.pk, events=events_of(generations))
    yield "data: [DONE]\n\n"


def events_of(generations) -> list[tuple[str, str, str]]:
    return [(e.filter, e.action, e.reason) for g in generations for e in g.events]


def usage(generations) -> dict:
    prompt, completion = sum(g.prompt_tokens for g in generations), sum(g.completion_tokens for g in generations)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
