"""Language identification for documents and questions (py3langid, model bundled in the wheel).

The full model knows ~140 languages; on short or legal text it drifts to neighbours (lb/de, fr/oc, en/pcm), so by
default it only chooses among the languages an organisation in this region actually writes. Callers with other
corpora pass their own candidate set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from py3langid.langid import LanguageIdentifier

DEFAULT_LANGUAGES: tuple[str, ...] = ("fr", "de", "en", "lb", "nl", "it", "es", "pt")
UNDETERMINED = "und"

MIN_LETTERS = 8  # fewer letters than a short word pair carry no signal ("Art. 5", "§ 3")
MIN_CONFIDENCE = 0.5  # normalised probability below which the guess is a coin toss among candidates
SAMPLE_CHARS = 12_000  # the classifier is linear in input size; a few pages decide a document's language

_LETTER = re.compile(r"[^\W\d_]")


def comparable(text_lang: str, lang: str | None) -> bool:
    """Whether text in `text_lang` can be compared word for word with text in `lang`: the same language, or either
    unknown (None, `UNDETERMINED`)."""
    return lang in (None, UNDETERMINED) or text_lang in (lang, UNDETERMINED)


def detect_language(text: str, languages: Iterable[str] | None = None) -> str:
    """ISO 639-1 code of `text`'s main language, or "und" when the text is too short or ambiguous.

    `languages` are the ISO 639-1 candidates (default `DEFAULT_LANGUAGES`); texts longer than `SAMPLE_CHARS` are
    judged on four evenly spaced slices. "und" (ISO 639-2's "undetermined") is returned for fewer than `MIN_LETTERS`
    letters or a normalised probability below `MIN_CONFIDENCE`. Classifier: Lui & Baldwin's langid.py, "langid.py:
    An Off-the-shelf Language Identification Tool" (ACL 2012), as packaged by py3langid.
    """
    sample = _sample(text)
    if len(_LETTER.findall(sample[:2000])) < MIN_LETTERS:
        return UNDETERMINED
    identifier = _identifier(frozenset(languages or DEFAULT_LANGUAGES))
    lang, confidence = identifier.classify(sample)
    if confidence < MIN_CONFIDENCE or lang == "zxx":  # zxx: the model's "no linguistic content" class
        return UNDETERMINED
    return lang


def _sample(text: str) -> str:
    """Evenly spaced slices, so a long French act with a German annex is judged on its bulk, quickly."""
    if len(text) <= SAMPLE_CHARS:
        return text
    slices = 4
    width = SAMPLE_CHARS // slices
    step = (len(text) - width) // (slices - 1)
    return "\n".join(text[i * step : i * step + width] for i in range(slices))


@lru_cache(maxsize=4)
def _identifier(languages: frozenset[str]) -> LanguageIdentifier:
    """Load the model on first use (≈0.7 s), not at import: most commands never need it."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(sorted(languages))
    return identifier
