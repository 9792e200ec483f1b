"""The impact evaluation's label and metrics on synthetic prices."""

from __future__ import annotations

import numpy as np
import pytest

from services.analysis.market import PriceBars
from services.evals.impact import Labeller, auc, cross_validated_auc, precision_top

MIN = 60_000


def test_auc_matches_the_pairwise_definition() -> None:
    assert auc([0.1, 0.2, 0.3, 0.4], [False, False, True, True]) == 1.0
    assert auc([0.4, 0.3, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5  # ties count half
    assert auc([0.1, 0.9], [True, True]) is None
    rng = np.random.default_rng(1)
    s, y = rng.random(200), rng.random(200) < 0.3
    pos, neg = s[y], s[~y]
    pairs = [(a > b) + 0.5 * (a == b) for a in pos for b in neg]
    assert auc(list(s), list(y)) == pytest.approx(np.mean(pairs))


def test_precision_in_the_top_decile() -> None:
    scores = list(range(20))
    labels = [i >= 18 for i in range(20)]
    assert precision_top(scores, labels) == 1.0


def bars(closes: list[float], start_ms: int = 0) -> PriceBars:
    times = np.arange(start_ms, start_ms + len(closes) * MIN, MIN, dtype=np.int64)
    return PriceBars(times, np.asarray(closes, dtype=float), MIN)


def test_label_is_the_move_after_t_over_the_trailing_median() -> None:
    calm = [100 * (1.001 if i % 60 < 30 else 1.0) for i in range(240)]  # 10 bps per 30 min
    jump = [102.0] * 40  # +2% right after t
    b = bars(calm + jump)
    t = 240 * MIN  # the last calm close is known at t
    label, why = Labeller(b, 30, 24, 120).label(t, 2.0)
    assert why == "" and label is not None and label.moved
    assert label.future_abs_return == pytest.approx(np.log(102 / 100), rel=1e-6)
    assert label.baseline == pytest.approx(np.log(1.001), rel=0.5)


def test_gaps_and_short_history_are_skipped() -> None:
    b = bars([100.0] * 200)
    lab = Labeller(b, 30, 24, 120)
    assert lab.label(500 * MIN, 2.0) == (None, "no prices at t or t+horizon")  # stale: no carrying over
    assert lab.label(60 * MIN, 2.0) == (None, "baseline history too short")


def test_cross_validated_fit_finds_a_real_signal_and_not_noise() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 2))
    y = list((x[:, 0] + 0.3 * rng.normal(size=400)) > 0.5)
    assert cross_validated_auc(x, y) > 0.9
    assert 0.35 < cross_validated_auc(x[:, 1:], y) < 0.65
