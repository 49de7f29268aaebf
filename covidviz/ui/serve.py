"""``python -m covidviz.ui.serve [streamlit options]`` (what ``make app`` runs): start the dashboard closed by
default. Without a listening address it listens on 127.0.0.1; an address other than the loopback without
sign-in is refused here, before anything listens, with the setting that would allow it.

Options are Streamlit's own (``--server.address 0.0.0.0``, ``--server.port 8502``, ``--server.sslCertFile``);
so are the other places they may come from (``.streamlit/config.toml``, ``STREAMLIT_SERVER_ADDRESS``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from covidviz.ui.exposure import LOCAL_ADDRESS, mode

APP = Path(__file__).resolve().parents[2] / "app.py"


def _flags(args: list[str]) -> dict[str, str]:
    """``--section.option value`` and ``--section.option=value`` pairs, as Streamlit's config wants them."""
    flags, i = {}, 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "." in arg:
            name, eq, value = arg[2:].partition("=")
            if not eq and i + 1 < len(args):
                value, i = args[i + 1], i + 1
            flags[name] = value
        i += 1
    return flags


def _env_flags(names: list[str], environ: dict[str, str]) -> dict[str, str]:
    """Streamlit's command line takes every option from ``STREAMLIT_<SECTION>_<OPTION>`` too (click's
    environment prefix), at the same precedence as a flag."""
    return {name: environ[key] for name in names
            if (key := "STREAMLIT_" + name.replace(".", "_").upper()) in environ}


def check(args: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """The arguments to start Streamlit with (a listening address added when none is set anywhere);
    :class:`PermissionError` or :class:`ValueError` when the configuration must not start."""
    from streamlit import config
    from streamlit.runtime.secrets import secrets_singleton
    environ = dict(os.environ if environ is None else environ)
    options = config.get_config_options()
    flags = {**_env_flags(list(options), environ), **_flags(args)}
    flags = {k: [v] if getattr(options.get(k), "multiple", False) and isinstance(v, str) else v
             for k, v in flags.items()}  # e.g. secrets.files, a list
    config.get_config_options(force_reparse=True, options_from_flags=flags)
    address = config.get_option("server.address")
    auth = secrets_singleton.get("auth") if secrets_singleton.load_if_toml_exists() else None
    mode(address, auth, environ)
    return args if address else [*args, "--server.address", LOCAL_ADDRESS]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        args = check(args)
    except (PermissionError, ValueError) as exc:
        print(f"covidviz: {exc}", file=sys.stderr)
        return 2
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", str(APP), *args])
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
