"""Answer quality on the sample corpus's documented questions (examples/README.md), with and without the grammar.

For each question of the README's tables: did the pipeline answer (not abstain), does the answer cite the document
the table names, and does it state the expected fact's main number (the first number of the "expected fact" column
outside parentheses; facts without numbers are not scored on this). Run once with `llm.grammar` off and once on.
Writes bench/results/examples_qa.json.

    python -m bench.examples_qa
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from rag.pipeline import Pipeline
from rag.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def read_questions(readme: Path) -> list[dict]:
    """(question, expected document stem, expected numbers) from the README's per-document tables."""
    rows, document = [], None
    for line in readme.read_text().splitlines():
        if heading := re.match(r"^`([\w.-]+)`", line):
            document = Path(heading.group(1)).stem
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if document and len(cells) == 2 and line.startswith("|") and cells[0] not in ("question", "---"):
            numbers = _NUMBER.findall(re.sub(r"\([^)]*\)", "", cells[1]))
            rows.append({"question": cells[0], "document": document, "numbers": numbers})
    return rows


def run(pipeline: Pipeline, questions: list[dict]) -> dict:
    records = []
    for item in questions:
        answer = pipeline.ask(item["question"])
        cited = {c.doc_id for s in answer.sentences for c in s.citations}
        records.append({
            **item, "answer": answer.text, "raw": answer.raw, "abstained": answer.abstained,
            "cites_document": any(d.startswith(item["document"]) for d in cited),
            "states_number": bool(item["numbers"]) and item["numbers"][0] in _NUMBER.findall(answer.text),
        })
    with_numbers = [r for r in records if r["numbers"]]
    return {
        "questions": len(records), "answered": sum(not r["abstained"] for r in records),
        "cites_document": sum(r["cites_document"] for r in records),
        "states_number": f"{sum(r['states_number'] for r in with_numbers)}/{len(with_numbers)}",
        "records": records,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/examples_qa.json"))
    args = parser.parse_args()
    questions = read_questions(EXAMPLES / "README.md")
    results = {}
    with tempfile.TemporaryDirectory(prefix="rag-examples-") as scratch:
        base = Settings(index_dir=Path(scratch) / "index", data_dir=Path(scratch) / "data")
        pipeline = Pipeline(base)
        pipeline.ingest([EXAMPLES / "corpus"], progress=False)
        for grammar in (False, True):
            pipeline.settings.llm.grammar = grammar  # read per question by the answerer
            results[f"grammar={grammar}"] = run(pipeline, questions)
        pipeline.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    for name, result in results.items():
        print(name, {k: v for k, v in result.items() if k != "records"})


if __name__ == "__main__":
    main()
