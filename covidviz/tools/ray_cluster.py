"""Joining an existing Ray cluster as Ray 2.60 starts one: which address, and its authentication token.

Ray 2.60 turns token authentication on for a cluster whenever a token exists where ``ray start --head`` looks
(and ``ray.init()`` writes one on its first local start), but a driver given an explicit address
(``ray://head:10001`` or ``head:6379``) sends no token unless ``RAY_AUTH_MODE=token`` is set: the cluster then
refuses it ("Authentication required but no authorization header provided"), which Ray Client reports only as
a connection timeout. So before connecting, this module asks the cluster whether it answers without a token, and
where it does not (or cannot tell) switches the driver to token mode when a token is available from one of Ray's
own places, in Ray's order: ``RAY_AUTH_TOKEN`` (the token itself),
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


def auth_plan(environ: Mapping[str, str], home: Path, cluster_wants_token: bool | None) -> tuple[bool, str]:
    """(switch this driver to token mode?, a description of the authentication for messages).
    Switches only where ``RAY_AUTH_MODE`` is unset, a token is available and the cluster does not answer
    without one (``cluster_wants_token``: :func:`wants_token`; None where it could not tell)."""
    mode = environ.get(AUTH_MODE_VARIABLE)
    source = token_source(environ, home)
    if mode is not None:
        where = f", token from {source}" if source and mode.lower() == "token" else ""
        return False, f"{AUTH_MODE_VARIABLE}={mode}{where}"
    if cluster_wants_token is False:
        return False, "the cluster answers without a token"
    if source:
        return True, f"token authentication, token from {source}"
    return False, (f"no Ray authentication token found (${TOKEN_VARIABLE}, ${TOKEN_PATH_VARIABLE} or "
                   f"~/{DEFAULT_TOKEN_FILE}); a cluster with token authentication refuses this connection")


# One real method of each server Ray drivers call first; Ray's servers authenticate every real method and
# answer UNAUTHENTICATED before looking at the request, so an empty request tells whether a token is needed.
PROBES = {"ray://": "/ray.rpc.RayletDriver/ClusterInfo", "": "/ray.rpc.NodeInfoGcsService/GetClusterId"}


def wants_token(address: str, timeout: float = 5.0) -> bool | None:
    """Whether the cluster at ``address`` (``ray://host:port`` or ``host:port``) refuses a call without a token:
    True or False, or None where it cannot tell (unreachable, TLS, ``auto``). One call, no token sent. A token
    switched on for a cluster without authentication breaks the job later (its nodes then cannot call back the
    driver), so the driver asks first instead of assuming."""
    import grpc
    scheme = "ray://" if address.startswith("ray://") else ""
    target = address.removeprefix(scheme)
    if "://" in target or ":" not in target:
        return None
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(PROBES[scheme])(b"", timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                return True
            return None if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) else False
    return False


def connect(address: str, runtime_env: dict[str, Any] | None) -> None:
    """``ray.init`` on an existing cluster with the token from Ray's usual places; a failure is a
    :class:`ConnectionError` naming the address and how authentication was set up (never the token)."""
    wants = wants_token(address)
    switch, how = auth_plan(os.environ, Path.home(), wants)
    if wants and not switch and AUTH_MODE_VARIABLE not in os.environ:  # refused for sure: say so at once
        raise ConnectionError(f"cannot connect to the Ray cluster at {address}: it requires token authentication "
                              f"and {how}")
    if switch:
        # Ray's own switch (what it does for address="auto"): sets RAY_AUTH_MODE=token for this process and
        # its children and refreshes Ray's cached configuration, which was read when ray was imported
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    import ray
    for attempt in range(1 + CLIENT_SERVER_RETRIES):
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
            return
        except Exception as exc:  # noqa: BLE001  (Ray raises many kinds; the user needs the address and why)
            ray.shutdown()
            if CLIENT_SERVER_FAILED in str(exc) and attempt < CLIENT_SERVER_RETRIES:
                continue
            raise ConnectionError(f"cannot connect to the Ray cluster at {address} ({how}): {exc}") from None


# Ray Client's proxy starts one server process per client; on a busy node that process sometimes dies at
# start (seen here in 2 of 6 connections: "SpecificServer startup failed", gRPC's epoll after the proxy's
# fork), and the client gets this. A new connection gets a new server process.
CLIENT_SERVER_FAILED = "Initialization failure from server"
CLIENT_SERVER_RETRIES = 2
