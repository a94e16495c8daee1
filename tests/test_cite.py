"""Citation markers and sentence verification, on hand-written model outputs."""

from __future__ import annotations

from rag.cite import Sentence, capitalised_words, marker_numbers, parse_sentences, support, verify

from .conftest import make_hit

HITS = [
    make_hit(1, "Employees are entitled to 26 days of paid leave per calendar year.", heading=("Leave",)),
    make_hit(2, "Staff may work remotely up to two days per week with the agreement of Anne Schmit.",
             heading=("Remote work",)),
    make_hit(3, "Passwords must be at least 14 characters long.", title="IT security policy"),
]


def test_marker_forms():
    assert marker_numbers("a [1] b [2, 3][4] c [5;6]") == [1, 2, 3, 4, 5, 6]
    assert marker_numbers("no markers, [x] nor [ ]") == []


def test_markers_map_to_passages_and_invalid_ones_are_dropped():
    sentences = parse_sentences("Leave is 26 days [1][7]. Passwords have 14 characters [3, 0].", HITS)
    assert [s.text for s in sentences] == ["Leave is 26 days.", "Passwords have 14 characters."]
    first, second = (s.citations for s in sentences)
    assert [c.marker for c in first] == [1] and [c.marker for c in second] == [3]
    c = first[0]
    assert (c.chunk_id, c.doc_id, c.title, c.start, c.end, c.content_hash) == (
        1, "doc-1", "Staff handbook", 100, 100 + len(HITS[0].chunk.text), "hash-1")


def test_markers_after_the_full_stop_belong_to_the_previous_sentence():
    sentences = parse_sentences("Leave is 26 days. [1] Passwords have 14 characters. [3]", HITS)
    assert [(s.text, [c.marker for c in s.citations]) for s in sentences] == [
        ("Leave is 26 days.", [1]), ("Passwords have 14 characters.", [3])]


def test_repeated_sentences_are_kept_once():
    sentences = parse_sentences("Leave is 26 days [1]. Leave is 26 days [2]. Leave is 26 days.", HITS)
    assert len(sentences) == 1 and [c.marker for c in sentences[0].citations] == [1, 2]


def test_render_puts_markers_before_the_full_stop():
    sentence = parse_sentences("Leave is 26 days [1][2].", HITS)[0]
    assert sentence.render() == "Leave is 26 days [1][2]."


def test_support_counts_content_words_and_is_zero_when_a_number_is_missing():
    passage = HITS[0].chunk.text
    assert support("Employees get 26 days of paid leave per year.", passage, "en").score > 0.8
    wrong_number = support("Employees get 30 days of paid leave per year.", passage, "en")
    assert wrong_number.score == 0.0 and wrong_number.missing == ("30",)
    assert support("Yes.", passage, "en").score == 0.0, "a sentence with nothing to check is not supported"


def test_a_missing_name_weighs_more_than_a_missing_word():
    passage = HITS[1].chunk.text
    other_word = support("Staff may work remotely two days per week with agreement of colleagues.", passage, "en")
    other_name = support("Staff may work remotely two days per week with agreement of Paul Weber.", passage, "en")
    assert other_name.score < other_word.score
    assert set(other_name.missing) == {"paul", "weber"}
    assert capitalised_words("Staff ask Anne Schmit in Luxembourg") == ["Anne", "Schmit", "Luxembourg"]


def test_verify_checks_cited_passages_only():
    right, wrong = parse_sentences(
        "Leave is 26 days per calendar year [1]. Employees get 26 days of paid leave per calendar year [3].", HITS)
    verify([right, wrong], HITS, min_support=0.5)
    assert right.supported and not wrong.supported


def test_uncited_sentence_is_checked_against_all_passages_and_cites_the_best():
    sentence = Sentence("Passwords must be at least 14 characters long.")
    verify([sentence], HITS, min_support=0.5)
    assert sentence.supported and [c.marker for c in sentence.citations] == [3]

    invented = Sentence("The boiling point of mercury is 357 degrees.")
    verify([invented], HITS, min_support=0.5)
    assert not invented.supported and not invented.citations and "357" in invented.missing


TABLE = ("Daily allowances\n\nDestination | Daily allowance | Hotel ceiling per night\n\n"
         "Luxembourg and neighbouring regions | 45 euros | 130 euros\n\nBrussels | 60 euros | 170 euros\n\n"
         "Other EU capitals | 70 euros | 190 euros")


def test_a_number_from_another_column_or_row_of_a_table_is_not_supported():
    wrong_column = support("The hotel ceiling per night in Brussels is 60 euros.", TABLE, "en")
    wrong_row = support("The daily allowance in Brussels is 70 euros.", TABLE, "en")
    assert (wrong_column.score, wrong_column.missing) == (0.0, ("60",))
    assert (wrong_row.score, wrong_row.missing) == (0.0, ("70",))
    for right in ("The hotel ceiling per night in Brussels is 170 euros.", "The daily allowance in Brussels is 60 euros.",
                  "In Brussels it is 60 euros a day."):  # names neither column: nothing to contradict
        assert support(right, TABLE, "en").score >= 0.5, right


def test_a_number_also_stated_outside_the_table_or_in_a_matching_row_is_in_place():
    passage = "Files are kept 10 years.\n\nKategorie | Frist\n\nPersonalakten | 10 Jahre\n\nRechnungen | 10 Jahre\n\nLogs | 90 Tage"
    assert support("Personalakten werden 10 Jahre aufbewahrt.", passage, "de").score > 0.5
    assert support("Logs werden 10 Jahre aufbewahrt.", passage, "de").score > 0.5  # 10 is in the prose too
    table = passage.split("\n\n", 1)[1]
    assert support("Logs werden 10 Jahre aufbewahrt.", table, "de").missing == ("10",)
    assert support("Logs werden 90 Tage aufbewahrt.", table, "de").score > 0.5


def test_a_question_asking_for_a_number_is_answered_only_by_a_sentence_stating_one():
    from rag.answer import answers_kind

    stated = Sentence("Die Daten werden zehn Jahre aufbewahrt.", supported=True)
    vague = Sentence("Die Daten werden in einem sicheren Lagerraum aufbewahrt.", supported=True)
    unsupported = Sentence("Die Daten werden 10 Jahre aufbewahrt.", supported=False)
    assert not answers_kind("Wie lange werden Daten aufbewahrt?", [vague, unsupported])
    assert answers_kind("Wie lange werden Daten aufbewahrt?", [vague, stated])
    assert not answers_kind("Combien de jours de télétravail ?", [Sentence("Le télétravail est possible.", supported=True)])
    assert answers_kind("Who approves remote work?", [vague])  # does not ask for a number


def test_a_hyphenated_question_word_is_reported_whole():
    from rag.cite import unmatched_words

    full_time = [make_hit(1, "Full-time employees receive 28 days of paid annual leave.", heading=("Leave",))]
    assert unmatched_words("How many days of leave do part-time employees get?", full_time) == ["part-time"]
    assert unmatched_words("How many days of leave do full-time employees get?", full_time) == []
