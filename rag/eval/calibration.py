"""Fitting and judging the abstention model (rag/confidence.py) on the records of `rag eval run`.

A run's records carry each question's `features` and `confidence` and whether it is `answerable`. From them:

- `fit` fits the logistic model (scikit-learn, standardised features, L2) and returns its coefficients as
  `rag/confidence.json` holds them;
- `split` divides a dataset's questions in two by position: the odd positions fit, the even ones are held back, so
  that `rag eval run --limit N` with N dividing half the dataset evaluates held-back questions only;
- `operating_points` is the precision/recall trade-off of abstaining at each `answer.min_confidence`;
- `reliability` bins predicted probabilities against observed answerability (the reliability diagram).

Refit (docs/evaluation.md "Calibrated abstention"):

    rag eval run DATASET --mode quote --out runs/fit   # with answer.min_confidence: 0, so every question answers
    python -m rag.eval.calibration runs/fit/records.jsonl --dataset DATASET --write rag/confidence.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..confidence import FEATURES, ConfidenceModel
from .metrics import abstention_metrics


def split(ids: Sequence[str]) -> tuple[set[str], set[str]]:
    """(fit, held back): ids at odd positions of the dataset's order fit, even positions are held back."""
    return set(ids[1::2]), set(ids[0::2])


def matrix(records: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Features, shape (n, len(FEATURES)), NaN where a feature is missing (None), and labels (1 = answerable) of
    records that carry features."""
    rows = [r for r in records if r.get("features")]
    x = np.array([[r["features"][name] for name in FEATURES] for r in rows], float).reshape(len(rows), len(FEATURES))
    return x, np.array([r["answerable"] for r in rows], int)


def decided(model: ConfidenceModel, records: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(effective probability, labels) of records that carry features: a record that abstained although the run
    answered at any confidence (no passage, weak evidence, nothing survived verification) abstains at every
    threshold, so it counts as probability 0."""
    rows = [r for r in records if r.get("features")]
    x, y = matrix(rows)
    p = probabilities(model, x)
    return np.where([r.get("abstained", False) for r in rows], 0.0, p), y


STRENGTHS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)  # the candidates for C when the fit chooses it


def fit(x: np.ndarray, y: np.ndarray, strength: float | None = None) -> tuple[ConfidenceModel, float]:
    """Logistic regression on standardised features, and the `strength` used (scikit-learn's C, inverse L2 weight).
    `strength` None: the C of `STRENGTHS` with the best 5-fold cross-validated log loss on (x, y) itself, so the
    held-back questions play no part in the choice.

    Raises ValueError when `y` has a single class: nothing to separate."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    if len(set(y.tolist())) < 2:
        raise ValueError("fitting needs answerable and unanswerable questions")
    mean, scale = np.nanmean(x, axis=0), np.nanstd(x, axis=0)  # a missing value (NaN) is left out of both
    scale[scale == 0] = 1.0
    z = np.nan_to_num((x - mean) / scale, nan=0.0)  # and then taken at the mean, as ConfidenceModel.probability does
    if strength is None:
        folds = min(5, int(np.bincount(y).min()))
        strength = max(
            STRENGTHS,
            key=lambda c: cross_val_score(
                LogisticRegression(C=c, max_iter=1000), z, y, cv=folds, scoring="neg_log_loss"
            ).mean(),
        )
    model = LogisticRegression(C=strength, max_iter=1000).fit(z, y)
    coefficients = ConfidenceModel(
        FEATURES,
        tuple(model.coef_[0].tolist()),
        float(model.intercept_[0]),
        tuple(mean.tolist()),
        tuple(scale.tolist()),
    )
    return coefficients, strength


def probabilities(model: ConfidenceModel, x: np.ndarray) -> np.ndarray:
    """P(answerable) by `model` (logistic, ConfidenceModel.probability) of each row of `x`: shape (n, len(FEATURES))
    to (n,)."""
    return np.array([model.probability(dict(zip(FEATURES, row, strict=True))) for row in x])


def operating_points(p: np.ndarray, y: np.ndarray, thresholds: Sequence[float] | np.ndarray) -> list[dict]:
    """Per threshold t (abstain when p < t): abstention precision, recall, F1 (the positives are the unanswerable
    questions) and the share of answerable questions abstained on."""
    points = []
    for t in thresholds:
        abstain = p < t
        figures = abstention_metrics(list(zip(abstain.tolist(), y.astype(bool).tolist(), strict=True)))
        answerable = y == 1
        points.append(
            {
                "threshold": round(float(t), 3),
                **{k: round(v, 4) for k, v in figures.items()},
                "answerable_abstained": round(float(abstain[answerable].mean()) if answerable.any() else 0.0, 4),
            }
        )
    return points


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Equal-width bins of predicted probability: mean prediction, observed share answerable, count (empty bins
    left out)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return [
        {
            "low": round(float(edges[b]), 2),
            "high": round(float(edges[b + 1]), 2),
            "predicted": round(float(p[which == b].mean()), 4),
            "observed": round(float(y[which == b].mean()), 4),
            "n": int((which == b).sum()),
        }
        for b in range(bins)
        if (which == b).any()
    ]


def expected_calibration_error(bins: Sequence[dict]) -> float:
    """Count-weighted mean |predicted - observed| over the reliability bins."""
    total = sum(b["n"] for b in bins)
    return sum(b["n"] * abs(b["predicted"] - b["observed"]) for b in bins) / total if total else 0.0


def _main(argv: Sequence[str] | None = None) -> None:
    from .datasets import detect_format, read_dataset

    parser = argparse.ArgumentParser(prog="python -m rag.eval.calibration", description=__doc__.split("\n")[0])
    parser.add_argument("records", type=Path, nargs="+", help="records.jsonl of runs with answer.min_confidence 0")
    parser.add_argument(
        "--dataset",
        type=Path,
        nargs="+",
        required=True,
        help="the dataset of each run, in the same order (for the split)",
    )
    parser.add_argument(
        "--documents",
        type=Path,
        nargs="*",
        default=[],
        help="documents folder of each generic JSONL dataset, in their order",
    )
    parser.add_argument("--write", type=Path, help="write the fitted model here (e.g. rag/confidence.json)")
    parser.add_argument(
        "--strength",
        type=float,
        help="inverse L2 regularisation (C); default: chosen by cross-validation on the fitting half",
    )
    args = parser.parse_args(argv)
    if len(args.records) != len(args.dataset):
        parser.error("give one --dataset per records file")
    folders = iter(args.documents)
    fit_rows, held = [], {}
    for path, data in zip(args.records, args.dataset, strict=True):
        generic = detect_format(data) == "jsonl"
        dataset = read_dataset(data, documents=next(folders, None) if generic else None)
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        fit_ids, held_ids = split([q.id for q in dataset.questions])
        fit_rows += [r for r in rows if r["id"] in fit_ids]
        held[f"{dataset.name} ({dataset.sha256[:12]})"] = [r for r in rows if r["id"] in held_ids]
    x_fit, y_fit = matrix(fit_rows)
    model, strength = fit(x_fit, y_fit, args.strength)
    everything = [r for rows in held.values() for r in rows]
    report = {
        "fitted_on": {
            "datasets": list(held),
            "questions": len(y_fit),
            "answerable": int(y_fit.sum()),
            "strength": strength,
        },
        "held_back": {name: _judged(model, rows) for name, rows in {"all": everything, **held}.items()},
    }
    if args.write:
        args.write.write_text(
            json.dumps(
                {
                    "features": list(model.names),
                    "coef": list(model.coef),
                    "intercept": model.intercept,
                    "mean": list(model.mean),
                    "scale": list(model.scale),
                    **report,
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
    print(json.dumps(report, indent=1))


def _judged(model: ConfidenceModel, rows: list[dict]) -> dict:
    p, y = decided(model, rows)
    bins = reliability(p, y)
    return {
        "questions": len(y),
        "answerable": int(y.sum()),
        "expected_calibration_error": round(expected_calibration_error(bins), 4),
        "reliability": bins,
        "operating_points": operating_points(p, y, np.round(np.arange(0.05, 1.0, 0.05), 2)),
    }


if __name__ == "__main__":
    _main()
