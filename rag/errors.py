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
"""


class RagError(Exception):
    """Base class of all errors this package raises on purpose."""


class ConfigError(RagError):
    pass


class LoadError(RagError):
    pass


class UnsupportedFormatError(LoadError):
    pass


class IndexError_(RagError):
    pass


class IndexLockedError(IndexError_):
    pass


class IndexMismatchError(IndexError_):
    pass


class NotFoundError(RagError):
    pass


class InputError(RagError):
    pass


class DocumentConflictError(InputError):
    """Refused rather than replacing a document of another source; the message names only the caller's own."""


class AccessDeniedError(RagError):
    pass


class AuthenticationError(AccessDeniedError):
    pass


class BusyError(RagError):
    pass


class GenerationError(RagError):
    pass


class AuditUnavailableError(RagError):
    """Audited work is refused rather than done unrecorded; the message names the log and the fix."""


class EgressBlockedError(RagError, ConnectionRefusedError):
    """Also an OSError, so that HTTP clients and other libraries treat it as the refused connection it is."""
