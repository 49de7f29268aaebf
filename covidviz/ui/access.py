"""Who may do what on the dashboard: three roles, read from the signed-in user's ID-token claims or from an
allow-list, and the pages each one opens. Pure functions of the configuration and the claims (no Streamlit
here), so the rules are tested without a browser.

The configuration is the ``[access]`` section of ``.streamlit/secrets.toml`` (all keys optional)::

    [access]
    claims = ["groups", "roles"]        # ID-token claims that list the user's groups or roles
    idle_timeout_minutes = 30           # a session without activity for this long ends
    session_max_hours = 12              # a sign-in is good for this long at most, active or not
    provider = "keycloak"               # only with named provider sections ([auth.keycloak])
    [access.roles]                      # claim values that grant each role
    reader = ["covidviz-reader"]
    pacs = ["covidviz-pacs"]
    admin = ["covidviz-admin"]
    [access.users]                      # allow-list: a subject (sub) or e-mail address -> its roles
    "radiologist@hospital.example" = ["reader", "pacs"]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

READER = "reader"  # Diagnose, the evaluation pages, the user's own verdicts
PACS = "pacs"  # the PACS worklist: retrieving studies, storing results back
ADMIN = "admin"  # the Audit log, site performance, site calibration, settings
ROLES = (READER, PACS, ADMIN)
EVERYONE = None  # a page any signed-in user may open (the model card)

DEFAULT_CLAIMS = ("groups", "roles")
DEFAULT_IDLE_MINUTES = 30.0
DEFAULT_SESSION_HOURS = 12.0


def _strings(value: Any) -> tuple[str, ...]:
    """A claim or setting as strings: a list, a single string, or a space/comma-separated string (some
    providers put roles in one string)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v for v in value.replace(",", " ").split() if v)
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return tuple(str(v) for v in value if v is not None and str(v))
    return (str(value),)


def _group_name(value: str) -> str:
    """Keycloak sends groups as full paths ("/covidviz-admin") unless told not to; compare by name."""
    return value.strip().lstrip("/").casefold()


@dataclass(frozen=True)
class AccessConfig:
    """The ``[access]`` section, validated; every key has a default."""

    claims: tuple[str, ...] = DEFAULT_CLAIMS
    role_values: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {role: (role, f"covidviz-{role}") for role in ROLES})
    users: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    idle_minutes: float = DEFAULT_IDLE_MINUTES
    session_hours: float = DEFAULT_SESSION_HOURS
    provider: str | None = None  # a named provider section ([auth.keycloak]); None: the flat [auth] keys

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> AccessConfig:
        """From the secrets file's ``[access]`` mapping; unknown roles are an error (a typo there would
        otherwise silently lock someone out or let someone in)."""
        section = dict(section or {})
        defaults = cls()
        roles_section = dict(section.get("roles") or {})
        unknown = set(roles_section) - set(ROLES)
        users = {str(who): _strings(roles) for who, roles in dict(section.get("users") or {}).items()}
        unknown |= {r for roles in users.values() for r in roles} - set(ROLES)
        if unknown:
            raise ValueError(f"[access] names unknown roles {sorted(unknown)}; the roles are {', '.join(ROLES)}")
        role_values = {role: _strings(roles_section[role]) if role in roles_section else defaults.role_values[role]
                       for role in ROLES}
        idle = float(section.get("idle_timeout_minutes", DEFAULT_IDLE_MINUTES))
        hours = float(section.get("session_max_hours", DEFAULT_SESSION_HOURS))
        if idle <= 0 or hours <= 0:
            raise ValueError("[access] idle_timeout_minutes and session_max_hours must be positive")
        return cls(claims=_strings(section.get("claims", DEFAULT_CLAIMS)) or DEFAULT_CLAIMS,
                   role_values=role_values, users=users, idle_minutes=idle, session_hours=hours,
                   provider=section.get("provider") or None)


def roles_from_claims(claims: Mapping[str, Any], config: AccessConfig) -> frozenset[str]:
    """The roles a signed-in user holds: those whose configured values appear in any of the configured
    claims, plus those the allow-list gives the user's subject or e-mail address (only a verified one, when
    the provider says whether it is)."""
    held = {_group_name(v) for claim in config.claims for v in _strings(claims.get(claim))}
    roles = {role for role, values in config.role_values.items() if held & {_group_name(v) for v in values}}
    keys = [str(claims["sub"])] if claims.get("sub") else []
    email = claims.get("email")
    if email and claims.get("email_verified", True) is not False:
        keys.append(str(email).casefold())
    allow_list = {who.casefold() if "@" in who else who: roles for who, roles in config.users.items()}
    for key in keys:
        roles.update(allow_list.get(key, ()))
    return frozenset(roles)


def allows(required: str | None, roles: Iterable[str]) -> bool:
    """Whether a user holding ``roles`` may open something that needs ``required`` (None: any signed-in
    user)."""
    return required is EVERYONE or required in set(roles)
