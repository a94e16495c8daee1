"""Bad input is a 4xx with a message on every endpoint and text field, never a 500 (shared/cases/15-lone-surrogate);
OpenAI conversations replay unchanged (shared/cases/16-openai-conversation-replay); uploads named only by RFC 5987
`filename*` keep their real name; the CLI answers undecodable arguments with one `error:` line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from pydantic import ValidationError

from rag.server.forms import with_plain_filename
from rag.server.openai_schemas import ChatCompletionRequest, ChatMessage
from rag.server.schemas import AskRequest, text_problem

from .conftest import ROOT

QUESTION = "How many days per week may staff work remotely?"
CASES = ROOT.parent / "shared" / "cases"
SURROGATE = "\ud83d"  # the first half of 😀 (U+1F600), as a client that cut the string sends it
NUL = "\x00"


def _json(body) -> dict:
    """Request options sending `body` as JSON with \\u escapes, the only way a lone surrogate travels in JSON."""
    return {"content": json.dumps(body).encode("ascii"), "headers": {"content-type": "application/json"}}


def _chat(*messages, **options) -> dict:
    return {"model": "gemma-3-270m-q4_k_m", "messages": list(messages) or [{"role": "user", "content": QUESTION}],
            **options}


def _text_fields(bad: str) -> list[tuple[str, dict, str]]:
    """(path, JSON body, location named in the error) for every text field of every JSON endpoint."""
    user = {"role": "user", "content": QUESTION}
    return [
        ("/v1/ask", {"question": f"How many days{bad}?"}, "body.question"),
        ("/v1/ask", {"question": QUESTION, "history": ["Remote work?", f"And {bad}"]}, "body.history.1"),
        ("/v1/search", {"query": f"remote {bad}"}, "body.query"),
        ("/v1/chat/completions", _chat({"role": "user", "content": f"days {bad}"}), "body.messages.0.content"),
        ("/v1/chat/completions", _chat({"role": "user", "content": [{"type": "text", "text": bad}]}),
         "body.messages.0.content"),
        ("/v1/chat/completions", _chat({**user, "name": bad}), "body.messages.0.name"),
        ("/v1/chat/completions", _chat({"role": "assistant", "content": "x", "refusal": bad}, user),
         "body.messages.0.refusal"),
        ("/v1/chat/completions", _chat({"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": bad}}]}, user),
         "body.messages.0.tool_calls.0"),
        ("/v1/chat/completions", {**_chat(), "model": bad}, "body.model"),
        ("/v1/chat/completions", _chat(user=bad), "body.user"),
        ("/v1/chat/completions", _chat(stop=["\n", bad]), "body.stop"),
        ("/v1/chat/completions", _chat(metadata={"k": bad}), "body.metadata"),
    ]


# ------------------------------------------------------------------------------------------------ logic
@pytest.mark.parametrize(("text", "problem"), [
    ("Kündigungsfrist 😀 \t\n", None), (f"a{SURROGATE}b", "U+D83D) at character 1"),
    ("\udcff", "U+DCFF"), (f"ab{NUL}", "NUL character (U+0000) at character 2"),
])
def test_text_problem_names_the_character_and_its_position(text, problem):
    found = text_problem(text)
    assert found is None if problem is None else problem in found


def test_a_surrogate_is_reported_alike_whatever_the_field_constraints():
    for body, where in (({"question": SURROGATE}, ("question",)), ({"question": "q", "history": [SURROGATE]},
                                                                    ("history", 0))):
        with pytest.raises(ValidationError) as refused:
            AskRequest.model_validate(body)
        assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [(where, "invalid_text")]


def test_every_message_the_openai_client_builds_is_accepted():
    from openai.types.chat import ChatCompletionMessage

    replayed = ChatCompletionMessage.model_validate({
        "role": "assistant", "content": "Staff may work 3 days [1].", "refusal": None,
        "annotations": [{"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 1, "title": "t",
                                                                  "url": "https://example.org"}}],
        "audio": {"id": "a1", "data": "AAAA", "expires_at": 1, "transcript": "t"},
        "function_call": {"name": "f", "arguments": "{}"},
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }).model_dump()
    assert ChatMessage.model_validate(replayed).text() == "Staff may work 3 days [1]."
    parts = ChatMessage.model_validate({"role": "user", "content": [
        {"type": "text", "text": "How many", "prompt_cache_breakpoint": {"mode": "explicit"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}, {"type": "text", "text": "days?"}]})
    assert parts.text() == "How many days?"
    with pytest.raises(ValidationError, match="colour"):
        ChatMessage.model_validate({"role": "user", "content": "x", "colour": "red"})


def test_a_unicode_error_that_escapes_validation_is_a_400_not_a_500():
    from rag.server.errors import error_body, translate

    escaped = UnicodeEncodeError("utf-8", f"x{SURROGATE}", 1, 2, "surrogates not allowed")
    assert translate(escaped)[:2] == (400, "invalid_request")
    assert json.dumps(error_body(422, "invalid_request", f"body.{SURROGATE}: Extra inputs"), ensure_ascii=False
                      ).encode("utf-8")  # an echoed surrogate cannot stop the error from being sent


def test_objects_accepted_for_compatibility_are_checked_at_any_depth():
    import sys

    nested: object = f"deep{SURROGATE}"
    for _ in range(300):
        nested = {"a": [nested]}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(250)  # a walk by recursion would need 600 frames
    try:
        with pytest.raises(ValidationError, match="lone UTF-16 surrogate"):
            ChatCompletionRequest.model_validate(_chat(tools=[nested]))
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize(("option", "named"), [
    ({"n": 2}, "n"), ({"logprobs": True}, "logprobs"), ({"top_logprobs": 3}, "top_logprobs"),
    ({"response_format": {"type": "json_object"}}, "response_format"), ({"tool_choice": "required"}, "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
    ({"function_call": {"name": "f"}}, "function_call"), ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"), ({"web_search_options": {}}, "web_search_options"),
    ({"moderation": {"model": "omni-moderation-latest"}}, "moderation"),
])
def test_options_asking_for_another_kind_of_reply_are_refused_by_name(option, named):
    with pytest.raises(ValidationError, match=named):
        ChatCompletionRequest.model_validate(_chat(**option))
    ChatCompletionRequest.model_validate(_chat(logprobs=False, top_logprobs=0, tool_choice="auto", function_call="none",
                                               response_format={"type": "text"}, modalities=["text"], audio=None))


@pytest.mark.parametrize(("disposition", "name"), [
    (b"form-data; name=\"files\"; filename*=UTF-8''T%C3%A9l%C3%A9travail%20%E6%97%A5%E6%9C%AC.md",
     "Télétravail 日本.md"),
    (b"form-data; name=\"files\"; filename=\"fallback.md\"; filename*=utf-8'en'r%C3%A9sum%C3%A9.md", "résumé.md"),
    (b"form-data; name=\"files\"; FILENAME*=iso-8859-1''r%E9sum%E9.txt", "résumé.txt"),
    (b"form-data; name=\"files\"; filename=\"plain.md\"", "plain.md"),
])
def test_rfc5987_file_names_become_the_plain_parameter(disposition, name):
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(with_plain_filename(disposition, "utf-8"))
    assert (kind, options[b"name"], options[b"filename"].decode()) == (b"form-data", b"files", name)


# ------------------------------------------------------------------------------------------------ real server
@pytest.mark.integration
@pytest.mark.parametrize(("bad", "words"), [(SURROGATE, "lone UTF-16 surrogate (U+D83D)"), (NUL, "NUL")])
def test_every_text_field_refuses_what_is_not_text_with_a_422(service, bad, words):
    with service.client("public-admin") as client:
        for path, body, where in _text_fields(bad):
            response = client.post(path, **_json(body))
            error = response.json()["error"]
            assert (response.status_code, error["type"]) == (422, "invalid_request"), (path, body, error)
            assert where in error["message"] and words in error["message"], (path, error)


@pytest.mark.integration
def test_form_fields_and_file_names_refuse_what_is_not_text(service):
    """Multipart text arrives as bytes: NUL is the character that can come through and meets the label and
    file-name rules; bytes that are not UTF-8 are refused before (the next test)."""
    with service.client("public-admin") as client:
        labels = client.post("/v1/documents", files={"files": ("memo.txt", b"A memo.")}, data={"labels": f"pub{NUL}"})
        assert labels.status_code == 422 and "body.labels" in labels.json()["error"]["message"], labels.text
        for disposition in (b'form-data; name="files"; filename="memo\x00.txt"',
                            b"form-data; name=\"files\"; filename*=UTF-8''memo%00.txt"):
            named = client.post("/v1/documents", **_multipart(disposition, b"A memo."))
            assert named.status_code == 400 and "bare file name" in named.json()["error"]["message"], named.text
        undecodable = client.post("/v1/documents", files={"files": ("memo.txt", b"A memo.")},
                                  data={"labels": "caf\xe9".encode("latin-1")})
        assert undecodable.status_code == 400 and "label" in undecodable.json()["error"]["message"], undecodable.text


@pytest.mark.integration
def test_lone_surrogate_case_gives_4xx_not_500(service):
    """shared/cases/15-lone-surrogate: half an emoji in the history, then the same anywhere else in a request."""
    with service.client("public") as client:
        history = client.post("/v1/ask", **_json({"question": QUESTION, "history": [f"Remote work {SURROGATE}"]}))
        assert history.status_code == 422 and "body.history.0" in history.json()["error"]["message"]
        field_name = client.post("/v1/ask", **_json({"question": QUESTION, SURROGATE: 1}))
        assert field_name.status_code == 422 and "unicode" in field_name.json()["error"]["message"]
        not_utf8 = client.post("/v1/search", content=b'{"query": "caf\xe9"}', headers={"content-type": "application/json"})
        assert not_utf8.status_code == 400 and "not valid utf-8 (byte 0xE9" in not_utf8.json()["error"]["message"]
        for doc_id in ("%00", "%ED%A0%BD"):
            assert client.get(f"/v1/documents/{doc_id}").status_code in (404, 422)


@pytest.mark.integration
def test_deeply_nested_json_is_a_4xx(service):
    """Objects accepted for compatibility (`tools`) are walked for bad text; nesting deeper than the parser takes is
    FastAPI's 400."""
    with service.client("public") as client:
        for depth in (950, 5000):  # within and beyond what the JSON parser takes
            nested = "{\"a\": " * depth + "\"x\"" + "}" * depth
            body = f'{{"model": "m", "messages": [{{"role": "user", "content": "q"}}], "tools": [{nested}]}}'
            response = client.post("/v1/chat/completions", content=body.encode(),
                                   headers={"content-type": "application/json"})
            assert response.status_code in (400, 404, 422), (depth, response.status_code, response.text[:300])


@pytest.mark.integration
def test_fields_take_the_json_types_the_openapi_document_states(service):
    """Found by tests/test_api_fuzz.py: `"stream": 0` was taken for false and answered (200)."""
    cases = [("/v1/ask", {"question": QUESTION, "stream": 0}, "body.stream"),
             ("/v1/search", {"query": "remote", "k": "5"}, "body.k"),
             ("/v1/chat/completions", _chat(stream="false"), "body.stream")]
    with service.client("public") as client:
        for path, body, where in cases:
            response = client.post(path, json=body)
            assert response.status_code == 422 and where in response.json()["error"]["message"], response.text


@pytest.mark.integration
def test_openai_client_replays_a_whole_conversation(service):
    """shared/cases/16-openai-conversation-replay, and every other message shape of the Chat Completions API."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{service.base_url}/v1", api_key=service.keys["public"], max_retries=0)
    model = client.models.list().data[0].id
    first = client.chat.completions.create(model=model, messages=[{"role": "user", "content": QUESTION}])
    message = first.choices[0].message
    conversation = [
        {"role": "developer", "content": "Answer briefly.", "name": "ops"},
        {"role": "system", "content": [{"type": "text", "text": "You are helpful."}]},
        {"role": "user", "content": QUESTION, "name": "alice"},
        message.model_dump(),
        {"role": "assistant", "content": message.content, "refusal": None},
        {"role": "assistant", "content": None, "audio": {"id": "audio_1"}, "function_call": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\": \"days\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "no result"}]},
        {"role": "function", "name": "lookup", "content": None},
        {"role": "assistant", "content": [{"type": "text", "text": "Three."}, {"type": "refusal", "refusal": "No."}]},
        {"role": "user", "content": [{"type": "text", "text": "How many days per week"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                                     {"type": "text", "text": "may staff work remotely?"}]},
    ]
    reply = client.chat.completions.create(
        model=model, messages=conversation, n=1, user="u-1", metadata={"team": "hr"}, store=False, seed=7,
        temperature=0.2, top_p=0.9, max_completion_tokens=64, stop=["\n\n"], logit_bias={"42": 0}, logprobs=False,
        response_format={"type": "text"}, modalities=["text"], parallel_tool_calls=False, tool_choice="auto",
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        extra_body={"reasoning_effort": "low", "verbosity": "low", "service_tier": "auto", "prompt_cache_key": "k",
                    "safety_identifier": "s", "prediction": {"type": "content", "content": "Staff may"}},
        # ^ options newer than some clients the test extra admits
    )
    assert reply.choices[0].message.content and reply.model_extra["sources"]
    replayed = client.chat.completions.create(model=model, messages=[
        {"role": "user", "content": QUESTION}, reply.choices[0].message.model_dump(),
        {"role": "user", "content": "And on which day must staff be on site?"}])
    assert replayed.choices[0].message.content


@pytest.mark.integration
def test_unsupported_openai_options_are_a_422_naming_them(service):
    with service.client("public") as client:
        for option, named in (({"logprobs": True}, "logprobs"), ({"n": 3}, "body.n"),
                              ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
                               "response_format"), ({"tool_choice": "required"}, "tool_choice")):
            response = client.post("/v1/chat/completions", json=_chat(**option))
            assert response.status_code == 422 and named in response.json()["error"]["message"], response.text


def _multipart(disposition: str | bytes, data: bytes, boundary: str = "rag-test-boundary") -> dict:
    """One file part with exactly this Content-Disposition (httpx would escape or drop what the tests need)."""
    raw = disposition if isinstance(disposition, bytes) else disposition.encode("ascii")
    body = (f"--{boundary}\r\nContent-Disposition: ".encode() + raw + b"\r\nContent-Type: text/markdown\r\n\r\n"
            + data + f"\r\n--{boundary}--\r\n".encode())
    return {"content": body, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}


@pytest.mark.integration
def test_upload_named_only_by_rfc5987_filename_keeps_its_real_name(service):
    data = (CASES / "15-lone-surrogate" / "remote-work-summary.md").read_bytes() if CASES.is_dir() else (
        b"# Remote work at APSN\n\nRemote work is limited to 3 days per week.")
    data += b"\n\nUploaded under a name given only in RFC 5987 form.\n"  # not a copy of a stored file (a duplicate)
    name = "Télétravail – résumé 日本.md"
    dispositions = [  # (Content-Disposition of the part, the name the document must get)
        (f"form-data; name=\"files\"; filename*=UTF-8''{quote(name)}", name),
        (f"form-data; name=\"files\"; filename=\"fallback.md\"; filename*=UTF-8''{quote('Télé 2.md')}", "Télé 2.md"),
        ("form-data; name=\"files\"; filename*=ISO-8859-1'fr'r%E9sum%E9.md", "résumé.md"),
    ]
    with service.client("public-admin") as admin:
        for disposition, expected in dispositions:
            uploaded = admin.post("/v1/documents", **_multipart(disposition, data))
            assert uploaded.status_code == 201, uploaded.text
            document = uploaded.json()["documents"][0]
            assert document["source"] == f"upload://public-admin/public/{expected}"
            assert admin.delete(f"/v1/documents/{document['doc_id']}").status_code == 200
        folder = admin.post("/v1/documents", **_multipart(f"form-data; name=\"files\"; filename*=UTF-8''a%2Fb.md", data))
        assert folder.status_code == 400 and "bare file name" in folder.json()["error"]["message"]


@pytest.mark.integration
def test_upload_names_and_fields_whose_bytes_are_not_text_are_a_400_naming_the_field(service):
    """shared/cases/15-lone-surrogate kind, for multipart: bytes that are not UTF-8 in a `filename*` (after
    percent-decoding), a plain `filename`, a field value or a field name are refused, never stored as U+FFFD or
    read as Latin-1, and the message names the field and the byte."""
    data = b"# Parking\n\nVisitors park on level -2 of the north car park, never in the delivery bay.\n"
    names = [  # (Content-Disposition of the file part, words of the message)
        (b"form-data; name=\"files\"; filename*=UTF-8''a%ED%A0%BDb.md", "(`filename*`) is not valid utf-8 (byte 0xED"),
        (b"form-data; name=\"files\"; filename*=UTF-8''%ZZ%ff.md", "`filename*`) is not valid utf-8 (byte 0xFF"),
        (b'form-data; name="files"; filename="pub\xff.md"', "file name (`filename`) is not valid utf-8 text (byte 0xFF"),
        (b'form-data; name="fi\xffles"; filename="memo.md"', "field name (`name`) is not valid utf-8 text (byte 0xFF"),
    ]
    with service.client("public-admin") as admin:
        before = admin.get("/v1/documents").json()["documents"]
        for disposition, words in names:
            response = admin.post("/v1/documents", **_multipart(disposition, data))
            assert response.status_code == 400 and words in response.json()["error"]["message"], response.text
        for labels in (b"pub\xff", b"public,\xc3"):
            response = admin.post("/v1/documents", files={"files": ("parking.md", data)}, data={"labels": labels})
            error = response.json()["error"]["message"]
            assert response.status_code == 400 and "form field 'labels' is not valid utf-8" in error, response.text
            assert "ÿ" not in error and "Ã" not in error  # not read as Latin-1
        assert admin.get("/v1/documents").json()["documents"] == before  # nothing stored


# ------------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("arguments", [
    [b"search", b"\xff"], [b"ask", b"caf\xe9?"], [b"delete", b"doc-\xff"], [b"ingest", b"/tmp/r\xe9sum\xe9.txt"],
    [b"keys", b"create", b"--principal", b"\xfe\xff", b"--label", b"public"],
])
def test_cli_undecodable_argument_is_one_error_line(arguments, tmp_path):
    result = subprocess.run([sys.executable, "-m", "rag", *arguments], capture_output=True, cwd=ROOT, timeout=120,
                            stdin=subprocess.DEVNULL, env={**os.environ, "RAG_INDEX_DIR": str(tmp_path),
                                                           "RAG_DATA_DIR": str(tmp_path), "LC_ALL": "C.UTF-8"})
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2 and stderr.startswith("error: argument ") and stderr.count("\n") == 1, stderr
    assert "not valid UTF-8" in stderr and "Traceback" not in stderr


def test_cli_index_folder_that_is_not_utf8_is_one_error_line(tmp_path):
    index = os.fsdecode(os.fsencode(tmp_path) + b"/index-\xff")
    result = subprocess.run([sys.executable, "-m", "rag", "stats"], capture_output=True, cwd=ROOT, timeout=120,
                            stdin=subprocess.DEVNULL, env={**os.environ, "RAG_INDEX_DIR": index, "LC_ALL": "C.UTF-8"})
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2 and stderr.count("\n") == 1 and "index_dir" in stderr and "not valid UTF-8" in stderr


@pytest.mark.integration
def test_cli_file_name_that_is_not_utf8_is_one_failed_line_and_the_rest_is_ingested(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "memo.txt").write_text("Remote work is limited to three days per week for all staff members.")
    Path(os.fsdecode(os.fsencode(folder) + b"/r\xe9sum\xe9.txt")).write_bytes(b"Travel is reimbursed.")
    result = subprocess.run([sys.executable, "-m", "rag", "ingest", str(folder), "--json"], capture_output=True,
                            cwd=ROOT, timeout=600, stdin=subprocess.DEVNULL,
                            env={**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"),
                                 "RAG_DATA_DIR": str(tmp_path / "data"), "LC_ALL": "C.UTF-8"})
    assert result.returncode == 1 and b"Traceback" not in result.stderr, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert len(report["added"]) == 1 and [reason for _, reason in report["failed"]] == [
        f"{folder}/r\\xe9sum\\xe9.txt: the file name is not valid UTF-8; rename the file"]


@pytest.mark.integration
def test_upload_reports_byte_identical_files_as_duplicates(service):
    data = b"# Bicycle parking\n\nBicycles are parked in the courtyard, never in the corridors.\n"
    with service.client("public-admin") as admin:
        first = admin.post("/v1/documents", files=[("files", ("bikes.md", data)), ("files", ("bikes copy.md", data))])
        assert first.status_code == 201, first.text
        body = first.json()
        assert len(body["added"]) == 1 and [d["doc_id"] for d in body["documents"]] == body["added"]
        assert body["duplicates"] == [{"file": "bikes copy.md", "duplicate_of": body["added"][0]}]
        again = admin.post("/v1/documents", files={"files": ("bikes-archive.md", data)}).json()
        assert again["added"] == [] and again["duplicates"][0]["duplicate_of"] == body["added"][0]
        assert admin.delete(f"/v1/documents/{body['added'][0]}").status_code == 200
