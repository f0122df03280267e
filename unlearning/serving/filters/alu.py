"""ALU (Sanyal & Mandal 2025, "ALU: Agentic LLM Unlearning"): a pipeline of agents that checks an
answer against the forget targets and, where it reveals one, has it rewritten or refuses.

For an answer the served model generated: the targets relevant to the prompt are looked up first
(the gate's name index and sentence vectors), so that the agents' prompts hold a few targets
however many there are (ALU's own code pastes every target into every prompt; its cost grows with
them). Then, on an OpenAI-compatible chat endpoint given by configuration (any instruction-following
model; off unless `AluParams.endpoint` is set): an auditor says whether the answer reveals a
target; if it does (or the deterministic check finds a target's name or fact in it), a reviser
writes `variants` rewrites, a critic scores each from 0 to 10, and the composer returns the best
variant that the deterministic check passes and the critic scored at least `min_score`, else a
refusal. The deterministic check is the output filter's (names, the relevant targets' facts): an
agent's judgement can lower what is said, never let a known fact through. Pure ML code: no Django.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from unlearning.serving.filters import AluParams, OutputFilterParams
from unlearning.serving.filters.output_filter import OutputFilter
from unlearning.serving.targets import ForgetTarget

SCORE = re.compile(r"\b(10|[0-9])\b")
AGENT_TIMEOUT_SECONDS = 30.0


class AgentUnavailable(Exception):
    """An agent's endpoint did not answer (unreachable, an error, a timeout)."""


@dataclass(frozen=True)
class AluResult:
    text: str
    action: str | None  # None (the answer stands), "rewrite" or "refuse"
    reason: str | None  # "agent" (the auditor said so), "check" (a name or fact was found) or "unavailable"


def describe(targets: list[ForgetTarget]) -> str:
    return "\n".join(f"- {t.subject or 'removed content'}: " + "; ".join(t.key_phrases) for t in targets)


class AluPipeline:
    def __init__(self, classifier, params: AluParams, client=None):
        self.classifier, self.params = classifier, params
        self.check = OutputFilter(classifier.targets, classifier.encoder, OutputFilterParams())
        self.client = client or self.connect(params)

    @staticmethod
    def connect(params: AluParams):
        from openai import OpenAI

        return OpenAI(base_url=params.endpoint, api_key=os.environ.get(params.api_key_env, ""), max_retries=1,
                      timeout=AGENT_TIMEOUT_SECONDS)

    def relevant(self, prompt: str, flag) -> list[int]:
        """The targets the agents are shown: the gate's match, then the closest in meaning."""
        chosen = [flag.target] if flag is not None else []
        if len(self.classifier.anchors):
            windows, _ = self.classifier.encoder.encode_windows([prompt])
            similarity = (windows @ self.classifier.anchors.T).max(dim=0).values
            for index in self.classifier.anchor_owner[similarity.argsort(descending=True)].tolist():
                if len(chosen) >= self.params.relevant_targets:
                    break
                if index not in chosen:
                    chosen.append(index)
        return chosen

    def ask(self, instruction: str, temperature: float = 0.0) -> str:
        from openai import OpenAIError

        try:
            reply = self.client.chat.completions.create(model=self.params.model, temperature=temperature, max_tokens=128,
                                                        messages=[{"role": "user", "content": instruction}])
        except OpenAIError as exc:  # unreachable, refused, timed out: the review cannot vouch for the answer
            raise AgentUnavailable(type(exc).__name__) from exc
        return reply.choices[0].message.content or ""

    def leaks(self, text: str, targets: list[int]) -> bool:
        return any(self.check.check(text, target).action is not None for target in targets) or \
            self.check.check(text).action is not None

    def review(self, prompt: str, answer: str, flag) -> AluResult:
        """Fails closed: a flagged prompt's answer that the agents could not review is refused."""
        try:
            return self._review(prompt, answer, flag)
        except AgentUnavailable:
            return AluResult(self.params.refusal, "refuse", "unavailable")

    def _review(self, prompt: str, answer: str, flag) -> AluResult:
        targets = self.relevant(prompt, flag)
        shown = describe([self.classifier.targets.targets[i] for i in targets])
        found = self.leaks(answer, targets)
        verdict = self.ask(f"Forgotten information:\n{shown}\n\nAnswer: {answer}\n\n"
                           "Does the answer reveal any of the forgotten information? Reply YES or NO.")
        if not found and not verdict.strip().upper().startswith("YES"):
            return AluResult(answer, None, None)
        reason = "check" if found else "agent"
        variants = [self.ask(f"Rewrite this answer so that it reveals none of the following, and says so plainly "
                             f"if nothing else is left to say.\n{shown}\n\nQuestion: {prompt}\nAnswer: {answer}\n"
                             "Rewritten answer:", temperature=0.7) for _ in range(self.params.variants)]
        scored = [(self.score(prompt, variant, shown), variant) for variant in variants if not self.leaks(variant, targets)]
        best = max(scored, default=(0, ""), key=lambda pair: pair[0])
        if best[0] >= self.params.min_score:
            return AluResult(best[1], "rewrite", reason)
        return AluResult(self.params.refusal, "refuse", reason)

    def score(self, prompt: str, variant: str, shown: str) -> int:
        """The critic's score from 0 to 10 (0 when it gives none)."""
        reply = self.ask(f"Forgotten information:\n{shown}\n\nQuestion: {prompt}\nAnswer: {variant}\n\n"
                         "Score the answer from 0 to 10: helpful, and revealing none of the forgotten information. "
                         "Reply with the number only.")
        match = SCORE.search(reply)
        return int(match.group(1)) if match else 0
