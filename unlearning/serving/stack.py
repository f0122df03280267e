"""A served model version with its runtime filters: the one place where the product generates text
(the endpoint, and the audits with filters on or off).

For a batch of prompts: the gate (prompt classifier) flags those about a forget target; for
flagged prompts ECO corrupts the prompt's embeddings at the prefill and GUARD forbids the target's
key phrases at each decode step; every output then passes the output filter, sentence by sentence
(a stream never sends a sentence before it was checked). What each filter did is returned as
events (filter, action, reason), never with the prompt's or the output's text, so that counting
them logs no personal data. Pure ML code: no Django.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from unlearning.lm import prompt_ids
from unlearning.serving.decoding import Sampling, decode, end_token_ids, generation_config_of, rows_by_length
from unlearning.serving.filters import FILTERS, EcoParams, GuardParams
from unlearning.serving.filters.output_filter import Span
from unlearning.serving.targets import ForgetTargets

SENTENCE_END = re.compile(r"[.!?\n]")


@dataclass(frozen=True)
class FilterEvent:
    filter: str
    action: str  # flagged, corrupted, restricted, redact, refuse, rewrite
    reason: str  # name, meaning, entity, prompt, token, exact, fuzzy, semantic, agent, check, unavailable
    # The generated token it changed (GUARD's), None before the first: a batch decodes on past a
    # row's stop string, and a change after the answer ended changed nothing anyone received.
    at_token: int | None = field(default=None, compare=False)


@dataclass
class Generation:
    text: str
    finish_reason: str  # stop, length or content_filter (OpenAI's words)
    prompt_tokens: int
    completion_tokens: int
    events: list[FilterEvent] = field(default_factory=list)


@dataclass
class RuntimeFilters:
    """The filter engines of one served version, loaded once (targets embedded once)."""

    targets: ForgetTargets
    classifier: object | None = None  # PromptClassifier
    eco: EcoParams | None = None  # its strength calibrated
    guard: GuardParams | None = None
    output: object | None = None  # OutputFilter
    alu: object | None = None  # AluPipeline, on flagged prompts' answers

    @property
    def active(self) -> list[str]:
        present = {"prompt_classifier": self.classifier, "eco": self.eco, "guard": self.guard, "output_filter": self.output,
                   "alu": self.alu}
        return [name for name in FILTERS if present.get(name) is not None]


def build_filters(targets: ForgetTargets, config: dict[str, dict], encoder, alu_client=None) -> RuntimeFilters:
    """Engines for the filters `config` names (name → parameters, calibrated values included);
    `alu_client`: an OpenAI client for ALU's agents (default: one for its configured endpoint)."""
    unknown = sorted(set(config) - set(FILTERS))
    if unknown:
        raise ValueError(f"unknown runtime filters: {', '.join(unknown)}")
    params = {name: FILTERS[name].params(given) for name, given in config.items()}
    if {"eco", "guard", "alu"} & set(params) and "prompt_classifier" not in params:
        raise ValueError("ECO, GUARD and ALU act on the prompts the prompt classifier flags: configure it too")
    filters = RuntimeFilters(targets)
    if "prompt_classifier" in params:
        filters.classifier = FILTERS["prompt_classifier"].engine().PromptClassifier(targets, encoder, params["prompt_classifier"])
    filters.eco, filters.guard = params.get("eco"), params.get("guard")
    if "output_filter" in params:
        filters.output = FILTERS["output_filter"].engine().OutputFilter(targets, encoder, params["output_filter"])
    if "alu" in params and params["alu"].endpoint:  # off unless an agents' endpoint is configured
        filters.alu = FILTERS["alu"].engine().AluPipeline(filters.classifier, params["alu"], client=alu_client)
    return filters


class TransformersBackend:
    """Generation in this process with torch: the decode loop (unlearning.serving.decoding), ECO as
    forward hooks on the embedding modules, GUARD as a transformers LogitsProcessor."""

    name = "transformers"

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.end_ids = end_token_ids(tokenizer, generation_config_of(model))
        self._token_embeddings = None

    def steps(self, prompts, ids, flags, sampling: Sampling, filters: RuntimeFilters | None, events) -> Iterator[list[int]]:
        """Each step's next token per row (rows share one length), the filters applied to flagged rows."""
        with self._filtered(prompts, ids, flags, filters, events) as processors:
            for step in decode(self.model, ids, sampling, self.end_ids, processors):
                yield step.tolist()

    def token_embeddings(self):
        if self._token_embeddings is None:
            self._token_embeddings = FILTERS["guard"].engine().token_embedding_matrix(self.model)
        return self._token_embeddings

    @contextlib.contextmanager
    def _filtered(self, prompts, ids, flags, filters, events):
        if filters is None or not any(flags):
            yield []
            return
        processors, guard = [], None
        if filters.guard is not None:
            guard = FILTERS["guard"].engine().GuardLogitsProcessor(
                guard_rules_per_row(self.tokenizer, flags, filters, self.token_embeddings()), [len(i) for i in ids],
                filters.guard)
            processors.append(guard)
        with contextlib.ExitStack() as stack:
            if filters.eco is not None:
                positions = eco_positions(self.tokenizer, prompts, ids, flags)
                stack.enter_context(FILTERS["eco"].engine().corrupted_prompts(self.model, positions, filters.eco,
                                                                             filters.eco.strength or 0.0))
                note_eco(flags, events)
            try:
                yield processors
            finally:  # also when a stream ends early (a stop string, a refusal, a client gone)
                if guard is not None:
                    note_guard(guard.interventions, events)


def guard_rules_per_row(tokenizer, flags, filters: RuntimeFilters, token_embeddings) -> list:
    """GUARD's rules for each flagged row: the key phrases of the target the gate matched."""
    engine = FILTERS["guard"].engine()
    return [None if flag is None else engine.guard_rules(tokenizer, filters.targets.targets[flag.target].key_phrases,
                                                         filters.guard, token_embeddings) for flag in flags]


def eco_positions(tokenizer, prompts, ids, flags) -> list[list[int]]:
    """Where ECO corrupts each flagged prompt: the tokens of the names the gate found, else all but the last."""
    engine = FILTERS["eco"].engine()
    bos = len(ids[0]) - len(tokenizer(prompts[0], add_special_tokens=False)["input_ids"])
    return [[] if flag is None else engine.entity_positions(tokenizer, prompt, flag.names, bos)
            for prompt, flag in zip(prompts, flags)]


def note_eco(flags, events) -> None:
    for row, flag in enumerate(flags):
        if flag is not None:
            events[row].append(FilterEvent("eco", "corrupted", "entity" if flag.names else "prompt"))


def note_guard(interventions, events) -> None:
    for row, first in enumerate(interventions):
        if first is not None:
            events[row].append(FilterEvent("guard", "restricted", "token", at_token=first))


class ServedModel:
    """A model version and its filters behind one backend (transformers here, or vLLM:
    unlearning.serving.vllm_backend); the gate and the output filter run here, whatever the backend.
    `generate` returns exactly what `stream` sends: both check the answer token by token, in the
    same pieces, so what the audits measure is what a streaming client receives."""

    def __init__(self, model, tokenizer, filters: RuntimeFilters | None = None, backend=None):
        self.tokenizer, self.filters = tokenizer, filters
        self.backend = backend or TransformersBackend(model, tokenizer)

    def generate(self, prompts: Sequence[str], sampling: Sampling = Sampling()) -> list[Generation]:
        flags = self.flags(prompts)
        ids = [prompt_ids(self.tokenizer, p) for p in prompts]
        generated: list[list[int]] = [[] for _ in prompts]
        events: list[list[FilterEvent]] = [self.gate_events(flag) for flag in flags]
        for rows in rows_by_length(ids):
            for step in self.backend.steps([prompts[r] for r in rows], [ids[r] for r in rows], [flags[r] for r in rows],
                                           sampling, self.filters, [events[r] for r in rows]):
                for row, token in zip(rows, step):
                    generated[row].append(token)
        if self.filters is not None and self.filters.output is not None:
            self.filters.output.prepare([self.final_text(tokens, sampling) for tokens in generated])
        return [returned(self.answer(prompts[r], flags[r], len(ids[r]), iter(generated[r]), sampling, events[r]))
                for r in range(len(prompts))]

    def stream(self, prompt: str, sampling: Sampling = Sampling()) -> Iterator[str]:
        """Text pieces as they are generated and checked; returns (StopIteration.value) the Generation."""
        flag = self.flags([prompt])[0]
        ids = prompt_ids(self.tokenizer, prompt)
        events = self.gate_events(flag)
        steps = self.backend.steps([prompt], [ids], [flag], sampling, self.filters, [events])
        return (yield from self.answer(prompt, flag, len(ids), (token for (token,) in steps), sampling, events,
                                       steps.close))

    def answer(self, prompt: str, flag, prompt_length: int, tokens: Iterator[int], sampling: Sampling,
               events: list[FilterEvent], close=lambda: None) -> Iterator[str]:
        """Checks an answer as its tokens come: yields the pieces that passed, returns the Generation.
        It ends at an end token, at a stop string (cut before it), or at a refusal; `close` then ends
        the backend's decoding (and its filters: ECO's hooks, GUARD's count)."""
        checker = self.checker(prompt, flag, sampling.stop)
        kept: list[int] = []
        text, consumed, ended = "", 0, False
        try:
            for token in tokens:
                consumed += 1
                if token in self.backend.end_ids:
                    ended = True
                    break
                kept.append(token)
                text, ended = cut_at_stop(self.tokenizer.decode(kept, skip_special_tokens=True), sampling.stop)
                yield from checker.feed(text, final=ended)
                if ended or checker.refused:
                    break
        finally:
            close()
        yield from checker.feed(text, final=True)
        reason = "content_filter" if checker.refused else "stop" if ended else "length"
        happened = [e for e in events if e.at_token is None or e.at_token < consumed]
        return Generation(checker.emitted, reason, prompt_length, consumed, happened + checker.events)

    def flags(self, prompts: Sequence[str]) -> list:
        if self.filters is None or self.filters.classifier is None:
            return [None] * len(prompts)
        return self.filters.classifier.classify(prompts)

    @staticmethod
    def gate_events(flag) -> list[FilterEvent]:
        return [] if flag is None else [FilterEvent("prompt_classifier", "flagged", flag.by)]

    def checker(self, prompt: str, flag, stops: Sequence[str] = ()) -> OutputChecker:
        output = self.filters.output if self.filters else None
        alu = self.filters.alu if self.filters and flag is not None else None
        return OutputChecker(output, flag, None if alu is None else lambda answer: alu.review(prompt, answer, flag), stops)

    def final_text(self, tokens: list[int], sampling: Sampling) -> str:
        """The answer's whole text: up to its first end token, cut before its first stop string."""
        end = next((i for i, token in enumerate(tokens) if token in self.backend.end_ids), len(tokens))
        return cut_at_stop(self.tokenizer.decode(tokens[:end], skip_special_tokens=True), sampling.stop)[0]


def returned(pieces: Iterator[str]):
    """What a generator returns, its pieces consumed."""
    while True:
        try:
            next(pieces)
        except StopIteration as done:
            return done.value


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def held_for_stop(text: str, stops: Sequence[str]) -> int:
    """How many characters at the end of the text may be the beginning of a stop string (not sent yet)."""
    return max((k for stop in stops for k in range(1, len(stop)) if text.endswith(stop[:k])), default=0)


class OutputChecker:
    """Feeds the text generated so far; yields the pieces that passed the output filter. A piece
    ends at a sentence end far enough from the text's end that no name or fact still being written
    can reach back into it (the filter's `reach`), and never inside a match: every check sees the
    whole text so far, so a name written across a sentence mark ("A. Kestrel") is caught whole.
    The last piece goes once the text is final. Without an output filter, text passes as it comes,
    except an incomplete UTF-8 character and what may be the beginning of a stop string. With an
    ALU review (a flagged prompt with ALU on), the whole answer is held until it is final, then
    reviewed by the agents, once."""

    def __init__(self, output_filter, flag, review=None, stops: Sequence[str] = ()):
        self.output_filter, self.flag, self.review, self.stops = output_filter, flag, review, tuple(stops)
        self.checked_upto = 0  # characters of the generated text already checked and sent
        self.emitted = ""
        self.events: list[FilterEvent] = []
        self.refused = self.finished = False
        self.seen: dict[str, bool] = {}  # sentences compared by meaning, and whether they matched

    def feed(self, text: str, final: bool) -> Iterator[str]:
        if self.refused or self.finished:
            return
        self.finished = final
        if self.review is not None:
            if final:
                yield from self.send(self.reviewed(self.filtered(text, len(text), final)))
            return
        yield from self.send(self.filtered(text, len(text) if final else self.ready(text), final))

    def ready(self, text: str) -> int:
        end = len(text) - held_for_stop(text, self.stops)
        if text[:end].endswith("\ufffd"):  # a character whose bytes are not all generated yet
            end -= 1
        if self.output_filter is None:
            return end
        ends = [m.end() for m in SENTENCE_END.finditer(text, 0, max(0, end - self.output_filter.reach))]
        return ends[-1] if ends else 0

    def filtered(self, text: str, end: int, final: bool) -> str:
        """The checked text from where the last piece ended up to `end` (earlier, if a match crosses it)."""
        start = self.checked_upto
        if self.output_filter is None or end <= start:
            self.checked_upto = max(start, end)
            return text[start:end]
        spans = self.output_filter.spans(text, None if self.flag is None else self.flag.target, final, self.seen)
        while crossing := [s.start for s in spans if s.start < end < s.end]:
            end = min(crossing)
        self.checked_upto = max(start, end)
        here = [Span(max(s.start, start) - start, s.end - start, s.reason) for s in spans if s.end > start and s.start < end]
        if not here:
            return text[start:end]
        checked = self.output_filter.act(text[start:end], here)
        self.note(FilterEvent("output_filter", checked.action, checked.reason))
        self.refused = checked.action == "refuse"
        return checked.text

    def reviewed(self, piece: str) -> str:
        if self.refused:
            return piece
        reviewed = self.review(piece)
        if reviewed.action is None:
            return piece
        self.note(FilterEvent("alu", reviewed.action, reviewed.reason))
        self.refused = reviewed.action == "refuse"
        return reviewed.text

    def note(self, event: FilterEvent) -> None:
        if event not in self.events:  # counted once per answer, however many pieces it touched
            self.events.append(event)

    def send(self, piece: str) -> Iterator[str]:
        if piece:
            self.emitted += piece
            yield piece
