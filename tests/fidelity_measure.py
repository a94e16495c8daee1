"""The fidelity measure of bench/fidelity.py: the share of a file's expected words a loader returns, in order
(difflib's matching blocks over case-folded NFC words). Shared with tests/test_load_formats.py."""

from __future__ import annotations

import difflib
import re
import unicodedata

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The words of `text` as compared: `\\w+` runs of its NFC form, case-folded."""
    return _WORD.findall(unicodedata.normalize("NFC", text).casefold())


def fidelity(expected: str, returned: str) -> dict[str, float | int]:
    """recall and precision (0..1) of the returned words against the expected ones, in order (module docstring)."""
    want, got = words(expected), words(returned)
    matcher = difflib.SequenceMatcher(None, want, got, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    return {"expected_words": len(want), "returned_words": len(got), "matched_words": matched,
            "recall": round(matched / len(want), 4) if want else 1.0,
            "precision": round(matched / len(got), 4) if got else 0.0}
