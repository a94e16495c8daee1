"""Citations and verification: map `[n]` markers to passages, then check every sentence against what it cites.

The check is lexical and deliberately strict about facts (docs/verification.md explains it and its thresholds):

- support = weighted share of the sentence's content words (stemmed, stop words removed) found in the passage, where
  a capitalised name weighs `NAME_WEIGHT` words, so a missing name costs much more than a missing common word;
- any number of the sentence (every digit group, so dates and amounts too) absent from the passage makes the support 0;
- a term of the question (`question_terms`: a content word, not a stop word or a generic question word in any
  served language) that the sentence states but the passage and its headings lack makes the support 0: the sentence
  carries the question's subject onto a passage about something else ("Interns receive 28 days" from a policy for
  full-time employees). Terms the sentence does not state either are reported by `unmatched_words`;
- a sentence that adds nothing to the question (`restates`: every content word and number already in it) has
  support 0: "Remote days per week: [1]" is not an answer.

A sentence with citations is checked against the union of the passages it cites. One without citations is checked
against each retrieved passage and, when one supports it, cites the best: a small base model rarely cites by itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from .chunk import sentence_spans
from .lexical import any_stopwords, tokenize
from .retrieve import Hit
from .untrusted import fold

NAME_WEIGHT = 3.0  # a capitalised name or term counts as this many ordinary words
_MARKERS = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_LEADING_MARKERS = re.compile(rf"(?:{_MARKERS.pattern})+")
_NUMBER = re.compile(r"\d+")
_WORD = re.compile(r"[^\W\d_]+")
_HYPHENATED_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")  # "part-time" is one word to report

# Words a question uses to ask rather than to name what it is about, in the served languages (fr, de, en, lb),
# lower case without accents; with every stop word list they are left out of `question_terms`.
_QUESTION_WORDS = (
    # en
    "what which who whom whose when where why how many much long often does did do is are was were be been get gets "
    "got receive receives received have has had can could may might must shall should will would there any give "
    "gives given need needs allowed entitled tell please kind type number amount there",
    # fr
    "quel quelle quels quelles qui que quoi quand où comment combien pourquoi est sont peut peuvent doit doivent faut "
    "ai as avons avez ont avoir obtenir obtient obtiennent recevoir reçoit reçoivent donne donné droit il elle ils "
    "elles on nombre type y-a-t-il",
    # de
    "was wer wen wem wessen wann wo wie warum wieviel wieviele viel viele lange oft gibt es ist sind kann können darf "
    "dürfen muss müssen bekommen bekommt erhalten erhält hat haben welche welcher welches welchen anzahl man",
    # lb
    "wat wien wiem wéini wou wéi firwat vill wéivill laang dacks gëtt ginn ass sinn kann kënnen dierf däerf muss "
    "mussen kréien kritt kréie huet hunn wéieng wéien zuel een et",
)
GENERIC_QUESTION_WORDS = frozenset(fold(" ".join(_QUESTION_WORDS)).split())

# Question words that ask for a number, a date or an amount (folded, in the served languages).
_ASKS_NUMBER = re.compile(
    r"\b(?:how (?:many|much|long|old|often|far|big|tall|high)|what year|which year|when|combien|quand|"
    r"en quelle annee|quelle annee|wie (?:viele?|lange|alt|oft|hoch)|wann|in welchem jahr|weivill|weini)\b"
)
# A number in digits or in words (folded; not "one"'s article forms un/une/ein/een, which would match nearly every
# sentence): "trois jours par semaine" answers "combien de jours".
_STATED_NUMBER = re.compile(
    r"\d|\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
    r"thousand|million|billion|half|dozen|deux|trois|quatre|cinq|sept|huit|neuf|dix|onze|douze|quinze|vingt|trente|"
    r"quarante|cinquante|soixante|cent|mille|milliard|moitie|demi|zwei|drei|vier|funf|sechs|sieben|acht|neun|zehn|"
    r"elf|zwolf|zwanzig|dreissig|hundert|tausend|millionen?|milliarden?|halb|halfte|zwee|drai|veier|fennef|siwen|"
    r"aacht|neng|zeng)\b"
)


@dataclass(frozen=True)
class Citation:
    """Where a `[n]` marker points: the passage's chunk and document, its title and page, and its character span
    [start, end) in the document's extracted text."""

    marker: int  # n of the `[n]` marker: 1-based position of the passage in the prompt and in the sources
    chunk_id: int
    doc_id: str
    title: str
    page: int | None
    start: int  # character span of the passage in the document's extracted text
    end: int
    content_hash: str

    @classmethod
    def of(cls, marker: int, hit: Hit) -> Citation:
        """The citation of `hit`, shown to the model as passage `marker` (1-based)."""
        c = hit.chunk
        return cls(marker, c.id, c.doc_id, c.title, c.page, c.start, c.end, c.content_hash)


@dataclass
class Sentence:
    """One sentence of an answer with the passages it cites and the verdict of `verify`: `support` in [0, 1] (see
    the module docstring), `supported` when it reaches the threshold, `missing` the facts the passages lack."""

    text: str  # without citation markers
    citations: list[Citation] = field(default_factory=list)
    support: float = 0.0  # 0..1, see the module docstring
    supported: bool = False
    missing: list[str] = field(default_factory=list)  # numbers and names the cited passages do not contain

    @property
    def markers(self) -> str:
        """The citation markers as written after the sentence, e.g. "[1][3]"; "" without citations."""
        return "".join(f"[{c.marker}]" for c in self.citations)

    def render(self) -> str:
        """The sentence as shown to the user: its text, then its citations before the closing punctuation."""
        if not self.citations:
            return self.text
        body, end = (self.text[:-1], self.text[-1]) if self.text[-1:] in ".!?" else (self.text, "")
        return f"{body} {self.markers}{end}"

    def to_dict(self) -> dict:
        """JSON form: the text, the cited marker numbers, support rounded to 4 decimals, supported, missing."""
        return {
            "text": self.text,
            "citations": [c.marker for c in self.citations],
            "support": round(self.support, 4),
            "supported": self.supported,
            "missing": self.missing,
        }


@dataclass(frozen=True)
class Support:
    """What `support` found: `score` in [0, 1] (the weighted share of the sentence's content words the passage holds;
    0 when a number or a question term is missing) and the numbers and terms the passage lacks (`missing`)."""

    score: float
    missing: tuple[str, ...]


# ---------------------------------------------------------------------------------------------- parsing
def parse_sentences(answer: str, hits: Sequence[Hit]) -> list[Sentence]:
    """Split generated text into sentences with their citations; markers naming no passage are dropped.

    A sentence the model already wrote is dropped too (small models loop), its citations joining the first copy.
    """
    sentences: dict[str, Sentence] = {}
    last = None
    for text, numbers in _split_marked(answer):
        citations = [Citation.of(n, hits[n - 1]) for n in dict.fromkeys(numbers) if 1 <= n <= len(hits)]
        if text:  # markers alone after a sentence's full stop belong to that sentence
            last = sentences.setdefault(text, Sentence(text))
        if last is not None:
            last.citations.extend(c for c in citations if c not in last.citations)
    return list(sentences.values())


def _split_marked(answer: str) -> list[tuple[str, list[int]]]:
    """(text without markers, marker numbers) per sentence; leading markers are split off as their own item."""
    text = " ".join(answer.split())
    items = []
    for start, end in sentence_spans(text, 0, len(text)):
        piece = text[start:end]
        lead = _LEADING_MARKERS.match(piece)
        if lead:
            items.append(("", marker_numbers(lead.group())))
            piece = piece[lead.end() :]
        items.append((_tidy(_MARKERS.sub("", piece)), marker_numbers(piece)))
    return items


def marker_numbers(text: str) -> list[int]:
    """Passage numbers of every `[n]`, `[n, m]` and `[n][m]` marker, in order."""
    return [int(n) for group in _MARKERS.findall(text) for n in re.split(r"\s*[,;]\s*", group)]


def _tidy(text: str) -> str:
    """Remove the space a dropped marker leaves before punctuation ("euros [2]." becomes "euros.")."""
    return re.sub(r"\s+([.,;:!?])", r"\1", text).strip()


# ---------------------------------------------------------------------------------------------- verification
def verify(
    sentences: list[Sentence],
    hits: Sequence[Hit],
    min_support: float,
    *,
    question: str = "",
    question_lang: str | None = None,
) -> None:
    """Score every sentence in place; uncited sentences get the citation of the passage that supports them best.

    Words are stemmed in the passage's language: an answer usually repeats its passage's wording, whatever the
    language of the question. With `question_lang`, the question's terms are checked only against passages in that
    language (a lexical check cannot tell whether "interns" is missing from a German passage); None checks them
    against every passage, so a question in another language fails. The restatement check always applies.
    """
    for sentence in sentences:
        if sentence.citations:
            cited = [hits[c.marker - 1] for c in sentence.citations]
            result = support(
                sentence.text,
                " ".join(passage_text(h) for h in cited),
                cited[0].chunk.lang,
                question=question,
                check_terms=question_lang in (None, cited[0].chunk.lang),
            )
        else:
            result, best = _best_passage(sentence.text, hits, question, question_lang)
            if best is not None and result.score >= min_support:
                sentence.citations = [Citation.of(best + 1, hits[best])]
        sentence.support, sentence.missing = result.score, list(result.missing)
        sentence.supported = result.score >= min_support


def passage_text(hit: Hit) -> str:
    """What a passage states: its headings and its text ("Annual leave" may be said only by the heading)."""
    return " ".join((*hit.chunk.heading_path, hit.chunk.text))


def _best_passage(
    text: str, hits: Sequence[Hit], question: str, question_lang: str | None
) -> tuple[Support, int | None]:
    scored = [
        (
            support(
                text,
                passage_text(h),
                h.chunk.lang,
                question=question,
                check_terms=question_lang in (None, h.chunk.lang),
            ),
            i,
        )
        for i, h in enumerate(hits)
    ]
    if not scored:
        return Support(0.0, ()), None
    best, index = max(scored, key=lambda item: (item[0].score, -item[1]))
    return best, index


def support(sentence: str, passage: str, lang: str, *, question: str = "", check_terms: bool = True) -> Support:
    """How much of `sentence` the passage states; see the module docstring for the weights and the rules that make
    it 0. `question` empty skips the question rules; `check_terms` False skips only the question-term rule."""
    passage_words = set(tokenize(passage, lang))
    passage_numbers = set(_NUMBER.findall(passage))
    numbers = list(dict.fromkeys(_NUMBER.findall(sentence)))
    words = tokenize(sentence, lang)
    missing_numbers = [n for n in numbers if n not in passage_numbers]
    missing_numbers += misplaced_numbers([n for n in numbers if n in passage_numbers], set(words), passage, lang)
    names = set(tokenize(" ".join(capitalised_words(sentence)), lang))
    terms = question_terms(question, lang) if question and check_terms else []
    missing_terms = [t for t in terms if t in words and t not in passage_words]
    if not words or (question and restates(sentence, question, lang)):  # nothing checkable, or nothing new
        return Support(0.0, tuple(missing_numbers + missing_terms))
    weights = [NAME_WEIGHT if w in names else 1.0 for w in words]
    found = sum(weight for w, weight in zip(words, weights, strict=True) if w in passage_words)
    missing_names = [w for w in dict.fromkeys(words) if w in names and w not in passage_words]
    score = 0.0 if missing_numbers or missing_terms else found / sum(weights)
    return Support(score, tuple(dict.fromkeys(missing_numbers + missing_names + missing_terms)))


def misplaced_numbers(numbers: Sequence[str], words: set[str], passage: str, lang: str) -> list[str]:
    """The `numbers` (digit groups of a sentence, each present in `passage`) that the passage holds only in table
    cells of another row or column than the ones the sentence names: "The hotel ceiling in Brussels is 60 euros"
    from a row "Brussels | 60 euros | 170 euros" under "Destination | Daily allowance | Hotel ceiling per night".

    A table is a run of lines with the same number (two or more) of " | "-separated cells, its first line the
    header (how the loaders write DOCX, HTML, ODF and spreadsheet tables). `words` are the sentence's terms as
    `tokenize(sentence, lang)` gives them. A number also written outside a table, or in a cell whose column header
    and row label the sentence names at least as much as any other column's and row's, is in place."""
    if not numbers or " | " not in passage:
        return []
    tables = _tables(passage)
    prose = _NUMBER.findall(_TABLE_LINE.sub(" ", passage))
    misplaced = []
    for number in numbers:
        if number in prose:
            continue
        cells = [
            (table, r, c)
            for table in tables
            for r, row in enumerate(table)
            for c, cell in enumerate(row)
            if number in _NUMBER.findall(cell)
        ]
        if cells and not any(_names_cell(table, r, c, words, lang) for table, r, c in cells):
            misplaced.append(number)
    return misplaced


_TABLE_LINE = re.compile(r"^.* \| .*$", re.MULTILINE)


def _tables(passage: str) -> list[list[list[str]]]:
    """Each table of the passage (a run of lines with the same number of " | " cells) as rows of cell texts."""
    tables: list[list[list[str]]] = []
    previous = 0
    for line in (line.strip() for line in passage.splitlines() if line.strip()):
        cells = [cell.strip() for cell in line.split(" | ")] if " | " in line else []
        if cells and len(cells) == previous:
            tables[-1].append(cells)
        elif cells:
            tables.append([cells])
        previous = len(cells)
    return tables


def _names_cell(table: list[list[str]], row: int, column: int, words: set[str], lang: str) -> bool:
    """Whether the sentence's `words` name the cell's column header and row label at least as much as any other
    column's header and row's label (row 0 is the header)."""

    def named(text: str) -> int:
        return len(set(tokenize(text, lang)) & words)

    headers = [named(cell) for cell in table[0]]
    labels = [named(r[0]) for r in table[1:]]
    column_ok = headers[column] >= max(headers)
    row_ok = row == 0 or labels[row - 1] >= max(labels)
    return column_ok and row_ok


def question_terms(question: str, lang: str) -> list[str]:
    """What the question is about: its words that are neither a stop word nor a generic question word
    (`GENERIC_QUESTION_WORDS`) in any served language, tokenised as `lang` tokenises (distinct, in order).

    "How many days of annual leave do interns get?" -> ["day", "annual", "leav", "intern"]."""
    words = [
        w
        for w in _WORD.findall(question)
        if len(w) > 1 and w.lower() not in any_stopwords() and fold(w) not in GENERIC_QUESTION_WORDS
    ]
    return list(dict.fromkeys(tokenize(" ".join(words), lang)))


def unmatched_words(question: str, passages: Sequence[Hit]) -> list[str]:
    """The question's words (as written, a hyphenated word whole) whose terms no passage in `passages` all contains,
    each passage tokenising in its own language: what the question asks about that the cited passages do not speak
    of ("interns", "part-time")."""
    if not passages:
        return []
    words = [w for w in _HYPHENATED_WORD.findall(question) if question_terms(w, passages[0].chunk.lang)]
    held = [set(tokenize(passage_text(h), h.chunk.lang)) for h in passages]
    return [
        w
        for w in dict.fromkeys(words)
        if not any(set(tokenize(w, h.chunk.lang)) <= tokens for h, tokens in zip(passages, held, strict=True))
    ]


def restates(sentence: str, question: str, lang: str) -> bool:
    """Whether the sentence says nothing the question does not: all its content words (stemmed in `lang`) and
    numbers are the question's own. "Remote days per week: [1]" restates "Remote days per week: how many?"."""
    new_words = set(tokenize(sentence, lang)) - set(tokenize(question, lang))
    new_numbers = set(_NUMBER.findall(sentence)) - set(_NUMBER.findall(question))
    return not new_words and not new_numbers


def capitalised_words(sentence: str) -> list[str]:
    """Words written with a capital anywhere but at the start of the sentence: names, acronyms, (German) nouns."""
    words = _WORD.findall(sentence)
    return [w for w in words[1:] if w[0].isupper()]


def asks_for_number(question: str) -> bool:
    """Whether the question asks for a number, a date, a duration or an amount ("how many", "wie lange", "combien",
    "wéivill"), in the served languages."""
    return bool(_ASKS_NUMBER.search(fold(question)))


def states_number(text: str) -> bool:
    """Whether `text` states a number, in digits or in words ("trois jours", "zwei Wochen")."""
    return bool(_STATED_NUMBER.search(fold(text)))
