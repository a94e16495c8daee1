"""`rag ask` and `rag chat` as a user runs them: real subprocesses, the chat in a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pexpect
import pytest

from .conftest import ROOT

pytestmark = pytest.mark.integration

PROMPT = r"\n(\x1b\[[0-9;?]*[A-Za-z])*>"  # prompt_toolkit draws "> " with cursor movements, after a line break


@pytest.fixture(scope="module")
def env(answer_pipeline):
    """The session's sample index and assembled model, so the subprocesses only load them."""
    settings = answer_pipeline.settings
    return {**os.environ, "RAG_INDEX_DIR": str(settings.index_dir), "RAG_DATA_DIR": str(settings.data_dir),
            "HF_HUB_OFFLINE": "1", "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}


def test_ask_json(env):
    result = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "What is the minimum password length?", "--json", "-k", "4"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL,
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


def test_ask_streams_then_prints_sources(env):
    result = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "Combien de jours de télétravail par semaine ?", "--mode", "quote"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "trois jours par semaine" in result.stdout and "\nSources:\n  [1] " in result.stdout


def test_chat_in_a_pseudo_terminal(env, answer_pipeline):
    # no stop sequence and a long budget: the model rambles, so there is an answer running to interrupt
    chat_env = {**env, "RAG_LLM__STOP": "[]", "RAG_LLM__MAX_TOKENS": "600"}
    child = pexpect.spawn(sys.executable, ["-m", "rag", "chat"], env=chat_env, cwd=str(ROOT), encoding="utf-8",
                          timeout=180, dimensions=(40, 200))
    child.logfile_read = open(os.environ.get("RAG_CHAT_LOG", os.devnull), "w", buffering=1)  # to debug a failure
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
    assert child.exitstatus == 0, child.before
    history = (answer_pipeline.settings.data_dir / "chat_history").read_text()
    assert "What is the minimum password length?" in history
