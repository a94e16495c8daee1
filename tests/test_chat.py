"""`rag ask` and `rag chat`: the chat loop driven by scripted lines and a scripted model (fast), and as a user runs
them, in real subprocesses and a real pseudo-terminal with the bundled model (integration)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zlib

import numpy as np
import pexpect
import pytest

from rag.answer import Answerer
from rag.chat import run_chat
from rag.errors import GenerationError
from rag.settings import Settings

from .conftest import ROOT, make_hit
from .test_answer import ScriptedLLM

PROMPT = r"\n(\x1b\[[0-9;?]*[A-Za-z])*>"  # prompt_toolkit draws "> " with cursor movements, after a line break


# ---------------------------------------------------------------------------------------------- scripted (fast)
PASSAGES = [
    make_hit(1, "Staff may work remotely up to three days per week.", heading=("Remote work",)),
    make_hit(2, "Passwords must be at least 14 characters long.", heading=("Passwords",), page=2),
]


class QueuedLLM(ScriptedLLM):
    """A scripted model answering from a queue, one output per generation (as simonw/llm's tests enqueue replies).

    An output may end in `interrupt`: the user's Ctrl-C, which arrives as a KeyboardInterrupt between two pieces;
    an exception instance is raised instead of generating. `stopped` says, per generation, whether it was stopped."""

    def __init__(self):
        super().__init__("")
        self.queue: list = []
        self.stopped: list[bool] = []

    def enqueue(self, output, interrupt_after: int | None = None) -> None:
        self.queue.append((output, interrupt_after))

    def stream_tokens(self, prompt, *, max_tokens=None, stop=None, grammar=None):
        output, interrupt_after = self.queue.pop(0)
        if isinstance(output, Exception):
            raise output
        self.pieces = [w + " " for w in output.split(" ")]
        pieces = super().stream_tokens(prompt)
        try:
            for n, piece in enumerate(pieces):
                if n == interrupt_after:
                    raise KeyboardInterrupt
                yield piece
        finally:
            pieces.close()
            self.stopped.append(self.closed_early)


class Retrieval:
    """The search the answerer calls: the two passages above, whatever the query; records the queries."""

    def __init__(self):
        self.queries: list[str] = []

    def __call__(self, query, **options):
        self.queries.append(query)
        return list(PASSAGES)


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A scripted embedder for quote mode: unit vectors of hashed word counts, so shared words mean similarity."""
    vectors = np.zeros((len(texts), 256), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            vectors[row, zlib.crc32(word.encode()) % 256] += 1
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


def chat(lines: list, model: QueuedLLM, **answer_settings) -> tuple[str, Retrieval]:
    """Run the chat loop over `lines` (a KeyboardInterrupt in it is a Ctrl-C at the prompt); return what it printed."""
    search, out = Retrieval(), io.StringIO()
    # the confidence model is fitted for real embeddings, not this bag of words: it decides in test_answer's tests
    settings = Settings(answer={"passage_tokens": 0, "min_confidence": 0.0, **answer_settings}, llm={"n_ctx": 512})
    typed = iter(lines)

    def read_line(prompt: str) -> str:
        out.write(prompt)
        line = next(typed, EOFError)  # Ctrl-D after the last line
        if line in (EOFError, KeyboardInterrupt):
            raise line
        out.write(line + "\n")
        return line

    run_chat(Answerer(search, lambda: model, bag_of_words, settings), read_line=read_line, out=out)
    return out.getvalue(), search


def test_a_question_streams_the_answer_then_its_sources_and_follow_ups_carry_the_history():
    model = QueuedLLM()
    model.enqueue("Staff may work remotely up to three days per week [1].")
    model.enqueue("Passwords must be at least 14 characters long [2].")
    shown, search = chat(["How many days of remote work?", "And the password length?"], model)
    assert shown.startswith("Sovereign RAG chat:") and shown.count("\n> ") == 3, "a prompt before each line and EOF"
    assert "Staff may work remotely up to three days per week [1]. \nSources:\n  [1] Staff handbook > Remote work" \
        in shown, "the sources start on a line of their own"
    assert "  [2] Staff handbook > Passwords (p. 2)  (doc-2)" in shown
    assert search.queries[0] == "How many days of remote work?"
    assert search.queries[1] != "And the password length?" and "remote work" in search.queries[1], \
        "a follow-up is retrieved with the previous question"
    assert len(model.prompts) == 2 and model.queue == []


def test_unsupported_sentences_are_shown_removed_after_the_stream():
    model = QueuedLLM()
    model.enqueue("Staff may work remotely up to three days per week [1]. They get 40 days of holiday [1].")
    shown, _ = chat(["How many days of remote work?"], model)
    assert "Verified answer: Staff may work remotely up to three days per week [1]." in shown
    assert "removed, unsupported" in shown and "40 days of holiday" in shown


def test_commands_sources_mode_reset_help_and_their_errors():
    model = QueuedLLM()
    model.enqueue("Staff may work remotely up to three days per week [1].")
    lines = ["/sources 1", "How many days of remote work?", "/sources 1", "/sources 3", "/mode quote",
             "How long must passwords be?", "/mode shout", "/reset", "/sources 1", "/frobnicate", "/help", "/quit",
             "never read"]
    shown, search = chat(lines, model)
    assert "error: /sources needs a passage number from 1 to 0, not '1'" in shown, "nothing to show before an answer"
    assert "characters 100-150\nStaff may work remotely up to three days per week." in shown
    assert "error: /sources needs a passage number from 1 to 2, not '3'" in shown
    assert "mode: quote" in shown and "Passwords must be at least 14 characters long" in shown
    assert len(model.prompts) == 1, "quote mode answers without the model"
    assert "error: /mode takes generate or quote, not 'shout' (now: quote)" in shown
    assert "conversation reset" in shown and shown.count("error: /sources needs a passage number from 1 to 0") == 2
    assert "unknown command /frobnicate; /help lists the commands" in shown and "/sources N" in shown
    assert "never read" not in shown and len(search.queries) == 2


def test_ctrl_c_stops_a_running_answer_and_the_chat_goes_on():
    model = QueuedLLM()
    model.enqueue("Staff may work remotely up to three days per week [1].", interrupt_after=3)
    model.enqueue("Staff may work remotely up to three days per week [1].")
    shown, search = chat(["How many days of remote work?", KeyboardInterrupt, "How many days of remote work?"],
                         model)
    assert "Staff may work [stopped]" in shown.replace("\n", "")
    assert shown.count("Sources:") == 1, "the stopped answer lists no sources"
    assert search.queries == ["How many days of remote work?"] * 2, "a stopped question is not history"
    assert model.stopped == [True, False], "the model's stream was closed where it stopped"


def test_errors_are_one_line_and_the_chat_goes_on():
    model = QueuedLLM()
    model.enqueue(GenerationError("llama.cpp ran out of memory"))
    model.enqueue("Staff may work remotely up to three days per week [1].")
    shown, _ = chat(["How many days of remote work?", " ", "x" * 50, "How many days of remote work?"], model,
                    max_question_chars=40)
    assert "error: llama.cpp ran out of memory" in shown
    assert "error: the question has 50 characters, more than answer.max_question_chars (40)" in shown
    assert shown.endswith("(doc-1)\n> "), "the last question was answered; the chat ended at the end of input"


# ---------------------------------------------------------------------------------------------- real (integration)
@pytest.fixture(scope="module")
def env(answer_pipeline):
    """The session's sample index and assembled model, so the subprocesses only load them."""
    settings = answer_pipeline.settings
    return {**os.environ, "RAG_INDEX_DIR": str(settings.index_dir), "RAG_DATA_DIR": str(settings.data_dir),
            "HF_HUB_OFFLINE": "1", "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}


@pytest.mark.integration
def test_ask_json(env):
    result = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "What is the minimum password length?", "--json", "-k", "4"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert not answer["abstained"] and "14" in answer["answer"]
    # -k 4 retrieves four passages; the lean prompt shows (and lists as sources) those with a sentence on the question
    assert [s["n"] for s in answer["sources"]] == list(range(1, len(answer["sources"]) + 1))
    assert 1 <= len(answer["sources"]) <= 4
    assert set(answer["timings"]) >= {"retrieval_ms", "prompt_tokens", "ttft_ms", "tokens_per_s", "total_ms"}
    cited = {answer["sources"][n - 1]["doc_id"] for s in answer["sentences"] for n in s["citations"]}
    assert any(d.startswith("it-security-directive") for d in cited)


@pytest.mark.integration
def test_ask_streams_then_prints_sources(env):
    result = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "Combien de jours de télétravail par semaine ?", "--mode", "quote"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "trois jours par semaine" in result.stdout and "\nSources:\n  [1] " in result.stdout


@pytest.mark.integration
def test_chat_in_a_pseudo_terminal(env, answer_pipeline):
    # no stop sequence and a long budget: the model rambles, so there is an answer running to interrupt
    chat_env = {**env, "RAG_LLM__STOP": "[]", "RAG_LLM__MAX_TOKENS": "600"}
    child = pexpect.spawn(sys.executable, ["-m", "rag", "chat"], env=chat_env, cwd=str(ROOT), encoding="utf-8",
                          timeout=180, dimensions=(40, 200))
    log = open(os.environ.get("RAG_CHAT_LOG", os.devnull), "w", buffering=1)  # noqa: SIM115 - closed below
    child.logfile_read = log  # to debug a failure
    try:
        child.expect("Ctrl-D to leave")
        child.expect(PROMPT)
        child.sendline("/mode quote")
        child.expect("mode: quote")
        child.sendline("What is the minimum password length?")
        child.expect("14 characters")
        child.expect(r"Sources:\r\n  \[1\] ")
        child.expect(PROMPT)
        child.sendline("/sources 1")
        child.expect(r"characters \d+-\d+\r\n")
        child.expect(PROMPT)

        child.sendline("/mode generate")
        child.expect("mode: generate")
        child.sendline("What must staff do when a security incident happens?")
        child.expect(r"happens\?(\x1b\[[0-9;?]*[A-Za-z]|\r)*\n")  # the question is submitted
        child.expect(r"\w+ \w+ \w+")  # tokens are arriving
        child.sendintr()
        child.expect(r"\[stopped\]")
        child.expect(PROMPT)

        child.sendline("/help")
        child.expect("/sources N")
        child.expect(PROMPT)
        child.send("\x1b[A")  # up arrow: the history recalls the last line
        child.sendline("")
        child.expect("/sources N")
        child.expect(PROMPT)
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
        log.close()
    assert child.exitstatus == 0, child.before
    history = (answer_pipeline.settings.data_dir / "chat_history").read_text()
    assert "What is the minimum password length?" in history
