import pytest
from pyannote.core import Annotation, Segment, Timeline

from diaropt.core.metrics import DERAccumulator, der


def ann(*turns):
    a = Annotation()
    for s, e, label in turns:
        a[Segment(s, e)] = label
    return a


REF = ann((0, 10, "A"), (10, 20, "B"))
HYP = ann((0, 12, "x"), (12, 20, "y"))
UEM = Timeline([Segment(0, 20)])


def test_strict_der_hand_computed():
    # x->A, y->B; [10,12] is B labelled x: 2 s confusion over 20 s of speech
    assert der(REF, HYP, UEM, "strict") == pytest.approx(2 / 20)


def test_fluidaudio_der_hand_computed():
    # +-0.25 s around the reference boundaries 0, 10, 20 is not scored: 19 s remain;
    # confusion is [10.25, 12] = 1.75 s
    assert der(REF, HYP, UEM, "fluidaudio") == pytest.approx(1.75 / 19)


def test_overlap_counts_only_in_strict():
    ref = ann((0, 10, "A"), (5, 15, "B"))
    hyp = ann((0, 10, "x"), (10, 15, "y"))
    uem = Timeline([Segment(0, 15)])
    # strict: B is missed on [5,10] -> 5 s of 20 s reference speech
    assert der(ref, hyp, uem, "strict") == pytest.approx(5 / 20)
    # overlap [5,10] skipped, collars at 0,5,10,15: scored [0.25,4.75] and [10.25,14.75], no error
    assert der(ref, hyp, uem, "fluidaudio") == pytest.approx(0.0)


def test_accumulator_totals_weight_by_speech():
    acc = DERAccumulator()
    acc.add("a", REF, HYP, UEM)
    acc.add("b", ann((0, 5, "A")), ann((0, 5, "z")), Timeline([Segment(0, 5)]))
    t = acc.totals()
    assert t["der_strict"] == pytest.approx(2 / 25)
    assert t["confusion_strict"] == pytest.approx(2 / 25)
    assert t["missed_strict"] == 0 and t["false_strict"] == 0
