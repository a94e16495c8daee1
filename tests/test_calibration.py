"""The abstention model's pure logic: the logistic probability, the split, the fit, operating points and the
reliability bins (rag/confidence.py, rag/eval/calibration.py), on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from rag.confidence import FEATURES, ConfidenceModel, shipped_model
from rag.eval.calibration import (STRENGTHS, expected_calibration_error, fit, matrix, operating_points, probabilities,
                                  reliability, split)


def _model(coef: dict[str, float], intercept: float = 0.0) -> ConfidenceModel:
    return ConfidenceModel(FEATURES, tuple(coef.get(n, 0.0) for n in FEATURES), intercept,
                           (0.0,) * len(FEATURES), (1.0,) * len(FEATURES))


def test_probability_is_the_logistic_of_the_standardised_sum():
    rest = len(FEATURES) - 1
    model = ConfidenceModel(FEATURES, (2.0,) + (0.0,) * rest, -1.0, (0.5,) + (0.0,) * rest, (0.25,) + (1.0,) * rest)
    values = dict.fromkeys(FEATURES, 0.0) | {FEATURES[0]: 1.0}
    assert model.probability(values) == pytest.approx(1 / (1 + np.exp(-(-1.0 + 2.0 * (1.0 - 0.5) / 0.25))))
    assert _model({}, 0.0).probability(dict.fromkeys(FEATURES, 3.0)) == 0.5
    assert _model({}, 1e6).probability(dict.fromkeys(FEATURES, 0.0)) == pytest.approx(1.0)  # no overflow


def test_split_alternates_positions_and_limits_dividing_half_pick_held_back_questions_only():
    from rag.eval.run import subset

    ids = [f"q{i}" for i in range(600)]
    fitted, held = split(ids)
    assert not fitted & held and len(fitted) == len(held) == 300
    for limit in (50, 100, 150, 300):
        assert set(subset(ids, limit)) <= held


def test_a_run_stopped_early_has_asked_both_halves_and_both_sides_of_the_split():
    from rag.eval.run import ask_order, subset

    ids = [f"q{i}" for i in range(600)]  # ClapNQ dev: 300 answerable, then 300 unanswerable
    fitted, _ = split(ids)
    for questions in (ids, subset(ids, 200)):
        order = ask_order(questions)
        assert sorted(order) == sorted(questions)  # each question once
        first = order[: len(order) // 10]
        assert abs(sum(int(q[1:]) < 300 for q in first) - len(first) / 2) <= 2  # answerable and unanswerable
        assert abs(sum(q in fitted for q in first) - len(first) / 2) <= 1  # fitting and held-back positions
    assert ask_order([]) == [] and ask_order(["q0"]) == ["q0"]


def test_fit_separates_and_its_probabilities_rank_answerable_first():
    rng = np.random.default_rng(0)
    y = np.array([1] * 100 + [0] * 100)
    x = rng.normal(0.0, 1.0, (200, len(FEATURES)))
    x[:, FEATURES.index("terms_top")] += 2.0 * y  # one informative feature
    model, strength = fit(x, y)  # strength chosen by cross-validation on (x, y)
    assert strength in STRENGTHS and fit(x, y, 0.3)[1] == 0.3
    p = probabilities(model, x)
    assert p[y == 1].mean() > 0.7 > 0.3 > p[y == 0].mean()
    assert model.coef[FEATURES.index("terms_top")] == max(model.coef)
    with pytest.raises(ValueError):
        fit(x, np.ones(200, int))


def test_operating_points_by_hand():
    p = np.array([0.9, 0.8, 0.3, 0.2])
    y = np.array([1, 0, 1, 0])
    low, mid, high = operating_points(p, y, [0.1, 0.5, 0.95])
    assert low["abstain_rate"] == 0.0 and low["f1"] == 0.0 and low["answerable_abstained"] == 0.0
    # abstain on 0.3 (answerable) and 0.2 (unanswerable): precision 1/2, recall 1/2
    assert (mid["precision"], mid["recall"], mid["answerable_abstained"]) == (0.5, 0.5, 0.5)
    assert high["recall"] == 1.0 and high["answerable_abstained"] == 1.0


def test_reliability_bins_and_calibration_error():
    p = np.array([0.05, 0.15, 0.95, 0.95, 1.0])
    y = np.array([0, 1, 1, 0, 1])
    bins = reliability(p, y, bins=10)
    assert [(b["low"], b["n"]) for b in bins] == [(0.0, 1), (0.1, 1), (0.9, 3)]
    assert bins[2]["predicted"] == pytest.approx(0.9667, abs=1e-4) and bins[2]["observed"] == pytest.approx(2 / 3,
                                                                                                               abs=1e-4)
    assert expected_calibration_error(bins) == pytest.approx((0.05 + 0.85 + 3 * abs(0.96667 - 0.66667)) / 5, abs=1e-3)


def test_matrix_skips_records_without_features():
    records = [{"answerable": True, "features": dict.fromkeys(FEATURES, 1.0)}, {"answerable": False}]
    x, y = matrix(records)
    assert x.shape == (1, len(FEATURES)) and y.tolist() == [1]


def test_the_shipped_model_names_the_features_the_answerer_computes():
    model = shipped_model()
    assert model.names == FEATURES and len(model.coef) == len(FEATURES)


def test_a_missing_feature_is_taken_at_its_mean_in_the_fit_and_the_probability():
    rest = len(FEATURES) - 1
    model = ConfidenceModel(FEATURES, (2.0,) + (0.5,) * rest, 0.3, (0.4,) + (0.1,) * rest, (0.2,) + (1.0,) * rest)
    values = dict.fromkeys(FEATURES, 0.7)
    at_mean = model.probability(values | {FEATURES[0]: 0.4})
    assert model.probability(values | {FEATURES[0]: None}) == at_mean == model.probability(values | {FEATURES[0]: np.nan})
    assert model.probability(values | {FEATURES[0]: 0.9}) > at_mean

    rng = np.random.default_rng(1)
    y = np.array([1] * 100 + [0] * 100)
    x = rng.normal(0.0, 1.0, (200, len(FEATURES)))
    column = FEATURES.index("terms_top")
    x[:, column] += 2.0 * y
    x[::4, column] = np.nan  # missing for a quarter of both classes, e.g. passages in another language
    fitted, _ = fit(x, y)
    observed = ~np.isnan(x[:, column])
    assert fitted.mean[column] == pytest.approx(x[observed, column].mean())  # the mean of the values seen
    p = probabilities(fitted, x)
    assert np.isfinite(p).all() and p[y == 1].mean() > 0.6 > 0.4 > p[y == 0].mean()
    records = [{"answerable": True, "features": dict.fromkeys(FEATURES, 1.0) | {"terms_top": None}}]
    assert np.isnan(matrix(records)[0][0, column])


def test_term_features_of_a_passage_in_another_language_are_missing_and_across_says_so():
    from rag.confidence import TERM_FEATURES, features

    from .conftest import make_hit

    german = make_hit(1, "Personalakten werden zehn Jahre nach dem Ausscheiden aufbewahrt.", lang="de")
    english = make_hit(2, "Personnel files are kept for ten years after the employee leaves.", lang="en")
    question = "How long are personnel files kept?"
    across = features(question, [german, english], [], [], lang="en")
    assert across["across"] == 1.0 and all(across[name] is None for name in TERM_FEATURES)
    assert across["dense_top"] == 0.0 and set(across) == set(FEATURES)
    same = features(question, [english, german], [], [], lang="en")
    assert same["across"] == 0.0 and same["terms_top"] == same["terms_top3"] == same["evidence"] == 1.0
    other_first = features("Wie lange werden Personalakten im Archiv aufbewahrt?", [german, english], [], [], lang="de")
    assert other_first["across"] == 0.0
    assert other_first["terms_top"] == other_first["evidence"] == pytest.approx(2 / 3)  # not "Archiv"
    assert features(question, [german], [], [], lang=None)["across"] == 0.0  # no question language: all count
