"""Sign-in by an authenticating reverse proxy: the person's id and groups arrive in request headers.

Those headers are only as trustworthy as whoever wrote them, so they are believed only when the TCP peer is one of
`server.proxy_auth.trusted_proxies`; the same headers from any other address are refused outright rather than
ignored, so that a misrouted request is noticed instead of silently served with a key's rights. Groups become access
labels through `group_labels`; a group not listed gives none, so an unknown person sees nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from .auth import Principal, checked_name
from .errors import AccessDeniedError
from .settings import ProxyAuthSettings


def proxy_principal(*, settings: ProxyAuthSettings, peer: str | None, headers: Mapping[str, str]) -> Principal | None:
    """The person the proxy vouches for, or None when proxy sign-in is off (no trusted proxies) or the request
    carries no identity header (then its API key decides).

    Raises AccessDeniedError when identity headers come from an address that is not a trusted proxy."""
    names = (settings.user_header, settings.groups_header)
    if not settings.trusted_proxies or not any(name in headers for name in names):
        return None
    if not is_trusted(peer, settings.trusted_proxies):
        raise AccessDeniedError(
            f"identity headers ({', '.join(names)}) are accepted only from the configured proxies "
            "(server.proxy_auth.trusted_proxies); sign in with an API key instead"
        )
    user = checked_name(headers.get(settings.user_header, "").strip(), "proxy user id")
    groups = {g.strip() for g in headers.get(settings.groups_header, "").split(settings.groups_separator) if g.strip()}
    labels = frozenset(label for group in groups for label in settings.group_labels.get(group, ()))
    return Principal(user, labels, admin=bool(groups & set(settings.admin_groups)))


def is_trusted(peer: str | None, proxies: list[str]) -> bool:
    """Whether the TCP peer address lies in one of the trusted proxy networks."""
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(proxy, strict=False) for proxy in proxies)
