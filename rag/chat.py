"""`rag chat` (and the streaming output of `rag ask`): a terminal front door over `Pipeline.stream`.

Line editing and the up-arrow history (kept in `<data_dir>/chat_history`) come from prompt_toolkit. While an answer is
streaming the prompt is not active, so Ctrl-C raises KeyboardInterrupt in the loop that consumes the stream: the
generators unwind, which releases llama.cpp, and the chat goes on. Ctrl-D at the prompt leaves.

The loop takes the line reader and the output as parameters (`run_chat(..., read_line=..., out=...)`), and needs of the
pipeline only its settings and `stream` (`Answers`; an `Answerer` has both): tests/test_chat.py drives it with scripted
lines and a scripted model, and through a real terminal with the real model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TextIO

from .answer import Answer, Event, Source, Token
from .errors import InputError, RagError
from .private_files import touch_private
from .prompt import passage_label

if TYPE_CHECKING:
    from .settings import Settings
    from .store import SearchFilter

ReadLine = Callable[[str], str]  # prompt -> the line typed; raises EOFError (Ctrl-D) or KeyboardInterrupt (Ctrl-C)


class Answers(Protocol):
    """What the chat needs of a `Pipeline` (or an `Answerer`): the settings, and answers as streamed events."""

    settings: Settings

    def stream(
        self,
        question: str,
        *,
        k: int | None = None,
        mode: str | None = None,
        search_filter: SearchFilter | None = None,
        history: Sequence[str] = (),
    ) -> Generator[Event, None, None]:
        """`Token`s, then the verified `Answer` (rag/answer.py); `close()` stops the generation."""
        ...


HELP = """Ask a question about the indexed documents, or use a command:
  /sources N               show the full text of passage N of the last answer
  /mode generate|quote     generate answers with the model, or quote the best sentences verbatim
  /reset                   forget the conversation (follow-ups are retrieved with the previous question)
  /help                    this text
  /quit                    leave (Ctrl-D works too; Ctrl-C stops a running answer)"""


def print_stream(events: Iterable[Event], out: TextIO = sys.stdout) -> Answer:
    """Write tokens as they arrive, then the verified answer where it differs, then the numbered sources."""
    streamed: list[str] = []
    answer: Answer | None = None
    for event in events:
        if isinstance(event, Token):
            streamed.append(event.text)
            out.write(event.text)
            out.flush()
        else:
            answer = event
    if answer is None:  # every stream ends with its Answer (rag/answer.py); a stream cut short raised before
        raise RuntimeError("the answer stream ended without an Answer")
    out.write(render_tail(answer, "".join(streamed)) + "\n")
    out.flush()
    return answer


def render_tail(answer: Answer, streamed: str) -> str:
    """What follows the streamed text, from the end of its line: verification may have removed sentences or added
    citations; the text itself when nothing was streamed (quote mode, abstention)."""
    lines = [""] if streamed.strip() else [answer.text]
    if streamed.strip() and " ".join(streamed.split()) != answer.text:
        lines.append(f"Verified answer: {answer.text}")
    lines += [f"  removed, unsupported ({s.support:.2f}): {s.text}" for s in answer.removed]
    if answer.sources:
        lines.append("Closest passages:" if answer.abstained else "Sources:")
        lines += [f"  {source_line(s)}" for s in answer.sources if s.cited or answer.abstained]
    return "\n".join(lines)


def source_line(source: Source) -> str:
    """`[n] Title p.3 > Heading  (doc-id)`: how a source is listed under an answer."""
    return f"[{source.n}] {passage_label(source.chunk)}  ({source.chunk.doc_id})"


@dataclass
class ChatSession:
    """The state of one conversation; `handle` is everything a line typed at the prompt can do."""

    pipeline: Answers
    mode: str
    k: int | None = None
    history: list[str] = field(default_factory=list)
    last: Answer | None = None
    out: TextIO = sys.stdout

    def handle(self, line: str) -> bool:
        """Act on one line; False means leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return self._command(*line[1:].split(maxsplit=1))
        self._answer(line)
        return True

    def _answer(self, question: str) -> None:
        events = self.pipeline.stream(question, k=self.k, mode=self.mode, history=self.history)
        try:
            self.last = print_stream(events, self.out)
        except KeyboardInterrupt:
            events.close()
            self.say("\n[stopped]")
            return
        except RagError as exc:
            self.say(f"error: {exc}")
            return
        self.history.append(question)

    def _command(self, name: str, argument: str = "") -> bool:
        if name in ("quit", "exit", "q"):
            return False
        actions = {"help": lambda _: self.say(HELP), "sources": self._sources, "mode": self._mode, "reset": self._reset}
        if name not in actions:
            self.say(f"unknown command /{name}; /help lists the commands")
        else:
            try:
                actions[name](argument.strip())
            except InputError as exc:
                self.say(f"error: {exc}")
        return True

    def _sources(self, argument: str) -> None:
        sources = self.last.sources if self.last else []
        if not argument.isdigit() or not 1 <= int(argument) <= len(sources):
            raise InputError(f"/sources needs a passage number from 1 to {len(sources)}, not {argument!r}")
        source = sources[int(argument) - 1]
        chunk = source.chunk
        self.say(f"{source_line(source)}  characters {chunk.start}-{chunk.end}\n{chunk.text}")

    def _mode(self, argument: str) -> None:
        if argument not in ("generate", "quote"):
            raise InputError(f"/mode takes generate or quote, not {argument!r} (now: {self.mode})")
        self.mode = argument
        self.say(f"mode: {argument}")

    def _reset(self, _: str) -> None:
        self.history.clear()
        self.last = None
        self.say("conversation reset")

    def say(self, text: str) -> None:
        """Write one message line to the session's output."""
        self.out.write(text + "\n")
        self.out.flush()


def run_chat(
    pipeline: Answers,
    mode: str | None = None,
    k: int | None = None,
    *,
    read_line: ReadLine | None = None,
    out: TextIO | None = None,
) -> None:
    """The interactive loop, until /quit or end of input (Ctrl-D). `read_line` defaults to a prompt_toolkit prompt
    (needs a terminal) whose up-arrow history is kept in `<data_dir>/chat_history`; `out` to standard output."""
    read_line = read_line or terminal_prompt(pipeline.settings)
    session = ChatSession(pipeline, mode or pipeline.settings.answer.mode, k, out=out or sys.stdout)
    session.say("Sovereign RAG chat: ask about the indexed documents. /help for commands, Ctrl-D to leave.")
    while True:
        try:
            line = read_line("> ")
        except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line, like a shell
            continue
        except EOFError:
            break
        if not session.handle(line):
            break


def terminal_prompt(settings: Settings) -> ReadLine:
    """A prompt_toolkit prompt with line editing and the history of earlier questions (the owner's only)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    history = touch_private(settings.data_dir / "chat_history")
    return PromptSession(history=FileHistory(str(history))).prompt
