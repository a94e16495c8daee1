"""Verified answers that state the fact asked for, from where the passage states it: a value read from the wrong
column or row of a table is not verified, and a question asking for a number, a date or a duration is not answered
by a sentence that states none (the generated text then gives way to quoted sentences, or to an abstention)."""

from __future__ import annotations

import re

import pytest

from .conftest import make_hit
from .test_answer import answerer

TABLE_HIT = make_hit(
    1,
    "Destination | Daily allowance | Hotel ceiling per night\n\nLuxembourg and neighbouring regions | 45 euros | "
    "130 euros\n\nBrussels | 60 euros | 170 euros\n\nOther EU capitals | 70 euros | 190 euros",
    title="Travel expenses policy",
    heading=("3. Daily allowances",),
)
RETENTION_HIT = make_hit(
    2,
    "Diese Richtlinie legt fest, wie lange personenbezogene Daten und Verwaltungsunterlagen aufbewahrt werden und "
    "wann sie gelöscht werden müssen.",
    title="Richtlinie zur Aufbewahrung",
    heading=("§ 1 Zweck",),
    lang="de",
)


def _kept(answer) -> str:
    return " ".join(s.text for s in answer.sentences)


def test_a_value_from_the_wrong_column_is_not_verified():
    ask, _ = answerer("The hotel ceiling per night in Brussels is 60 euros [1].", hits=[TABLE_HIT])
    answer = ask.ask("What is the hotel ceiling per night in Brussels?")
    assert "60 euros" not in _kept(answer) or "170" in _kept(answer), answer.text
    assert [s.missing for s in answer.removed] == [["60"]]


def test_a_duration_question_is_not_answered_without_a_duration():
    ask, _ = answerer("Die Daten werden aufbewahrt in einem festen, transparenten und sicherem Lagerraum [1].",
                      hits=[RETENTION_HIT])
    answer = ask.ask("Wie lange werden Daten aufbewahrt?")
    assert "Lagerraum" not in answer.text
    assert answer.abstained or answer.mode == "quote", answer.text


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["generate", "quote"])
def test_the_real_model_states_the_hotel_ceiling_from_its_column(example_pipeline, llm, mode):
    from rag.pipeline import Pipeline

    pipeline = Pipeline(example_pipeline.settings, embedder=example_pipeline.embedder, llm=llm,
                        store=example_pipeline.store)
    answer = pipeline.ask("What is the hotel ceiling per night in Brussels?", mode=mode)
    for sentence in answer.sentences:
        if re.search(r"hotel|ceiling", sentence.text, re.IGNORECASE) and mode == "generate":
            assert "170" in sentence.text or "60" not in sentence.text, answer.text


@pytest.mark.integration
def test_the_real_model_answers_how_long_with_a_duration_or_not_at_all(example_pipeline, llm):
    from rag.pipeline import Pipeline

    pipeline = Pipeline(example_pipeline.settings, embedder=example_pipeline.embedder, llm=llm,
                        store=example_pipeline.store)
    answer = pipeline.ask("Wie lange werden Daten aufbewahrt?", mode="generate")
    assert answer.abstained or re.search(r"\d", _kept(answer)), answer.text
