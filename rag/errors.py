"""Exceptions raised by the pipeline; the front doors translate them, nothing else does.

RagError                      base: every message names the value, the limit and the fix
├── ConfigError               settings invalid or inconsistent (bad YAML, unknown field, missing model file)
├── LoadError                 one input file cannot be read (corrupt, encrypted, empty, unsupported)
│   └── UnsupportedFormatError  its content is none of the formats we read
├── IndexError_               the on-disk index cannot be used
│   ├── IndexLockedError      another writer holds the index lock
│   └── IndexMismatchError    the index was built by another embedder/chunker (or format): run `rag reindex`
├── NotFoundError             a document id that the caller may see does not exist
├── InputError                a request is malformed (empty question, too long, bad filter)
│   └── DocumentConflictError a document's id belongs to a stored document from another source
├── AccessDeniedError         the principal lacks a right (admin action, a label it does not hold)
│   └── AuthenticationError   no API key, or one that is unknown or revoked
├── BusyError                 the generation queue is full; retry later
├── GenerationError           the language model backend failed
├── AuditUnavailableError     the audit trail cannot be written (torn last record, disk full): audited requests wait
└── EgressBlockedError        an outbound connection the sovereignty guard refused (also a ConnectionRefusedError)

The front doors translate by class, never by message text: `rag.server.errors` to an HTTP status, `rag.cli` to an
exit code and one line on stderr.
"""


class RagError(Exception):
    """Base class of all errors this package raises on purpose."""


class ConfigError(RagError):
    """Settings are invalid or inconsistent: bad YAML, an unknown field, a model file missing or off its pin."""


class LoadError(RagError):
    """One input file cannot be read (corrupt, encrypted, empty); the ingest reports it and goes on with the others."""


class UnsupportedFormatError(LoadError):
    """The file's content is none of the formats the loaders read (detected from the bytes, not the name)."""


class IndexError_(RagError):
    """The on-disk index cannot be used (missing, damaged, locked or built differently); named with `_` to keep
    the builtin `IndexError` visible."""


class IndexLockedError(IndexError_):
    """Another writer holds the index lock; retry when its ingest, delete or reindex has finished."""


class IndexMismatchError(IndexError_):
    """The index was built by another embedder, chunker or format version; the fix is `rag reindex`."""


class NotFoundError(RagError):
    """A document, page image or model does not exist; a document the caller may not see is reported alike."""


class InputError(RagError):
    """A request is malformed: an empty or too long question, a bad filter, an out-of-range parameter."""


class DocumentConflictError(InputError):
    """Refused rather than replacing a document of another source; the message names only the caller's own."""


class AccessDeniedError(RagError):
    """The principal lacks a right: an admin action, or a label it does not hold."""


class AuthenticationError(AccessDeniedError):
    """No API key, or one that is unknown or revoked."""


class BusyError(RagError):
    """The generation queue is full; the caller retries later (the server sends `Retry-After`)."""


class GenerationError(RagError):
    """The language model backend failed (llama.cpp in process, or an OpenAI-compatible server)."""


class AuditUnavailableError(RagError):
    """Audited work is refused rather than done unrecorded; the message names the log and the fix."""


class EgressBlockedError(RagError, ConnectionRefusedError):
    """Also an OSError, so that HTTP clients and other libraries treat it as the refused connection it is."""
