"""The prompt: a constant prefix (instructions and worked examples), then numbered passages and the question.

The passages are shown whole, or as the excerpts that rag/focus.py chose (lean prompts, the default).

The prefix never changes between questions, so llama.cpp keeps its KV cache and evaluates only the passages and the
question (see docs/benchmarks.md, "Answering"). The default model is a 270M *base* model: it follows the worked
examples far more than the instructions, so the examples show the exact output format (`sentence [n].`), in three
languages, and a GBNF grammar (`citation_grammar`) holds the output to that format.
"""

from __future__ import annotations

from collections.abc import Sequence

from .generate import Prompt
from .retrieve import Hit
from .store import ChunkRecord

INSTRUCTIONS = (
    "Answer the question using only the numbered passages. End every sentence with the numbers of the passages "
    "that support it, like [1] or [1][2]. Write the answer in the language of the question. Keep it short."
)

# (passages, question, answer): one per main language of the corpus, in the format the grammar enforces.
EXAMPLES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        (
            "Travel policy > Meals\nMeal expenses are reimbursed up to 25 euros per day on presentation of a receipt.",
            "Travel policy > Trains\nEmployees travel by train for trips under 500 km.",
        ),
        "How much is reimbursed for meals?",
        "Meals are reimbursed up to 25 euros per day with a receipt [1].",
    ),
    (
        (
            "Rapport annuel 2023 > Personnel\nLa société comptait 245 salariés fin 2023, contre 230 en 2022.",
            "Rapport annuel 2023 > Sites\nUn second bureau a ouvert à Esch-sur-Alzette en mars 2023.",
        ),
        "Où se trouve le second bureau ?",
        "Le second bureau se trouve à Esch-sur-Alzette [2]. Il a ouvert en mars 2023 [2].",
    ),
    (
        (
            "Hausordnung > Ruhezeiten\nDie Nachtruhe gilt von 22 Uhr bis 6 Uhr.",
            "Hausordnung > Müll\nDer Restmüll wird jeden Dienstag abgeholt.",
        ),
        "Wann wird der Restmüll abgeholt?",
        "Der Restmüll wird jeden Dienstag abgeholt [2].",
    ),
)

CHAT_INSTRUCTIONS = INSTRUCTIONS + " If the passages do not contain the answer, say so."


def passage_label(chunk: ChunkRecord) -> str:
    """Title, heading path and page: what a reader needs to find the passage in the original."""
    parts = [chunk.title, *chunk.heading_path]
    label = " > ".join(dict.fromkeys(p for p in parts if p))  # a title repeated as first heading is said once
    return f"{label} (p. {chunk.page})" if chunk.page else label


def format_passages(passages: Sequence[tuple[str, str]]) -> str:
    """`[n] label` then the passage text on one line; whitespace is collapsed to save prompt tokens."""
    return "\n".join(f"[{n}] {label}\n{' '.join(text.split())}" for n, (label, text) in enumerate(passages, 1))


def _block(passages: Sequence[tuple[str, str]], question: str) -> str:
    """The part after the prefix: the numbered (label, text) passages, the question and the `Answer:` cue."""
    return f"Passages:\n{format_passages(passages)}\n\nQuestion: {question}\nAnswer:"


def _example_block(passages: tuple[str, ...], question: str, answer: str) -> str:
    """A worked example: passages written `label\ntext`, the question and the answer the model should give."""
    pairs = [(label, text) for label, _, text in (p.partition("\n") for p in passages)]
    return f"{_block(pairs, question)} {answer}"


PREFIX = INSTRUCTIONS + "\n\n" + "\n\n".join(_example_block(*example) for example in EXAMPLES) + "\n\n"


def build_prompt(
    question: str, hits: Sequence[Hit], prompt_format: str = "completion", excerpts: Sequence[str] | None = None
) -> Prompt:
    """The full prompt for the model; in chat mode one user message rendered by the model's own template.

    `prompt_format` is "completion" (the prefix with worked examples, then the passages: a string) or "chat" (one
    user message with the instructions, no examples: a list of messages). `excerpts` replace the passages' texts
    (lean prompts, rag/focus.py), one per hit; the labels stay those of the passages. Raises ValueError when
    `excerpts` and `hits` differ in length."""
    texts = excerpts if excerpts is not None else [h.chunk.text for h in hits]
    passages = [(passage_label(h.chunk), text) for h, text in zip(hits, texts, strict=True)]
    if prompt_format == "chat":
        return [{"role": "user", "content": f"{CHAT_INSTRUCTIONS}\n\n{_block(passages, question)}"}]
    return PREFIX + _block(passages, question)


def citation_grammar(n_passages: int, max_sentences: int = 4) -> str:
    """GBNF: one to `max_sentences` sentences, each closed by citations of existing passages, then the end.

    GBNF is llama.cpp's grammar format (llama.cpp `grammars/README.md`); sampling is constrained to it.

    A sentence body cannot contain brackets, `<` (special tokens) or a full stop other than a decimal point, so every
    sentence carries its own one to three citations, numbers can only name passages that exist, and the model cannot
    ramble past the last sentence.
    """
    numbers = " | ".join(f'"{n}"' for n in range(1, max(n_passages, 1) + 1))
    more = f' (" " sentence){{0,{max_sentences - 1}}}' if max_sentences > 1 else ""
    return "\n".join(
        (
            f"root ::= sentence{more}",
            'sentence ::= body cite cite? cite? "."',
            r"body ::= [^\[\]\n.<]+",
            'cite ::= "[" num "]"',
            f"num ::= {numbers}",
        )
    )
