"""Per-question records to aggregate metrics, and the paired bootstrap that compares two runs.

Aggregates are a flat dict (`retrieval.hybrid.hit@5`, `answer.f1`, `abstention.f1`, `cost.total_ms.p95`, ...): the
names `--fail-under` and `compare` take. The records are turned into numpy columns once, so recomputing every
aggregate on a thousand resamples of the questions takes about a second.
"""

from __future__ import annotations

import numpy as np

from .metrics import abstention_metrics

RESAMPLES = 1000
SEED = 0


class Table:
    """The records' numbers as columns: NaN where a metric does not apply to a question."""

    def __init__(self, records: list[dict]):
        self.ids = [r["id"] for r in records]
        self.scores = _columns([r["scores"] for r in records])
        self.timings = _columns([r["timings"] for r in records])
        answered = all("abstained" in r for r in records) and bool(records)
        self.abstained = np.array([r["abstained"] for r in records], bool) if answered else None
        self.answerable = np.array([r["answerable"] for r in records], bool)

    def __len__(self) -> int:
        return len(self.ids)


def _columns(rows: list[dict]) -> dict[str, np.ndarray]:
    keys = sorted({key for row in rows for key in row})
    return {key: np.array([_number(row.get(key)) for row in rows], float) for key in keys}


def _number(value: float | None) -> float:
    return np.nan if value is None else float(value)


def summarise(table: Table, rows: np.ndarray | None = None) -> dict[str, float | None]:
    """Every aggregate over the questions at `rows` (all by default; repeated rows count repeatedly)."""
    rows = np.arange(len(table)) if rows is None else rows
    out: dict[str, float | None] = {"questions": float(len(rows))}
    out |= {key: _mean(column[rows]) for key, column in table.scores.items()}
    if table.abstained is not None:
        out |= _abstention(table.abstained[rows], table.answerable[rows])
    for key, column in table.timings.items():
        out |= _cost(key, column[rows])
    return out


def _mean(values: np.ndarray) -> float | None:
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else None


def _abstention(abstained: np.ndarray, answerable: np.ndarray) -> dict[str, float | None]:
    """The abstention rate always; precision/recall/F1 only when some questions are unanswerable, since without
    them there is nothing abstaining could get right."""
    figures = abstention_metrics(list(zip(abstained.tolist(), answerable.tolist(), strict=True)))
    out: dict[str, float | None] = {"abstention.rate": figures["abstain_rate"]}
    if not answerable.all():
        out |= {f"abstention.{name}": figures[name] for name in ("precision", "recall", "f1")}
    return out


def _cost(key: str, values: np.ndarray) -> dict[str, float | None]:
    """Latencies as p50/p95, token counts as means (their sum is the cost), decoding speed as its median."""
    present = values[~np.isnan(values)]
    if key.endswith("_tokens"):
        return {f"cost.{key}.mean": _mean(values)}
    quantiles = (50, 95) if key.endswith("_ms") else (50,)
    return {f"cost.{key}.p{q}": float(np.percentile(present, q)) if present.size else None for q in quantiles}


# ---------------------------------------------------------------------------------------------- comparison
def compare_runs(a: list[dict], b: list[dict], resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Per-metric B - A on the questions both runs answered, with a paired bootstrap 95% interval: the same
    resampled questions are scored in both runs, so question difficulty cancels out of the difference."""
    common = sorted({r["id"] for r in a} & {r["id"] for r in b})
    rows = _delta_rows(Table(_only(a, common)), Table(_only(b, common)), resamples, seed) if common else []
    return {"questions": len(common), "resamples": resamples, "seed": seed, "rows": rows}


def _delta_rows(table_a: Table, table_b: Table, resamples: int, seed: int) -> list[dict]:
    base_a, base_b = summarise(table_a), summarise(table_b)
    deltas = _bootstrap_deltas(table_a, table_b, resamples, seed)
    rows = []
    for metric in sorted(base_a.keys() & base_b.keys() - {"questions"}):
        a, b = base_a[metric], base_b[metric]
        if a is not None and b is not None:
            low, high = np.percentile(deltas.get(metric, [np.nan]), [2.5, 97.5])
            rows.append(
                {
                    "metric": metric,
                    "a": a,
                    "b": b,
                    "delta": b - a,
                    "low": float(low),
                    "high": float(high),
                }
            )
    return rows


def _bootstrap_deltas(table_a: Table, table_b: Table, resamples: int, seed: int) -> dict[str, list[float]]:
    """B - A of every metric on each resample; a resample where a metric has no value on one side is skipped."""
    deltas: dict[str, list[float]] = {}
    for rows in np.random.default_rng(seed).integers(0, len(table_a), size=(resamples, len(table_a))):
        sample_a, sample_b = summarise(table_a, rows), summarise(table_b, rows)
        for metric, value in sample_b.items():
            reference = sample_a.get(metric)
            if value is not None and reference is not None:
                deltas.setdefault(metric, []).append(value - reference)
    return deltas


def _only(records: list[dict], ids: list[str]) -> list[dict]:
    by_id = {r["id"]: r for r in records}
    return [by_id[i] for i in ids]
