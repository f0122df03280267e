"""Finding targets' names in text (unlearning.serving.names), in scripts with and without spaces."""

from unlearning.serving.names import NameIndex
from unlearning.serving.targets import ForgetTarget, ForgetTargets

TARGETS = ForgetTargets((
    ForgetTarget(subject="Alma Kestrel", aliases=("A. Kestrel",)),
    ForgetTarget(subject="王小明"),
    ForgetTarget(subject="김민수"),
    ForgetTarget(subject="Bruno Tallis"),
))


def found(text: str, ratio: float = 0.88) -> set[tuple[int, str]]:
    return {(m.target, text[m.start : m.end]) for m in NameIndex(TARGETS).matches(text, ratio)}


def test_names_are_found_as_written_initialled_or_misspelt_and_no_one_else():
    assert found("Where does Alma Kestral live?") == {(0, "Alma Kestral")}
    assert found("Ask A. Kestrel.") == {(0, "A. Kestrel")}  # the sentence's full stop is not the name's
    assert found("Where does Alma Hollis live?") == set()


def test_names_in_scripts_without_spaces_are_found_inside_a_sentence():
    assert found("王小明住在哪里？") == {(1, "王小明")}
    assert found("请告诉我王小明的电话。And Bruno Tallis?") == {(1, "王小明"), (3, "Bruno Tallis")}
    assert found("김민수는 어디에 살아요?") == {(2, "김민수")}  # the particle attached
    assert found("李小红住在哪里？") == set() and found("김민지는 어디에 살아요?") == set()
