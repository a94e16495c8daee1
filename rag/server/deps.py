"""Request dependencies: who is calling, may they do this, and is the server ready to serve it."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..auth import Principal
from ..errors import AccessDeniedError
from ..proxy_auth import proxy_principal
from .services import Services

bearer = HTTPBearer(auto_error=False, description="an API key from `rag keys create`: `Authorization: Bearer rag_...`")
READY_RETRY_S = 5


def services(request: Request) -> Services:
    """The app's `Services` (built by `create_app`)."""
    return request.app.state.services


async def principal(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """The caller: the person an authenticating proxy vouches for (server.proxy_auth), else the API key's principal;
    without keys (server.require_keys false) everyone who reaches the server over loopback is one anonymous admin
    holding the default labels, and anyone else still needs a valid key (else 401)."""
    request.state.started = time.perf_counter()
    s = services(request)
    caller = proxy_principal(
        settings=s.settings.server.proxy_auth, peer=request.client and request.client.host, headers=request.headers
    )
    if caller is None and (s.settings.server.require_keys or not on_loopback(request.scope)):
        caller = s.keys.authenticate(credentials.credentials if credentials else None)
    elif caller is None:
        caller = Principal("anonymous", frozenset(s.settings.default_labels), admin=True)
    request.state.principal = caller
    await s.check_audit(request)
    return caller


def on_loopback(scope: Mapping[str, Any]) -> bool:
    """Whether the connection arrived on a loopback address and comes from one: the socket that accepted it, not the
    configured server.host, decides (a server started as `uvicorn --host 0.0.0.0` may have been configured for
    127.0.0.1). IPv4-mapped IPv6 addresses count as their IPv4 address; a Unix socket does not count."""
    return all(end and _is_loopback_ip(end[0]) for end in (scope.get("server"), scope.get("client")))


def _is_loopback_ip(host: str) -> bool:
    """Whether `host` is a loopback IP address (an IPv4-mapped IPv6 address as its IPv4 one); names are not."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


async def admin(caller: Principal = Depends(principal)) -> Principal:
    """Changing the index (upload, delete) needs an admin key; reading needs any key."""
    if not caller.admin:
        raise AccessDeniedError(
            f"principal {caller.id!r} may read but not change the index: uploads and deletes "
            "need an admin key (`rag keys create --admin`)"
        )
    return caller


async def ready(request: Request) -> None:
    """Let the request through once the models and index are loaded; else HTTP 503 with Retry-After (seconds)."""
    s = services(request)
    if s.state != "ready":
        detail = (
            "the server is still loading its models and index; retry shortly"
            if s.state == "loading"
            else f"the server cannot serve: {s.failure}"
        )
        raise HTTPException(503, detail, headers={"Retry-After": str(READY_RETRY_S)})
