"""Grounded answers: retrieve, then generate (or quote), verify every sentence, or abstain.

`Answerer.stream` yields `Token`s while the model writes and ends with one `Answer`. The final `Answer` is
authoritative: verification runs after generation, so a sentence already streamed may be removed from it (it is then
listed in `Answer.removed`), and an answer whose sentences are all removed becomes an abstention.

Whether to answer is decided once, before any generation and in both modes, by a calibrated probability that the
passages answer the question (rag/confidence.py: a logistic model over retrieval features and the verification of the
passages' best sentences for the question, fitted on labelled questions): below `answer.min_confidence` the answer
abstains. It also abstains when no passage is found, when the best passage holds too small a share of the question's
content words (`answer.min_retrieval_score`), and when nothing survives verification. An abstention says so in the
question's language and lists the closest passages as its sources.

Sentences of the passages that instruct the model (rag/untrusted.py) are cut out before anything else: the model
never sees them, they are neither quoted nor support, and the answer lists them, with their passage and the reason,
under `set_aside`; the rest of their passage still answers. When no generated sentence
survives verification, the answer falls back to quoting the passages (`quote`): the quoted sentences in the
question's language that pass the same verification; it abstains when none does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .cite import (
    Citation,
    Sentence,
    asks_for_number,
    parse_sentences,
    passage_text,
    states_number,
    unmatched_words,
    verify,
)
from .confidence import ConfidenceModel, features, rounded, shipped_model
from .errors import InputError
from .focus import coverage, focus, rank_sentences, relevant
from .generate import LLM, Prompt
from .language import UNDETERMINED, detect_language
from .prompt import build_prompt, citation_grammar
from .retrieve import Hit
from .settings import Settings
from .store import ChunkRecord, SearchFilter
from .untrusted import SetAside, screen

NO_ANSWER = {
    "en": "The documents do not contain the answer to this question.",
    "fr": "Les documents ne contiennent pas la réponse à cette question.",
    "de": "Die Dokumente enthalten keine Antwort auf diese Frage.",
    "lb": "D'Dokumenter enthalen keng Äntwert op dës Fro.",
    "nl": "De documenten bevatten geen antwoord op deze vraag.",
    "it": "I documenti non contengono la risposta a questa domanda.",
    "es": "Los documentos no contienen la respuesta a esta pregunta.",
    "pt": "Os documentos não contêm a resposta a esta pergunta.",
}

# Said before an answer whose cited passages do not speak of some of the question's words ({words}).
NOT_MENTIONED = {
    "en": "The documents do not mention {words}.",
    "fr": "Les documents ne mentionnent pas {words}.",
    "de": "Die Dokumente erwähnen {words} nicht.",
    "lb": "D'Dokumenter ernimmen {words} net.",
}

Search = Callable[..., list[Hit]]  # Pipeline.search(query, k=..., search_filter=...)


@dataclass(frozen=True)
class Token:
    """A piece of generated text, streamed before verification."""

    text: str


@dataclass
class Timings:
    """Where the time of one answer went: durations in milliseconds, lengths in the model's tokens, speed in tokens
    per second; None where the backend cannot tell (an HTTP server does not count prompt tokens)."""

    retrieval_ms: float = 0.0
    prompt_tokens: int | None = None  # None when the backend cannot count them (HTTP servers)
    ttft_ms: float | None = None  # from the start of the request to the first generated piece
    generated_tokens: int = 0
    tokens_per_s: float | None = None  # after the first token, i.e. decoding speed without prompt evaluation
    verify_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True)
class Source:
    """A passage shown to the model (or, on abstention, one of the closest); `n` is its `[n]` marker."""

    n: int
    hit: Hit
    cited: bool

    @property
    def chunk(self) -> ChunkRecord:
        """The passage's chunk record (`hit.chunk`)."""
        return self.hit.chunk

    def to_dict(self) -> dict:
        """JSON form: `n` (the `[n]` marker), `cited` (some kept sentence cites it) and the hit's own fields."""
        return {"n": self.n, "cited": self.cited, **self.hit.to_dict()}


@dataclass
class Answer:
    """One answer as every front door reports it: the text (kept sentences, or the abstention message), the
    sentences verification kept and `removed`, the passages shown (`sources`), the passages whose instructions to
    the model were `set_aside` (rag/untrusted.py), `timings`, and `confidence`, a probability in [0, 1] computed
    from `features` (rag/confidence.py)."""

    question: str
    text: str
    lang: str
    mode: str  # generate | quote
    abstained: bool
    evidence: float = 0.0  # best passage's share of the question's content words (see `evidence`)
    sentences: list[Sentence] = field(default_factory=list)
    removed: list[Sentence] = field(default_factory=list)  # failed verification, dropped from `text`
    sources: list[Source] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    model: str | None = None
    raw: str = ""  # the model's output before parsing and verification
    set_aside: list[SetAside] = field(default_factory=list)  # passages with text instructing the model, cut out
    unmatched: list[str] = field(default_factory=list)  # question words no cited passage speaks of (see `_finish`)
    confidence: float = 0.0  # probability that the passages answer the question (rag/confidence.py)
    features: dict[str, float | None] = field(default_factory=dict)  # the confidence model's inputs (None: missing)

    def to_dict(self) -> dict:
        """JSON form of the answer; scores (evidence, confidence, features) rounded to 4 decimals, timings in ms."""
        return {
            "question": self.question,
            "answer": self.text,
            "lang": self.lang,
            "mode": self.mode,
            "abstained": self.abstained,
            "evidence": round(self.evidence, 4),
            "sentences": [s.to_dict() for s in self.sentences],
            "removed": [s.to_dict() for s in self.removed],
            "sources": [s.to_dict() for s in self.sources],
            "timings": asdict(self.timings),
            "model": self.model,
            "raw": self.raw,
            "set_aside": [h.to_dict() for h in self.set_aside],
            "unmatched": self.unmatched,
            "confidence": round(self.confidence, 4),
            "features": {k: rounded(v) for k, v in self.features.items()},
        }


Event = Token | Answer


class Answerer:
    """Turns a question into an `Answer`; the language model is asked for only when a generation needs it."""

    def __init__(
        self,
        search: Search,
        llm: Callable[[], LLM],
        encode: Callable,
        settings: Settings,
        *,
        confidence: ConfidenceModel | None = None,
    ):
        self.search = search
        self.llm = llm
        self.encode = encode  # the embedder's encode(texts) -> unit vectors, for quote mode
        self.settings = settings
        self.confidence = confidence or shipped_model()

    def ask(self, question: str, **options: Any) -> Answer:
        """The final `Answer` of `stream(question, **options)`, the tokens dropped; raises what `stream` raises."""
        *_, answer = self.stream(question, **options)
        assert isinstance(answer, Answer)  # stream() always ends with the Answer
        return answer

    def stream(
        self,
        question: str,
        k: int | None = None,
        mode: str | None = None,
        search_filter: SearchFilter | None = None,
        history: Sequence[str] = (),
    ) -> Iterator[Event]:
        """`Token`s as the model writes them (generate mode), then one `Answer`.

        `k`: passages to retrieve (None: the settings'); `mode`: generate | quote (None: answer.mode); `search_filter`:
        the languages, documents and labels the caller may see; `history`: the chat's earlier questions, added to the
        retrieval query. Raises InputError (an empty question, one over answer.max_question_chars, an unknown mode);
        the language model's errors pass through."""
        started = time.perf_counter()
        mode = mode or self.settings.answer.mode
        question = self._checked(question, mode)
        query = retrieval_query(question, history)
        found = self.search(query, k=k, search_filter=search_filter)
        hits, set_aside = screen(found)
        timings = Timings(retrieval_ms=_ms(started))
        base = Answer(
            question,
            "",
            question_language(question, hits or found),
            mode,
            False,
            evidence(query, hits),
            timings=timings,
            set_aside=set_aside,
        )
        quotes, scores = self._quotes(question, base.lang, hits)
        base.features = features(question, hits, quotes, scores, lang=base.lang)
        base.confidence = self.confidence.probability(base.features)
        answer = self.settings.answer
        if not hits or base.evidence < answer.min_retrieval_score or base.confidence < answer.min_confidence:
            yield self._abstain(base, hits, started)
        elif mode == "quote":
            kept = [q for q in quotes if q.supported][: answer.quote_sentences]
            yield self._finish(base, hits, kept, [], started) if kept else self._abstain(base, hits, started)
        else:
            yield from self._generate(base, hits, quotes, started)

    def _quotes(self, question: str, lang: str, hits: list[Hit]) -> tuple[list[Sentence], list[float]]:
        """The passages' best sentences for the question (twice `answer.quote_sentences`, so that enough survive;
        only those bearing on it, `rag.focus.relevant`, and in the language of the best passage: retrieval ranks
        passages more surely than a cosine ranks single sentences, and a quote does not mix a German table row with
        unrelated French and English sentences), verified with the question's rules, and their ranking scores."""
        best_lang = hits[0].chunk.lang if hits else lang
        ranked = relevant(rank_sentences(question, hits, self.encode, lang=lang))
        ranked = [s for s in ranked if hits[s.passage].in_language(best_lang)][
            : 2 * self.settings.answer.quote_sentences
        ]
        quoted = [Sentence(s.text, [Citation.of(s.passage + 1, hits[s.passage])]) for s in ranked]
        verify(quoted, hits, self.settings.answer.min_support, question=question, question_lang=lang)
        return quoted, [s.score for s in ranked]

    def _checked(self, question: str, mode: str) -> str:
        question = question.strip()
        limit = self.settings.answer.max_question_chars
        if not question:
            raise InputError("the question is empty; ask something about the indexed documents")
        if len(question) > limit:
            raise InputError(
                f"the question has {len(question)} characters, more than answer.max_question_chars "
                f"({limit}); shorten it or raise the limit"
            )
        if mode not in ("generate", "quote"):
            raise InputError(f"the answer mode must be generate or quote, not {mode!r}")
        return question

    def _generate(self, base: Answer, hits: list[Hit], quotes: list[Sentence], started: float) -> Iterator[Event]:
        llm = self.llm()
        shown, prompt, base.timings.prompt_tokens = self.prompt_for(base.question, hits, lang=base.lang)
        base.model = llm.info.model
        grammar = citation_grammar(len(hits)) if self._use_grammar() else None
        pieces: list[str] = []
        decode_started = None
        tokens = llm.stream_tokens(prompt, grammar=grammar)
        try:
            for piece in tokens:
                if decode_started is None:
                    decode_started = time.perf_counter()
                    base.timings.ttft_ms = _ms(started)
                pieces.append(piece)
                yield Token(piece)
        finally:
            tokens.close()  # a consumer that stops early (Ctrl-C, disconnect) stops the model too
        base.timings.generated_tokens = len(pieces)
        if decode_started is not None and len(pieces) > 1:
            base.timings.tokens_per_s = (len(pieces) - 1) / max(time.perf_counter() - decode_started, 1e-9)
        yield self._verified(base, shown, "".join(pieces), started, quotes, hits)

    def _use_grammar(self) -> bool:
        return self.settings.llm.grammar and self.settings.llm.prompt_format == "completion"

    def prompt_for(
        self, question: str, hits: list[Hit], *, lang: str | None = None
    ) -> tuple[list[Hit], Prompt, int | None]:
        """The prompt with as many of the best passages as fit in the context beside the answer's token budget; with
        `answer.passage_tokens`, each passage is cut down to its sentences that bear on the question (rag/focus.py;
        `lang`: the question's language, None when unknown)."""
        s, llm = self.settings.llm, self.llm()
        excerpts = None
        if self.settings.answer.passage_tokens:
            hits, excerpts = focus(
                question,
                hits,
                self.encode,
                self.settings.answer.passage_tokens,
                lambda text: text_tokens(llm, text),
                lang=lang,
            )
        while True:
            prompt = build_prompt(question, hits, s.prompt_format, excerpts)
            tokens = llm.count_tokens(prompt)
            if tokens is None or tokens + s.max_tokens <= s.n_ctx:
                return hits, prompt, tokens
            if len(hits) == 1:
                raise InputError(
                    f"the prompt has {tokens} tokens with a single passage and the answer may take {s.max_tokens}, "
                    f"more than llm.n_ctx ({s.n_ctx}); shorten the question or raise llm.n_ctx"
                )
            hits, excerpts = hits[:-1], excerpts[:-1] if excerpts else None

    def _verified(
        self, base: Answer, shown: list[Hit], raw: str, started: float, quotes: list[Sentence], hits: list[Hit]
    ) -> Answer:
        """The generated text verified against the passages the prompt `shown`; when no sentence survives, or none
        gives what the question asks for (`answers_kind`: a number for "how many"), the `quotes` of those passages
        instead, as quote mode gives them (a passage in another language is quoted in its own words: a generated
        sentence in the question's language cannot be checked against it word for word), or an abstention."""
        checked = time.perf_counter()
        sentences = parse_sentences(raw, shown)
        verify(sentences, shown, self.settings.answer.min_support, question=base.question, question_lang=base.lang)
        base.raw = raw
        base.timings.verify_ms = _ms(checked)
        if self.settings.answer.remove_unsupported:
            kept, removed = [s for s in sentences if s.supported], [s for s in sentences if not s.supported]
        else:
            kept, removed = sentences, []
        if any(s.supported for s in kept) and answers_kind(base.question, kept):
            return self._finish(base, shown, kept, removed, started)
        marker = {hit.chunk.id: n for n, hit in enumerate(shown, 1)}
        quoted = [
            Sentence(q.text, [Citation.of(marker[c.chunk_id], shown[marker[c.chunk_id] - 1])], q.support, True)
            for q in quotes
            for c in q.citations[:1]
            if q.supported and c.chunk_id in marker
        ]
        if not quoted:
            base.removed = sentences
            return self._abstain(base, hits, started)
        base.mode = "quote"
        return self._finish(base, shown, quoted[: self.settings.answer.quote_sentences], sentences, started)

    def _finish(
        self, base: Answer, hits: list[Hit], sentences: list[Sentence], removed: list[Sentence], started: float
    ) -> Answer:
        """The answer from its verified sentences; when the passages they cite, all in the question's language, do
        not speak of some of the question's words, the answer says so first (`NOT_MENTIONED`). A passage cited in
        another language may say what those words name in its own, so no word is reported then."""
        base.sentences, base.removed = sentences, removed
        base.sources = sources(hits, {c.marker for s in sentences for c in s.citations})
        cited = [s.hit for s in base.sources if s.cited]
        comparable = base.lang in NOT_MENTIONED and all(h.in_language(base.lang) for h in cited)
        base.unmatched = unmatched_words(base.question, cited) if comparable else []
        note = [NOT_MENTIONED[base.lang].format(words=", ".join(base.unmatched))] if base.unmatched else []
        base.text = " ".join([*note, *(s.render() for s in sentences)])
        base.timings.total_ms = _ms(started)
        return base

    def _abstain(self, base: Answer, hits: list[Hit], started: float) -> Answer:
        base.abstained = True
        base.text = NO_ANSWER.get(base.lang, NO_ANSWER["en"])
        base.sources = sources(hits[: self.settings.answer.abstain_sources], set())
        base.timings.total_ms = _ms(started)
        return base


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def text_tokens(llm: LLM, text: str) -> int:
    """Length of a piece of prompt text in the model's tokens; about four characters a token when the backend cannot
    count (HTTP servers)."""
    counted = llm.count_tokens(text)
    return counted - 1 if counted is not None else len(text) // 4 + 1  # llama.cpp's count includes the BOS token


def retrieval_query(question: str, history: Sequence[str]) -> str:
    """A follow-up ("and for students?") is retrieved together with the previous question, which names the topic.

    Only the last previous question is added: older turns drift off topic and would outweigh the new question.
    """
    return f"{history[-1]} {question}" if history else question


def question_language(question: str, hits: Sequence[Hit]) -> str:
    """The question's language; a question too short to tell is taken to be in the best passage's language."""
    lang = detect_language(question)
    if lang != UNDETERMINED:
        return lang
    return hits[0].chunk.lang if hits and hits[0].chunk.lang != UNDETERMINED else "en"


def evidence(query: str, hits: Sequence[Hit]) -> float:
    """Largest share of the query's content words that one passage contains (stemmed in the passage's language)."""
    return max((coverage(query, passage_text(h), h.chunk.lang) for h in hits), default=0.0)


def sources(hits: Sequence[Hit], cited: set[int]) -> list[Source]:
    """The passages shown, numbered from 1 as their `[n]` markers; `cited`: the numbers some kept sentence cites."""
    return [Source(n, hit, n in cited) for n, hit in enumerate(hits, 1)]


def answers_kind(question: str, sentences: Sequence[Sentence]) -> bool:
    """Whether the supported `sentences` give the kind of thing the question asks for: a question asking for a
    number, a date, a duration or an amount ("how many", "wie lange", "combien") needs one stated (digits or
    words); "Die Daten werden in einem sicheren Lagerraum aufbewahrt" does not answer "Wie lange werden Daten
    aufbewahrt?". Other questions: True."""
    return not asks_for_number(question) or any(s.supported and states_number(s.text) for s in sentences)
