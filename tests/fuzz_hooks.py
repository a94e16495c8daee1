"""Schemathesis hooks for tests/test_api_fuzz.py, loaded by `st` through SCHEMATHESIS_HOOKS (a separate process)."""

import os

import schemathesis
from hypothesis import strategies as st

SERVED_MODEL = os.environ["RAG_FUZZ_MODEL"]
JSON_OPERATIONS = frozenset({"/v1/ask", "/v1/search", "/v1/chat/completions"})
# What JSON can carry but is not text; hypothesis never draws lone surrogates (its strings must encode as UTF-8).
NOT_TEXT = ("\ud83d", "\udcff", "\x00")


@schemathesis.hook
def map_body(context, body):
    """A generated `model` names no served model, so nearly every chat completion would end at the 404 check before
    its messages are read: name the served one wherever `model` is a string."""
    if context.operation.path == "/v1/chat/completions" and isinstance(body, dict) and isinstance(body.get("model"),
                                                                                                    str):
        return {**body, "model": SERVED_MODEL}
    return body


@schemathesis.hook
def flatmap_body(context, body):
    """In most JSON bodies, one string (value or object key) gets a lone surrogate or a NUL inserted."""
    places = list(_strings(body)) if context.operation.path in JSON_OPERATIONS else []
    if not places:
        return st.just(body)
    return st.builds(_spoiled, st.just(body), st.sampled_from(places), st.sampled_from((None, *NOT_TEXT)),
                     st.integers(min_value=0, max_value=64))


def _strings(value, path=()):
    """Paths to every string of a JSON value; a path ending in ("key",) names an object key."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key, ("key",))
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))
    elif isinstance(value, str):
        yield path


def _spoiled(value, path, bad: str | None, at: int):
    """A copy of `value` with `bad` inserted at position `at` (clipped) of the string at `path`; None: `value`."""
    if bad is None:
        return value
    if not path:
        return value[:at] + bad + value[at:]
    head, *rest = path
    if rest == [("key",)]:
        return {(_spoiled(k, (), bad, at) if k == head else k): v for k, v in value.items()}
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _spoiled(value[head], tuple(rest), bad, at)
    return copy
