"""Runtime filters, one module each, registered by name: what stands between a served model and
a prompt that asks for what was forgotten (unlearning changes weights; it cannot stop a model from
using what a prompt hands it, UnUnlearning 2024).

This module is torch-free, like `unlearning.methods`: the registry, the order the filters run in,
and every filter's hyperparameters as a dataclass with its defaults and citation, so that the web
process names, validates and prints filters without torch. Each filter's engine
(`unlearning.serving.filters.<name>`) is loaded by name in the serving and worker processes.

Stages, in the order a request meets them:
- gate: the prompt classifier decides whether a prompt is about a forget target (the others act
  only on flagged prompts, as ECO does, so that everyone else's answers are untouched);
- prefill: ECO corrupts the flagged prompt's token embeddings;
- decode: GUARD forbids the target's key phrases token by token;
- output: the output filter checks the finished text (every prompt, flagged or not);
- agent: ALU's pipeline of agents behind an OpenAI-compatible chat endpoint (off unless configured).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from unlearning.methods import parse_params

STAGES = ("gate", "prefill", "decode", "output", "agent")


@dataclass(frozen=True)
class PromptClassifierParams:
    # A name of a target in the prompt counts when it matches this closely (difflib ratio over the
    # prompt's word windows): catches misspellings without matching other people who share a first name.
    name_match: float = 0.88
    # The largest share of the calibration's retain and general prompts the gate may flag. 0 (the
    # default): the meaning threshold sits above every one of them, as ECO flags only above a
    # high-confidence threshold; at 1% the demo's held-out retained people lost 2 of 52 answers to
    # false flags. The calibration reports the rate reached, with its interval, and the audit
    # measures it again on prompts the calibration did not see.
    max_false_positive_rate: float = 0.0
    # Cosine similarity (sentence encoder) above which a prompt without a name counts as about a
    # target; None until calibrated.
    semantic_threshold: float | None = None


@dataclass(frozen=True)
class EcoParams:
    corruption: Literal["noise_first_n", "zero_top_k", "flip_sign_top_k"] = "noise_first_n"
    # noise_first_n: how many leading embedding dimensions get noise (0: all); the top-k corruptions:
    # k itself, fixed (0: k is the share `strength` of the dimensions, what the search tunes).
    dims: int = 0
    # σ (noise scale relative to the embeddings' own scale) or, for top-k corruptions, the share of
    # dimensions; None until the zeroth-order search sets it on the forget prompts.
    strength: float | None = None
    search_steps: int = 10  # ECO: about 10 finite-difference steps
    seed: int = 0


@dataclass(frozen=True)
class GuardParams:
    ban: bool = True  # a candidate that would spell a key phrase: banned (True) or penalised by `penalty`
    penalty: float = 10.0
    semantic_threshold: float = 0.9  # token-embedding cosine above which a candidate counts as close
    semantic_penalty: float = 5.0
    candidates: int = 20  # top candidates per step checked for semantic closeness


@dataclass(frozen=True)
class OutputFilterParams:
    action: Literal["redact", "refuse"] = "redact"
    fuzzy_match: float = 0.9  # difflib ratio of a text window against a key phrase
    semantic_threshold: float = 0.8  # sentence-encoder cosine of an output sentence against a forgotten text
    refusal: str = "I can't share information about that person."


@dataclass(frozen=True)
class AluParams:
    endpoint: str = ""  # an OpenAI-compatible base URL (".../v1"); empty: ALU is off
    model: str = ""
    api_key_env: str = "ALU_API_KEY"  # the environment variable holding the key, never the key itself
    variants: int = 3
    relevant_targets: int = 3  # targets retrieved by similarity and shown to the agents
    min_score: int = 6  # the critic's lowest score (of 10) a rewrite may have to be returned
    refusal: str = "I can't share information about that person."


@dataclass(frozen=True)
class RuntimeFilter:
    name: str
    label: str
    stage: str
    params_type: type
    citation: str

    def params(self, given: dict | None = None):
        """Validated hyperparameters: the defaults overridden by `given` (ValueError naming the problem)."""
        return parse_params(self.name, self.params_type, given or {})

    def engine(self):
        return importlib.import_module(f"unlearning.serving.filters.{self.name}")


FILTERS = {f.name: f for f in (
    RuntimeFilter("prompt_classifier", "Prompt classifier (gate)", "gate", PromptClassifierParams,
                  "Liu et al. 2024, Large Language Model Unlearning via Embedding-Corrupted Prompts (ECO), §3.1"),
    RuntimeFilter("eco", "Embedding-corrupted prompts (ECO)", "prefill", EcoParams,
                  "Liu et al. 2024, Large Language Model Unlearning via Embedding-Corrupted Prompts, NeurIPS"),
    RuntimeFilter("guard", "Generation-time unlearning (GUARD)", "decode", GuardParams,
                  "Deng et al. 2025, GUARD: Generation-time LLM Unlearning via Adaptive Restriction and Detection"),
    RuntimeFilter("output_filter", "Output filter", "output", OutputFilterParams,
                  "exact, fuzzy and semantic matching of the output against the targets"),
    RuntimeFilter("alu", "Agentic LLM unlearning (ALU)", "agent", AluParams,
                  "Sanyal & Mandal 2025, ALU: Agentic LLM Unlearning"),
)}


def get_filter(name: str) -> RuntimeFilter:
    if name not in FILTERS:
        raise ValueError(f"unknown runtime filter {name!r} (known: {', '.join(FILTERS)})")
    return FILTERS[name]
