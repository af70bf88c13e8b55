"""The judge's rules on a hand-made timeline: a stale answer is a violation unless the pod went
unroutable around a lost primary (its table write may be what was lost), which is reported apart."""

from __future__ import annotations

import pytest

from stateful_route.testing.judge import Findings, Timeline


@pytest.mark.parametrize(
    ("data_loss", "stale", "apart"),
    [
        ([], 1, 0),
        ([(9.0, 11.0)], 0, 1),  # pod 2 went unroutable inside the window
        ([(20.0, 21.0)], 1, 0),  # a window after the answer excuses nothing
        ([(1.0, 2.0)], 1, 0),  # nor one that ended before the pod went unroutable
    ],
)
def test_a_stale_answer_is_set_apart_only_across_a_data_loss_window(data_loss, stale, apart):
    timeline = Timeline(3)
    timeline.update({0, 1, 2}, 0.0)
    timeline.update({0, 1}, 10.0)  # pod 2 unroutable from t=10
    findings = Findings(bound=1.0, answers=[("u", 2, 12.5, 12.6), ("v", 0, 12.5, 12.6)])
    verdict = findings.judge(timeline, data_loss)
    assert len(verdict.stale) == stale
    assert len(verdict.stale_across_loss) == apart
    assert verdict.violations == verdict.stale
    if stale:
        assert verdict.stale == ["u -> pod 2 at 12.500, unroutable for 2.500s"]
