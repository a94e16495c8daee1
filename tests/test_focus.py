"""Lean prompts: which sentences of the passages reach the model, and that citations still name the right passage."""

from __future__ import annotations

import numpy as np

from rag.focus import GAP, focus, passage_sentences, rank_sentences

from .conftest import make_hit
from .test_answer import answerer

LEAVE = make_hit(
    1, "The handbook was revised in 2021. Employees are entitled to 26 days of paid leave. Leave requests go to "
    "the manager. Unused leave days expire in March. The canteen opens at noon.", heading=("Leave",),
)
CANTEEN = make_hit(2, "The canteen serves lunch from noon. Coffee is free for everyone.", heading=("Canteen",))
PARKING = make_hit(3, "Parking spaces are assigned by the facilities team.", heading=("Parking",))


def no_embedding(texts):
    """Zero vectors: the ranking then rests on the question words alone, which these tests can reason about."""
    return np.zeros((len(texts), 4), dtype=np.float32)


def words(text: str) -> int:
    return len(text.split())


def test_sentences_are_ranked_by_the_question_words_they_contain():
    ranked = rank_sentences("How many days of paid leave do employees get?", [LEAVE, CANTEEN], no_embedding)
    assert ranked[0].text == "Employees are entitled to 26 days of paid leave."
    assert (ranked[0].passage, ranked[0].position) == (0, 1)
    assert ranked[-1].score == 0.0


def test_focus_keeps_the_best_sentences_in_passage_order_within_the_budget():
    hits, excerpts = focus("When do unused paid leave days expire?", [LEAVE, CANTEEN, PARKING], no_embedding, 16,
                           words)
    assert hits == [LEAVE], "passages with no kept sentence leave the prompt"
    assert excerpts == [f"Employees are entitled to 26 days of paid leave.{GAP}Unused leave days expire in March."]
    assert sum(words(e.replace(GAP, " ")) for e in excerpts) <= 16


def test_neighbouring_sentences_are_joined_without_a_gap_marker():
    _, excerpts = focus("leave requests manager unused leave days", [LEAVE], no_embedding, 14, words)
    assert excerpts == ["Leave requests go to the manager. Unused leave days expire in March."]


def test_the_best_sentence_is_kept_even_beyond_the_budget():
    hits, excerpts = focus("paid leave days", [LEAVE], no_embedding, 1, words)
    assert excerpts == ["Employees are entitled to 26 days of paid leave."]


def test_lean_prompt_citations_name_the_passages_the_model_saw():
    ask, model = answerer("Parking spaces are assigned by the facilities team [1].", hits=[LEAVE, PARKING],
                          passage_tokens=12)
    ask.encode = no_embedding
    answer = ask.ask("Who assigns parking spaces?")
    prompt = model.prompts[0]
    assert "[1] Staff handbook > Parking\nParking spaces are assigned" in prompt
    assert "26 days" not in prompt.split("Question: Who assigns")[0].rsplit("Passages:", 1)[1]
    assert not answer.abstained and answer.sentences[0].citations[0].chunk_id == PARKING.chunk.id
    assert [s.chunk.id for s in answer.sources] == [PARKING.chunk.id]


def test_a_numbered_heading_split_by_the_sentence_rule_is_not_quoted():
    """'Art. 3 – Plafond hebdomadaire' and '4. Expense claims' are cut by the sentence rule after 'Art.' and '4.':
    their pieces are headings too, never sentences to quote ('3 – Plafond hebdomadaire [1]' answered a question)."""
    article = make_hit(4, "Art. 3 – Plafond hebdomadaire\n\nLe télétravail est limité à trois jours par semaine.",
                       title="Directive", heading=("Directive", "Art. 3 – Plafond hebdomadaire"), lang="fr")
    section = make_hit(5, "4. Expense claims\n\nExpense claims are submitted within 30 days of the return.",
                       title="Policy", heading=("Policy", "4. Expense claims"))
    assert passage_sentences(article.chunk) == ["Le télétravail est limité à trois jours par semaine."]
    assert passage_sentences(section.chunk) == ["Expense claims are submitted within 30 days of the return."]
