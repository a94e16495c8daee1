"""`rag eval run`: evaluate one configuration on one dataset, resumably, and write its outputs.

Each finished question is appended to `<out>/records.jsonl` at once; a rerun of the same command skips the ids
already there, so an interrupted run loses at most the question in progress. `<out>/run.json` holds what decides
the numbers (dataset hash, mode, limit, configuration, index key): a rerun with anything else is refused rather
than mixing two configurations in one set of records.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from ..errors import InputError
from ..pipeline import Pipeline
from ..settings import Settings
from .datasets import Dataset, Question, read_dataset
from .index import open_index
from .question import Ranker, evaluate
from .report import write_outputs
from .summary import Table, summarise

MODES = ("generate", "quote", "retrieval")
# settings that change how fast a run goes, not its numbers: a run may be resumed with other values
SPEED_ONLY = {
    "config.embedder.threads",
    "config.embedder.batch_size",
    "config.embedder.device",
    "config.llm.n_threads",
    "config.llm.request_timeout_s",
}


@dataclass(frozen=True)
class EvalRequest:
    """One `rag eval` run: the dataset (format recognised from the path unless given) and the folder to write into,
    the documents folder of a generic JSONL or articles set, at most `limit` questions, the answer mode, the command
    as typed, and a SQuAD file parallel to the dataset whose paragraphs are indexed instead of its own."""

    dataset: Path
    out: Path
    format: str | None = None  # None: recognised from the path
    documents: Path | None = None  # generic JSONL only
    limit: int | None = None
    mode: str | None = None  # None: answer.mode of the settings
    command: str = ""  # as typed, for the report
    documents_of: Path | None = None  # SQuAD only: the questions of `dataset` over this file's paragraphs


def run_eval(request: EvalRequest, settings: Settings, progress: bool = True) -> dict:
    """Evaluate, write results.json / report.md / plots into `request.out`, and return the results."""
    started = time.perf_counter()
    mode = request.mode or settings.answer.mode
    if mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    dataset = read_dataset(request.dataset, request.format, request.documents, documents_of=request.documents_of)
    questions = subset(dataset.questions, request.limit)
    pipeline, index = open_index(settings, dataset, progress)
    try:
        identity = _identity(request, settings, dataset, mode, index["key"])
        records = _ask_all(pipeline, dataset, questions, mode, request.out, identity, progress)
        run = _provenance(request, settings, dataset, questions, mode, index, pipeline, started)
    finally:
        pipeline.close()
    results = {"run": run, "aggregates": summarise(Table(records)), "records": records}
    write_outputs(results, request.out)
    return results


def subset(questions: list[Question], limit: int | None) -> list[Question]:
    """`limit` questions evenly spaced through the dataset: the first N would all come from its first articles
    (or, for ClapNQ, all be answerable)."""
    if limit is None or limit >= len(questions):
        return list(questions)
    return [questions[i * len(questions) // limit] for i in range(limit)]


def ask_order(questions: list[Question]) -> list[Question]:
    """The order to ask `questions` in: a golden-ratio stride (step ~0.618·n, coprime with n) through them, so that
    a run stopped early (or resumed) holds questions spread over the whole list, ClapNQ's answerable and unanswerable
    halves alike, and, n being even, alternating odd and even positions: both sides of the calibration split
    (rag.eval.calibration.split). Records are reported in the dataset's order whatever the asking order."""
    n = len(questions)
    if n == 0:
        return []
    step = next(s for s in range(round(n * 0.618), n + 1) if math.gcd(s, n) == 1)
    return [questions[i * step % n] for i in range(n)]


def _ask_all(
    pipeline: Pipeline,
    dataset: Dataset,
    questions: list[Question],
    mode: str,
    out: Path,
    identity: dict,
    progress: bool,
) -> list[dict]:
    done = resume(out, identity)
    ranker = Ranker(pipeline, dataset)
    bar = tqdm(
        total=len(questions),
        initial=sum(q.id in done for q in questions),
        unit="q",
        desc=f"eval {mode}",
        disable=not progress,
        dynamic_ncols=True,
    )
    with (out / "records.jsonl").open("a", encoding="utf-8") as sink:
        for question in ask_order(questions):
            if question.id not in done:
                done[question.id] = evaluate(question, ranker, pipeline, mode)
                sink.write(json.dumps(done[question.id], ensure_ascii=False) + "\n")
                sink.flush()
                bar.update(1)
    bar.close()
    return [done[q.id] for q in questions]


def resume(out: Path, identity: dict) -> dict[str, dict]:
    """The records of an earlier run of the same identity in `out` (a half-written last line is dropped), after
    writing `run.json`; a run of another identity there is an InputError."""
    out.mkdir(parents=True, exist_ok=True)
    marker, records = out / "run.json", out / "records.jsonl"
    if marker.is_file() and records.is_file():
        previous = json.loads(marker.read_text())
        # a setting only one side has comes from a newer version of the settings, not from the user: not a change
        changed = sorted(k for k in identity.keys() & previous.keys() if identity[k] != previous[k])
        if changed:
            raise InputError(
                f"{out} holds a run with another {', '.join(changed)}; pass another --out, or delete "
                f"{records} to start this one afresh"
            )
    marker.write_text(json.dumps(identity, indent=1))
    done = {}
    if records.is_file():
        for line in records.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the line being written when the run was interrupted
            done[record["id"]] = record
        records.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in done.values()), "utf-8")
    return done


def _identity(request: EvalRequest, settings: Settings, dataset: Dataset, mode: str, index_key: str) -> dict:
    """What decides the numbers, one entry per setting so that a refused resume can name the setting that changed."""
    entries = {
        "dataset_sha256": dataset.sha256,
        "format": dataset.format,
        "mode": mode,
        "limit": request.limit,
        "index": index_key,
    }
    for section, fields in _config(settings).items():
        if isinstance(fields, dict):
            entries |= {f"config.{section}.{name}": value for name, value in fields.items()}
        else:
            entries[f"config.{section}"] = fields
    return {key: value for key, value in entries.items() if key not in SPEED_ONLY}


def _config(settings: Settings) -> dict:
    """The settings as run, minus what only says where files live (not what the numbers depend on); secrets are
    SecretStr and dump as `**********`."""
    return settings.model_dump(mode="json", exclude={"index_dir", "data_dir", "server", "audit"})


def _provenance(
    request: EvalRequest,
    settings: Settings,
    dataset: Dataset,
    questions: list[Question],
    mode: str,
    index: dict,
    pipeline: Pipeline,
    started: float,
) -> dict:
    info = pipeline.embedder.info
    llm = pipeline.llm.info if mode == "generate" else None
    return {
        "command": request.command,
        "mode": mode,
        "version": __version__,
        "config": _config(settings),
        "dataset": {
            "path": str(request.dataset),
            "documents_of": str(request.documents_of) if request.documents_of else None,
            "name": dataset.name,
            "format": dataset.format,
            "sha256": dataset.sha256,
            "documents": index["documents"],
            "questions": len(dataset.questions),
            "evaluated": len(questions),
            "limit": request.limit,
        },
        "models": {
            "embedder": info.manifest(),
            "llm": {"backend": llm.backend, "model": llm.model, "sha256": llm.sha256} if llm else None,
        },
        "index": index,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
        "seconds": round(time.perf_counter() - started, 1),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------- quality gates
def parse_gate(text: str) -> tuple[str, float]:
    """`METRIC=VALUE` as given to --fail-under."""
    metric, _, value = text.partition("=")
    try:
        return metric.strip(), float(value)
    except ValueError:
        raise InputError(f"--fail-under takes METRIC=VALUE (e.g. answer.f1=0.4), not {text!r}") from None


def gate_failures(aggregates: dict, gates: list[tuple[str, float]]) -> list[str]:
    """One line per metric below its threshold; an unknown metric name is an InputError with suggestions."""
    failures = []
    for metric, threshold in gates:
        if metric not in aggregates:
            close = difflib.get_close_matches(metric, list(aggregates), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; see results.json → aggregates"
            raise InputError(f"--fail-under names unknown metric {metric!r}{hint}")
        value = aggregates[metric]
        if value is None or value < threshold:
            shown = "no value (it does not apply to this run)" if value is None else f"{value:.4f}"
            failures.append(f"{metric} = {shown}, below the threshold {threshold}")
    return failures
