"""What a served model must keep unsaid: the forget targets of the requests certified against it.

A target is one data subject (or one piece of content about no one): the names a prompt may call
them by, the questions that were asked about them, the facts (answers) the model must not give
and their texts. Built from the training records the requests removed, never from logs. Pure
Python (no torch, no Django): the worker that refreshes a version's filters builds them, and the
serving process reads them back from the model store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

# Shorter answers ("a", "no", a one-digit number) are everywhere in ordinary text: forbidding them
# would block answers about everyone. They still count when the whole answer is asked for.
MIN_KEY_PHRASE_CHARS = 3


@dataclass(frozen=True)
class ForgetTarget:
    subject: str = ""  # the name as texts write it ("Alma Kestrel"); "" for content about no one
    aliases: tuple[str, ...] = ()  # other ways a prompt may name them ("A. Kestrel")
    questions: tuple[str, ...] = ()  # questions about the subject (without the model's template)
    answers: tuple[str, ...] = ()  # the facts the model must not give
    texts: tuple[str, ...] = ()  # the removed texts themselves

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.subject, *self.aliases) if n)

    @property
    def key_phrases(self) -> tuple[str, ...]:
        """The facts a generation must not spell out: each distinct answer long enough to mean something."""
        return tuple(dict.fromkeys(a.strip() for a in self.answers if len(a.strip()) >= MIN_KEY_PHRASE_CHARS))


@dataclass(frozen=True)
class ForgetTargets:
    targets: tuple[ForgetTarget, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.targets)

    def to_json(self) -> str:
        return json.dumps({"targets": [asdict(t) for t in self.targets]}, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ForgetTargets:
        return cls(tuple(ForgetTarget(**{k: tuple(v) if isinstance(v, list) else v for k, v in t.items()})
                         for t in json.loads(text)["targets"]))


def initial_alias(name: str) -> str:
    """'Alma Kestrel' → 'A. Kestrel' (how the in-context probes mask a name, and people abbreviate one)."""
    first, _, rest = name.partition(" ")
    return f"{first[0]}. {rest}" if rest and first else ""


def targets_from_records(records: Iterable[dict], names: dict[str, Sequence[str]] | None = None) -> ForgetTargets:
    """One target per owner of the removed records (records about no one form one target each).
    `names`: owner key → names the request gave (its full name), added as aliases."""
    grouped: dict[str, list[dict]] = {}
    for record in records:
        grouped.setdefault(record.get("owner_key") or record["record_id"], []).append(record)
    targets = []
    for owner, owned in sorted(grouped.items()):
        subjects = [r["subject"] for r in owned if r.get("subject")]
        subject = subjects[0] if subjects else ""
        given = [n for n in (names or {}).get(owner, ()) if n and n != subject]
        aliases = [a for a in (initial_alias(subject) if subject else "", *given) if a]
        targets.append(ForgetTarget(
            subject=subject or (given[0] if given else ""),
            aliases=tuple(dict.fromkeys(a for a in aliases if a != (subject or (given[0] if given else "")))),
            questions=tuple(r["question"] for r in owned if r.get("question")),
            answers=tuple(r["answer"] for r in owned if r.get("answer")),
            texts=tuple(r["text"] for r in owned if r.get("text") and not r.get("question")),
        ))
    return ForgetTargets(tuple(targets))
