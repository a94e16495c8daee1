"""Parsing alone: pages/s over Legilux PDFs, and the worst time per file over the hostile corpus.

    python -m bench.parse                       # writes bench/results/parse.json
    python -m bench.parse --pdfs 40 --cap 60 --out bench/results/parse.json
    # another checkout's in-process numbers (e.g. before the pool): run its copy of this file from its root
    cd /tmp/before && python -m bench.parse --data /work/shared/data --out /tmp/parse-before.json

Pages/s: the first `--pdfs` Legilux PDFs parsed (a) in this process one after the other, as the ingest's former
parse-ahead thread did, and (b) through started `ParsePool`s of 1 and of 2 worker processes, the three in turn for
`--rounds` rounds; medians (the pools' start-up seconds apart). On a machine shared with other jobs the second
worker only helps as far as a core is free: the load average is recorded beside the figures.
Hostile corpus (tests/hostile_corpus.py): each file parsed (a) in a fresh child process running `load_document`
directly, killed after `--cap` seconds (the time reported is then the cap, marked `capped`), and (b) through
`ParsePool` under the default limits, one file at a time. The pool numbers need rag/parse_pool.py; a checkout without
it gets the in-process numbers only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rag import load
from rag.settings import IngestSettings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
_CHILD = """import sys, time
from pathlib import Path
from rag import load
started = time.perf_counter()
try:
    load.load_document(Path(sys.argv[1]))
except Exception as exc:
    print(type(exc).__name__, file=sys.stderr)
print(time.perf_counter() - started)
"""


def pdf_rates(data: Path, count: int, rounds: int) -> dict:
    """Median pages/s of each way to parse, over `rounds` rounds that run the ways in turn, so that other jobs on a
    shared machine weigh on all of them alike. Pools are started (and their workers warmed up) before the rounds, as
    in the server or a long ingest; the seconds that took are reported apart."""
    legilux = data / "corpus" / "legilux" / "works"
    pdfs = sorted(p for p in legilux.rglob("*.pdf") if p.is_file())[:count]
    if not pdfs:
        raise SystemExit(f"no PDFs under {legilux}: is ../shared/data present?")
    ways = {"in_process": lambda: [load.load_document(pdf) for pdf in pdfs]}
    result: dict = {"pdfs": len(pdfs), "rounds": rounds}
    with contextlib.ExitStack() as stack:
        try:
            from rag.parse_pool import ParsePool
        except ImportError:  # a checkout from before the pool
            ParsePool = None
        for workers in (1, 2) if ParsePool else ():
            started = time.perf_counter()
            pool = stack.enter_context(ParsePool(IngestSettings(parse_workers=workers)))
            list(pool.parse_files(pdfs[:workers], ahead=workers))  # start the workers, load their models
            result[f"pool_{workers}_workers_start_s"] = round(time.perf_counter() - started, 2)
            ways[f"pool_{workers}_workers"] = lambda pool=pool: [o for _, o in pool.parse_files(pdfs, ahead=8)]
        runs: dict[str, list[dict]] = {way: [] for way in ways}
        for _ in range(rounds):
            for way, parse in ways.items():
                runs[way].append(_measure(parse))
    return {**result, **{way: _median(measured) for way, measured in runs.items()}}


def _measure(parse) -> dict:
    started = time.perf_counter()
    documents = parse()
    seconds = time.perf_counter() - started
    pages = sum(d.pages or 0 for d in documents)
    return {"pages": pages, "seconds": round(seconds, 2), "pages_per_s": round(pages / seconds, 1)}


def _median(measured: list[dict]) -> dict:
    middle = sorted(measured, key=lambda m: m["pages_per_s"])[len(measured) // 2]
    return {**middle, "pages_per_s_all_rounds": [m["pages_per_s"] for m in measured]}


def hostile_times(cap: float) -> dict:
    from tests.hostile_corpus import write_corpus

    with tempfile.TemporaryDirectory() as scratch:
        paths = write_corpus(Path(scratch))
        in_process = {name: _child_time(path, cap) for name, path in paths.items()}
        result = {"in_process": in_process, "in_process_worst_s": max(t["seconds"] for t in in_process.values())}
        try:
            from rag.parse_pool import ParsePool
        except ImportError:
            return result
        pooled = {}
        with ParsePool(IngestSettings()) as pool:
            pool.parse_uploads([("warm-up.txt", b"warm up")])
            for name, path in paths.items():
                started = time.perf_counter()
                (outcome,) = pool.parse_uploads([(name, path.read_bytes())])
                pooled[name] = {"seconds": round(time.perf_counter() - started, 3),
                                "outcome": "added" if isinstance(outcome, load.Document) else str(outcome)}
        result.update(pool=pooled, pool_worst_s=max(t["seconds"] for t in pooled.values()))
    return result


def _child_time(path: Path, cap: float) -> dict:
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=cap,
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return {"seconds": cap, "capped": True}
    if done.returncode:
        return {"seconds": None, "crashed": done.returncode, "stderr": done.stderr[-300:]}
    return {"seconds": round(float(done.stdout.split()[-1]), 3), "error": done.stderr.strip() or None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder (Legilux PDFs)")
    parser.add_argument("--pdfs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the PDF measurement (median reported)")
    parser.add_argument("--no-hostile", action="store_true", help="only the PDF rates")
    parser.add_argument("--cap", type=float, default=60.0, help="seconds before an in-process parse is stopped")
    parser.add_argument("--out", type=Path, default=RESULTS / "parse.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    result = {
        "code": str(ROOT), "cpus": os.cpu_count(), "python": platform.python_version(),
        "pdf": pdf_rates(args.data, args.pdfs, args.rounds),
        "hostile": None if args.no_hostile else hostile_times(args.cap),
        "loadavg_before_after": [load_before, os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"pdf": result["pdf"], "hostile_worst_s": {
        way: (result["hostile"] or {}).get(f"{way}_worst_s") for way in ("in_process", "pool")}}, indent=2))


if __name__ == "__main__":
    main()
