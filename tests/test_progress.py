"""``pipelines.progress.Progress``: throttled lines with percent and ETA, fed by pyannote's hook calls."""
import io

from diaropt.pipelines.progress import Progress, current, reporting
from diaropt.pipelines.reference import StageClock


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_lines_are_throttled_and_carry_percent_and_eta():
    out, clock = io.StringIO(), FakeClock()
    p = Progress(stream=out, every=5.0, label="meeting.wav", clock=clock)
    p("segmentation", None, total=10, completed=0)  # the stage starts: nothing to say yet
    for done, t in ((1, 2.0), (2, 4.0), (3, 6.0), (4, 8.0)):
        clock.now = 100.0 + t
        p("segmentation", None, total=10, completed=done)
    p("segmentation", "artifact")  # the final artifact call carries no progress
    clock.now = 120.0
    p("segmentation", None, total=10, completed=10)
    lines = out.getvalue().splitlines()
    # 2 s per batch: the first line after >= 5 s (at 3/10), then the 100 % line
    assert lines == ["[meeting.wav] segmentation:  30% (3/10), 6 s elapsed, ETA 14 s",
                     "[meeting.wav] segmentation: 100% (10/10), 20 s elapsed, done"]


def test_a_new_stage_restarts_the_clock_and_the_eta():
    out, clock = io.StringIO(), FakeClock()
    p = Progress(stream=out, every=0.0, clock=clock)
    p("segmentation", None, total=2, completed=2)
    clock.now = 150.0
    p("embeddings", None, total=8, completed=0)
    clock.now = 160.0
    p("embeddings", None, total=8, completed=2)
    assert out.getvalue().splitlines()[-1] == "embeddings:  25% (2/8), 10 s elapsed, ETA 30 s"


def test_reporting_scopes_the_hook_that_stage_clocks_forward_to():
    out = io.StringIO()
    assert current() is None
    with reporting(Progress(stream=out, every=0.0)) as p:
        assert current() is p
        StageClock(current())("embeddings", None, total=4, completed=4)
    assert current() is None
    assert "embeddings: 100% (4/4)" in out.getvalue()
