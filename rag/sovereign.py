"""Fail-closed egress guard: the process reaches loopback and the hosts the operator listed, nothing else.

`enforce_offline()` is the first thing every entry point does (rag/__main__.py and rag/cli.py `main`, hence `rag`,
`python -m rag`, `rag serve`, `rag chat`, `rag eval`; `rag.server:create_app_from_environment` in each worker of
`rag serve --workers N` or of `uvicorn --factory`). It installs two layers before any model library is imported:

1. Offline switches (`OFFLINE_ENV`): the variables by which the Hugging Face libraries and the usual telemetry are
   told not to call home. They are forced, not defaulted, so that a stray `HF_HUB_OFFLINE=0` cannot reopen the door;
   the libraries read them once, at import, which is why this must run first (`early_imports` says when it did not).
2. A guard refusing every outbound connection, datagram and name lookup (IPv4 and IPv6, TCP and UDP) to anything but
   loopback, the hosts of `llm.endpoints` and `sovereignty.allowed_hosts`. It raises `EgressBlockedError`, naming the
   destination and the caller, and logs it, *before* the system call, so nothing leaves. It is a `sys.addaudithook`
   hook: it sees every socket operation made from Python code, C functions called from Python included, and can be
   neither removed nor dodged by re-importing `socket`. CPython raises the `socket.connect` and `socket.sendto`
   audit events only after it resolved a host *name* given to them (a DNS query already sent), so the methods of
   `socket.socket` also check their address before they reach C.

The allow-list is set explicitly, from the settings an entry point loaded: `enforce_offline(settings)` once the
command knows its configuration (rag/cli_context.py), `permit_configured(settings)` where a guard may or may not be
installed (tests). Loading settings never touches it (rag/settings.py is pure). A child Python inherits the offline
switches through its environment, not the guard: each worker of `rag serve --workers N`, a fresh interpreter, installs
its own from its own settings in `rag.server:create_app_from_environment`.

Blind spots: native code that opens its own sockets, and child processes until their entry point runs (a uvicorn
worker imports the app's modules first; the parser processes of rag/parse_pool.py run no entry point). uvloop is
such code (libuv connects and resolves in C), so importing it is refused and uvicorn falls back to asyncio; a uvicorn
worker process, though, picks its loop before it loads the app. The tests watch the whole process tree from outside
with strace (tests/test_sovereign.py) and the containers have no route out (docker/compose.yaml).

An audit hook is process-wide and permanent, so the guard is one module-level object: the exception to the rule of
no global state, by nature of what it guards.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import EgressBlockedError

if TYPE_CHECKING:
    from .settings import Settings

log = logging.getLogger("rag.sovereign")

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",  # huggingface_hub, and through it transformers and sentence-transformers
    "TRANSFORMERS_OFFLINE": "1",  # older transformers read this one
    "HF_DATASETS_OFFLINE": "1",  # datasets
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",  # never send a stored hub token along
    "DO_NOT_TRACK": "1",  # the cross-tool convention; hf_xet (native code) honours it
    "ANONYMIZED_TELEMETRY": "False",  # chromadb-style telemetry
    "SCARF_NO_ANALYTICS": "true",  # install counters through Scarf
    "OTEL_SDK_DISABLED": "true",  # opentelemetry is installed as a dependency of a dependency: no exporters
}
# Libraries that read the switches at import, and uvloop, which must never load (see the module docstring).
EARLY_IMPORT_RISKS = ("huggingface_hub", "transformers", "sentence_transformers", "datasets", "uvloop")
PROBE_ADDRESS = ("192.0.2.1", 9)  # TEST-NET-1, documentation only
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_LOCAL_FAMILIES = frozenset({socket.AF_UNIX, getattr(socket, "AF_NETLINK", socket.AF_UNIX)})
_INET_FAMILIES = frozenset({socket.AF_INET, socket.AF_INET6})


@dataclass(frozen=True)
class Refusal:
    """One refused attempt: what, to where, and from which line of code."""

    operation: str  # "connection to", "name lookup of", ...
    destination: str
    caller: str  # file:line in function, the first frame outside the guard and the socket module

    def message(self) -> str:
        """The error and log line: the destination, the caller and how to allow a host of one's own network."""
        return (
            f"egress blocked: {self.operation} {self.destination} refused by the sovereignty guard (caller "
            f"{self.caller}); only loopback, the hosts of llm.endpoints and sovereignty.allowed_hosts are reachable: "
            "add the host to sovereignty.allowed_hosts if it is on your own network"
        )


@dataclass(frozen=True)
class GuardStatus:
    """What `rag doctor` reports: whether the guard is installed, the switches' values, what it allows."""

    installed: bool
    switches: dict[str, str | None]  # each offline variable's current value
    early_imports: tuple[str, ...]  # EARLY_IMPORT_RISKS already imported when the guard was installed
    allowed: tuple[str, ...]  # besides loopback
    refused: int

    @property
    def switches_set(self) -> bool:
        """True when every offline switch holds its forced value."""
        return all(self.switches[name] == value for name, value in OFFLINE_ENV.items())


_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class _Destinations:
    """What may be reached besides loopback: networks, and names whose addresses are looked up when first needed."""

    networks: tuple = ()
    names: frozenset[str] = frozenset()
    resolved: frozenset[_IP] = frozenset()
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def parse(cls, hosts: Iterable[str]) -> _Destinations:
        networks, names = [], set()
        for host in hosts:
            try:
                networks.append(ipaddress.ip_network(host.strip("[]"), strict=False))
            except ValueError:
                names.add(_normal_name(host))
        return cls(tuple(networks), frozenset(names))

    def admits(self, host: str | bytes | None) -> bool:
        if host is None:
            return True  # getaddrinfo(None, port) is the local wildcard, used to bind
        name = _normal_name(host.decode(errors="replace") if isinstance(host, bytes) else host)
        try:
            ip = ipaddress.ip_address(name.split("%", 1)[0])  # fe80::1%eth0 carries a scope
        except ValueError:
            return name in LOOPBACK_NAMES or name in self.names
        return self._admits_ip(ip)

    def _admits_ip(self, ip: _IP) -> bool:
        mapped = getattr(ip, "ipv4_mapped", None)
        if ip.is_loopback or (mapped is not None and mapped.is_loopback):
            return True
        if any(ip in network for network in self.networks) or ip in self.resolved:
            return True
        return bool(self.names) and ip in self._resolve_names()

    def _resolve_names(self) -> frozenset[_IP]:
        """Addresses of the allowed names now; looked up again on a miss, as a name's addresses may change."""
        found: set[_IP] = set()
        for name in self.names:
            try:
                infos = socket.getaddrinfo(name, None)
            except OSError:
                continue  # an allowed name that does not resolve admits nothing
            found.update(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos)
        with self.lock:
            self.resolved = frozenset(found)
        return self.resolved


def _normal_name(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


class _Guard:
    def __init__(self, early_imports: tuple[str, ...]):
        self.early_imports = early_imports
        self.destinations = _Destinations()
        self.allowed: tuple[str, ...] = ()
        self.refused: list[Refusal] = []
        self.quiet = threading.local()  # set while logging a refusal (a log handler's own socket must not recurse)
        # and during probe()

    def permit(self, hosts: Iterable[str]) -> None:
        self.allowed = tuple(sorted(set(hosts)))
        self.destinations = _Destinations.parse(self.allowed)

    def hook(self, event: str, args: tuple) -> None:
        """The audit hook: runs for every audited event of the process, so it returns at once for the others."""
        check = _EVENT_CHECKS.get(event)
        if check is not None:
            check(self, args)

    def check_address(self, operation: str, family: int, address: object) -> None:
        if address is None or family in _LOCAL_FAMILIES:
            return  # a connected socket's send, or a local socket
        if family not in _INET_FAMILIES:
            self.refuse(operation, f"an address of socket family {family}")
        if isinstance(address, tuple) and address and not self.destinations.admits(address[0]):
            self.refuse(operation, _where(address[0], address[1] if len(address) > 1 else None))

    def check_host(self, operation: str, host: str | bytes | None, port: object = None) -> None:
        if not self.destinations.admits(host):
            self.refuse(operation, _where(host, port))

    def refuse(self, operation: str, destination: str) -> None:
        refusal = Refusal(operation, destination, _caller())
        self.refused.append(refusal)
        if not getattr(self.quiet, "on", False):
            self.quiet.on = True
            try:
                log.error(refusal.message())
            finally:
                self.quiet.on = False
        raise EgressBlockedError(refusal.message())


def _where(host: str | bytes | None, port: object) -> str:
    host = host.decode(errors="replace") if isinstance(host, bytes) else str(host)
    shown = f"[{host}]" if ":" in host and port is not None else host  # an IPv6 address beside a port
    return f"{shown}:{port}" if port is not None else shown


def _refuse_uvloop(guard: _Guard, args: tuple) -> None:
    if args[0] == "uvloop" or str(args[0]).startswith("uvloop."):
        raise ImportError(
            "uvloop is disabled by the sovereignty guard: libuv opens sockets the egress checks cannot "
            "see; asyncio is used instead"
        )


_EVENT_CHECKS = {
    "socket.connect": lambda g, a: g.check_address("connection to", a[0].family, a[1]),
    "socket.sendto": lambda g, a: g.check_address("datagram to", a[0].family, a[1]),
    "socket.sendmsg": lambda g, a: g.check_address("message to", a[0].family, a[1]),
    "socket.getaddrinfo": lambda g, a: g.check_host("name lookup (getaddrinfo) of", a[0], a[1]),
    "socket.gethostbyname": lambda g, a: g.check_host("name lookup (gethostbyname) of", a[0]),
    "socket.gethostbyaddr": lambda g, a: g.check_host("reverse lookup (gethostbyaddr) of", a[0]),
    "socket.getnameinfo": lambda g, a: g.check_host("reverse lookup (getnameinfo) of", a[0][0]),
    "import": _refuse_uvloop,
}
_GUARD_FILES = frozenset({__file__, socket.__file__})


def _caller() -> str:
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename in _GUARD_FILES:
        frame = frame.f_back
    if frame is None:
        return "unknown"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def _precheck(
    method: Callable[..., Any], operation: str, address_of: Callable[[tuple[Any, ...], dict[str, Any]], object]
) -> Callable[..., Any]:
    """Wrap a socket method so that its address is judged before CPython resolves a name inside it."""

    def checked(self: socket.socket, *args: Any, **kwargs: Any) -> Any:
        if _guard is not None:
            _guard.check_address(operation, self.family, address_of(args, kwargs))
        return method(self, *args, **kwargs)

    checked.__name__, checked.__doc__ = method.__name__, method.__doc__
    return checked


_PRECHECKED = {  # method: (operation, where its address argument is)
    "connect": ("connection to", lambda args, kwargs: args[0] if args else None),
    "connect_ex": ("connection to", lambda args, kwargs: args[0] if args else None),
    "sendto": ("datagram to", lambda args, kwargs: args[-1] if len(args) >= 2 else None),
    "sendmsg": ("message to", lambda args, kwargs: kwargs.get("address", args[3] if len(args) > 3 else None)),
}

_guard: _Guard | None = None
_install_lock = threading.Lock()


def enforce_offline(settings: Settings | None = None) -> GuardStatus:
    """Force the offline switches and install the guard (once); `settings` names the destinations allowed besides
    loopback (`configured_hosts`), none until given. Call it before importing anything that may talk to the network,
    and again with the settings once the entry point has loaded them."""
    global _guard  # noqa: PLW0603 - the one process-wide guard (module docstring)
    os.environ.update(OFFLINE_ENV)
    with _install_lock:
        if _guard is None:
            _guard = _Guard(tuple(name for name in EARLY_IMPORT_RISKS if name in sys.modules))
            for name, (operation, address_of) in _PRECHECKED.items():
                setattr(socket.socket, name, _precheck(getattr(socket.socket, name), operation, address_of))
            sys.addaudithook(_guard.hook)
    if settings is not None:
        _guard.permit(configured_hosts(settings))
    return status()


def permit_configured(settings: Settings) -> None:
    """Let an installed guard reach the configured hosts; without a guard (the package used as a library, the tests in
    process) there is nothing to do."""
    if _guard is not None:
        _guard.permit(configured_hosts(settings))


def configured_hosts(settings: Settings) -> list[str]:
    """The hosts of `llm.endpoints` (scheme optional) and `sovereignty.allowed_hosts`."""
    endpoints = [urlsplit(url if "//" in url else f"http://{url}").hostname for url in settings.llm.endpoints]
    return [host for host in endpoints if host] + list(settings.sovereignty.allowed_hosts)


def check_destination(host: str, port: str | int | None = None) -> None:
    """For native code that opens its own sockets (libpq: rag/store/postgres.py): raise EgressBlockedError unless
    the installed guard admits `host`. Without a guard there is nothing to enforce, as for Python sockets."""
    if _guard is not None:
        _guard.check_host("connect (native)", host, port)


def probe() -> bool:
    """True when a real connection attempt to TEST-NET-1 is refused by the guard, hence before the system call.

    Without a guard nothing is attempted: 192.0.2.1 (RFC 5737) is never routed, but a SYN would still be sent."""
    if _guard is None:
        return False
    _guard.quiet.on = True  # an expected refusal is not worth an error line
    try:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            sock.connect(PROBE_ADDRESS)
    except EgressBlockedError:
        return True
    except OSError:
        return False
    finally:
        _guard.quiet.on = False
    return False


def status() -> GuardStatus:
    """The guard's state in this process."""
    return GuardStatus(
        installed=_guard is not None,
        switches={name: os.environ.get(name) for name in OFFLINE_ENV},
        early_imports=_guard.early_imports if _guard else (),
        allowed=_guard.allowed if _guard else (),
        refused=len(_guard.refused) if _guard else 0,
    )
