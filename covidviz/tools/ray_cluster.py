"""Joining an existing Ray cluster as Ray 2.60 starts one: which address, and its authentication token.

Ray 2.60 turns token authentication on for a cluster whenever a token exists where ``ray start --head`` looks
(and ``ray.init()`` writes one on its first local start), but a driver given an explicit address
(``ray://head:10001`` or ``head:6379``) sends no token unless ``RAY_AUTH_MODE=token`` is set: the cluster then
refuses it ("Authentication required but no authorization header provided"), which Ray Client reports only as
a connection timeout. So before connecting, this module switches the driver to token mode whenever a token is
available from one of Ray's own places, in Ray's order: ``RAY_AUTH_TOKEN`` (the token itself),
``RAY_AUTH_TOKEN_PATH`` (a file holding it), ``~/.ray/auth_token``. An explicit ``RAY_AUTH_MODE`` (``token`` or
``disabled``) is always respected. Ray reads and sends the token itself; covidviz never reads, prints or logs it,
and messages name only where it came from.

Under ``ray job submit`` the job's driver finds its cluster in ``RAY_ADDRESS`` (set by Ray's job manager).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path(".ray") / "auth_token"  # under the home directory
ADDRESS_VARIABLE = "RAY_ADDRESS"


def token_source(environ: Mapping[str, str], home: Path) -> str | None:
    """Where Ray 2.60's token loader would take the token from, in its order; None where it finds none.
    Only says where: the token is checked for being non-empty, never returned."""
    if environ.get(TOKEN_VARIABLE, "").strip():
        return f"${TOKEN_VARIABLE}"
    path = environ.get(TOKEN_PATH_VARIABLE)
    if path:
        return f"${TOKEN_PATH_VARIABLE} ({path})" if _non_empty(Path(path)) else None
    default = home / DEFAULT_TOKEN_FILE
    return f"~/{DEFAULT_TOKEN_FILE}" if _non_empty(default) else None


def _non_empty(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def job_address(address: str | None, environ: Mapping[str, str]) -> str | None:
    """The cluster to join: ``--address`` when given, else ``RAY_ADDRESS`` (what ``ray job submit`` gives the
    job's driver, and Ray's own variable for it), else None (a local Ray for the job)."""
    return address or environ.get(ADDRESS_VARIABLE) or None


def auth_plan(environ: Mapping[str, str], home: Path) -> tuple[bool, str]:
    """(switch this driver to token mode?, a description of the authentication for messages).
    Switches only where ``RAY_AUTH_MODE`` is unset and a token is available."""
    mode = environ.get(AUTH_MODE_VARIABLE)
    source = token_source(environ, home)
    if mode is not None:
        where = f", token from {source}" if source and mode.lower() == "token" else ""
        return False, f"{AUTH_MODE_VARIABLE}={mode}{where}"
    if source:
        return True, f"token authentication, token from {source}"
    return False, (f"no Ray authentication token found (${TOKEN_VARIABLE}, ${TOKEN_PATH_VARIABLE} or "
                   f"~/{DEFAULT_TOKEN_FILE}); a cluster with token authentication refuses this connection")


def connect(address: str, runtime_env: dict[str, Any] | None) -> None:
    """``ray.init`` on an existing cluster with the token from Ray's usual places; a failure is a
    :class:`ConnectionError` naming the address and how authentication was set up (never the token)."""
    switch, how = auth_plan(os.environ, Path.home())
    if switch:
        # Ray's own switch (what it does for address="auto"): sets RAY_AUTH_MODE=token for this process and
        # its children and refreshes Ray's cached configuration, which was read when ray was imported
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    import ray
    try:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001  (Ray raises many kinds; the user needs the address and why)
        raise ConnectionError(f"cannot connect to the Ray cluster at {address} ({how}): {exc}") from None
