"""The metric functions against values computed by hand on tiny fixtures, edge cases included. No models."""

from __future__ import annotations

import math

import pytest

from rag.eval.metrics import (abstention_metrics, alce_citations, best_over_answers, exact_match, hit_at_k, lexical_support,
                         mrr_at_k, ndcg_at_k, recall_at_k, retrieval_metrics, token_f1, token_recall)

RANKED = ["a", "b", "c", "d"]
GOLD = {"b", "d"}


def test_ranking_metrics_by_hand():
    assert hit_at_k(RANKED, GOLD, 1) == 0.0 and hit_at_k(RANKED, GOLD, 2) == 1.0
    assert recall_at_k(RANKED, GOLD, 2) == 0.5 and recall_at_k(RANKED, GOLD, 10) == 1.0
    assert mrr_at_k(RANKED, GOLD, 10) == 0.5 and mrr_at_k(RANKED, GOLD, 1) == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)  # gold at ranks 2 and 4
    ideal = 1 + 1 / math.log2(3)  # two gold documents at ranks 1 and 2
    assert ndcg_at_k(RANKED, GOLD, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["b", "d"], GOLD, 10) == pytest.approx(1.0)


def test_questions_without_gold_are_skipped_not_scored():
    metrics = retrieval_metrics([(["a"], {"a"}), (["b"], set())])
    assert metrics["hit@1"] == 1.0 and metrics["questions"] == 1
    assert retrieval_metrics([(["a"], set())]) == {}
    assert recall_at_k(["a"], set(), 5) == 0.0 and ndcg_at_k(["a"], set(), 10) == 0.0


def test_squad_answer_metrics():
    assert exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert exact_match("Eiffel Tower in Paris", "Eiffel Tower") == 0.0
    # prediction [big, red, dog] vs gold [red, dog]: precision 2/3, recall 1
    assert token_f1("the big red dog", "red dog") == pytest.approx(0.8)
    assert token_f1("cat", "red dog") == 0.0
    assert token_recall("a red dog barks", "the red dog") == 1.0


def test_empty_predictions_and_empty_gold():
    assert token_f1("", "red dog") == 0.0 and exact_match("", "red dog") == 0.0
    assert token_f1("", "") == 1.0 and exact_match("the", "a") == 1.0  # both normalise to nothing
    assert token_recall("anything", "") == 0.0


def test_best_over_answers_takes_the_closest_gold_and_skips_no_gold():
    assert best_over_answers(token_f1, "red dog", ["cat", "red dog"]) == 1.0
    assert best_over_answers(exact_match, "red dog", []) is None


def test_abstention_when_everything_is_abstained():
    # two abstentions, one on the single unanswerable item: precision 1/2, recall 1/1
    figures = abstention_metrics([(True, True), (True, False)])
    assert figures == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "abstain_rate": 1.0})


def test_abstention_with_no_abstention_and_no_unanswerable():
    assert abstention_metrics([(False, True)]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "abstain_rate": 0.0}


def test_lexical_support_is_verbatim_and_unstemmed():
    passage = ["The capital of France is Paris, a large city."]
    assert lexical_support("Paris is the capital.", passage) == 1.0
    assert lexical_support("Paris is huge.", passage) == pytest.approx(2 / 3)
    assert lexical_support("Paris capitals", passage) == 0.5  # no stemming: "capitals" is not "capital"
    assert lexical_support("!", passage) == 0.0 and lexical_support("Paris", []) == 0.0


def _judge(supporting: dict[int, list[set[int]]]):
    """supports(i, ids) is true when the cited ids include one of the passage sets that support sentence i."""
    return lambda i, ids: any(needed <= set(ids) for needed in supporting.get(i, []))


def test_alce_redundant_citation_is_imprecise():
    # passage 1 alone supports the sentence; passage 2 adds nothing: recall 1, precision 1/2
    result = alce_citations([[1, 2]], _judge({0: [{1}]}))
    assert result == {"recall": 1.0, "precision": 0.5}


def test_alce_citations_needed_together_are_both_precise():
    assert alce_citations([[1, 2]], _judge({0: [{1, 2}]})) == {"recall": 1.0, "precision": 1.0}


def test_alce_unsupported_sentence_makes_all_its_citations_imprecise():
    # sentence 0 cites 3 and 4 but only passage 1 would support it; sentence 1 is supported by its one citation
    result = alce_citations([[3, 4], [1]], _judge({0: [{1}], 1: [{1}]}))
    assert result == pytest.approx({"recall": 0.5, "precision": 1 / 3})


def test_alce_duplicate_citations_count_once():
    assert alce_citations([[1, 1]], _judge({0: [{1}]})) == {"recall": 1.0, "precision": 1.0}


def test_alce_no_citations_and_no_sentences():
    assert alce_citations([[]], _judge({0: [set()]})) == {"recall": 0.0, "precision": 0.0}
    assert alce_citations([], _judge({})) is None
