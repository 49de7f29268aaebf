"""Closed by default: who can reach the server, and whether that is allowed without sign-in.

Without sign-in the dashboard is a single-user tool: it listens on 127.0.0.1 only, so only the computer it
runs on can connect. Listening on any other address needs sign-in (``[auth]`` in ``.streamlit/secrets.toml``)
or an explicit statement that the network is trusted (``COVIDVIZ_TRUSTED_NETWORK=1``). Pure functions;
:mod:`covidviz.ui.serve` applies them at start, :mod:`covidviz.ui.guard` on every page run.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

TRUSTED_NETWORK_ENV = "COVIDVIZ_TRUSTED_NETWORK"
LOCAL_ADDRESS = "127.0.0.1"
AUTH_KEYS = ("redirect_uri", "cookie_secret")
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")

LOCAL, SIGN_IN, TRUSTED = "local", "sign-in", "trusted-network"


def is_loopback(address: str | None) -> bool:
    """127.0.0.0/8, ::1 and "localhost"; None (Streamlit's default: every interface) is not."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, it is not known to be this machine only


def trusted_network(environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(TRUSTED_NETWORK_ENV, "")
    return value.strip().lower() in ("1", "true", "yes")


def sign_in_configured(auth: Mapping[str, Any] | None) -> bool:
    """Whether the secrets' ``[auth]`` section configures OpenID Connect sign-in. A section that is there but
    incomplete is an error, not "no sign-in": the operator meant to close the server."""
    if not auth:
        return False
    missing = [k for k in AUTH_KEYS if not auth.get(k)]
    providers = [v for v in auth.values() if isinstance(v, Mapping) and "client_id" in v]
    if not providers:
        missing += [k for k in PROVIDER_KEYS if not auth.get(k)]
    if missing:
        raise ValueError(f"[auth] in the secrets file is missing {', '.join(missing)}; see the README, "
                         "'Sign-in and roles'")
    return True


def mode(address: str | None, auth: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None,
         client_ip: str | None = None) -> str:
    """``sign-in``, ``local`` or ``trusted-network``; :class:`PermissionError` (its message names the setting
    that allows it) when the server is reachable from elsewhere without sign-in. ``client_ip`` (None for a
    browser on this machine) catches a server started around :mod:`covidviz.ui.serve`."""
    if sign_in_configured(auth):
        return SIGN_IN
    if trusted_network(environ):
        return TRUSTED
    exposed = (address is not None and not is_loopback(address)) or (client_ip is not None
                                                                     and not is_loopback(client_ip))
    if exposed:
        where = f"address {address}" if address and not is_loopback(address) else "a non-local address"
        raise PermissionError(
            f"covidviz will not serve {where} without sign-in: anyone who can reach the port would see the "
            "PACS worklist and the audit log. Configure sign-in ([auth] in .streamlit/secrets.toml, see the "
            f"README's 'Sign-in and roles'), listen on {LOCAL_ADDRESS}, or, on a network you trust, set "
            f"{TRUSTED_NETWORK_ENV}=1 to allow it explicitly.")
    return LOCAL
