"""The dashboard's pages, the role each one needs, and the navigation a user is shown.

Adding a page is one line in :data:`PAGES`; its ``role`` decides who sees it (``ADMIN`` for an admin-only
page such as Site performance). A page the user's role does not allow is left out of the menu and, reached
by URL, shows a plain refusal instead of the page (recorded in the audit log).

The pages live in ``app_pages/``, not ``pages/``: Streamlit runs a process's first request through a folder
named ``pages`` as a legacy multipage app, which would let a deep link to a fresh server run a page script
without ``app.py`` (no sign-in, no role check) and show a "Page not found" dialog over the right page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from covidviz.ui.access import ADMIN, EVERYONE, PACS, READER, allows


@dataclass(frozen=True)
class PageSpec:
    script: str  # relative to app.py
    title: str
    section: str
    role: str | None  # the role it needs; EVERYONE: any signed-in user
    url_path: str  # also the name the audit log gives the page
    icon: str
    default: bool = False  # the page at "/" for a user who may open it


PAGES: tuple[PageSpec, ...] = (
    PageSpec("app_pages/diagnose.py", "Diagnose", "Read an X-ray", READER, "diagnose", ":material/radiology:", True),
    PageSpec("app_pages/confusion_matrices.py", "Confusion matrices", "Evaluation", READER, "confusion-matrices",
             ":material/grid_on:"),
    PageSpec("app_pages/metric_explorer.py", "Metric explorer", "Evaluation", READER, "metric-explorer",
             ":material/monitoring:"),
    PageSpec("app_pages/error_gallery.py", "Error gallery", "Evaluation", READER, "error-gallery",
             ":material/photo_library:"),
    PageSpec("app_pages/explanation_quality.py", "Explanation quality", "Evaluation", READER, "explanation-quality",
             ":material/fact_check:"),
    PageSpec("app_pages/model_comparison.py", "Model comparison", "Evaluation", READER, "model-comparison",
             ":material/compare:"),
    PageSpec("app_pages/pacs_worklist.py", "PACS worklist", "Hospital", PACS, "pacs-worklist", ":material/lan:"),
    PageSpec("app_pages/audit.py", "Audit log", "Operations", ADMIN, "audit", ":material/history:"),
    PageSpec("app_pages/site_performance.py", "Site performance", "Operations", ADMIN, "site-performance",
             ":material/verified:"),
    PageSpec("app_pages/model_card.py", "About / model card", "About", EVERYONE, "model-card",
             ":material/description:"),
)


def allowed_pages(roles: Iterable[str], pages: Iterable[PageSpec] = PAGES) -> list[PageSpec]:
    """The pages a user holding ``roles`` may open, in menu order."""
    roles = set(roles)
    return [p for p in pages if allows(p.role, roles)]


def home_page(pages: Iterable[PageSpec] = PAGES) -> PageSpec:
    """The page at "/" (Diagnose)."""
    return next(p for p in pages if p.default)


def build_navigation(roles: Iterable[str], refuse: Callable[[PageSpec], None]):
    """``st.navigation`` over every page: the allowed ones as themselves, the others hidden from the menu and
    rendering ``refuse(spec)`` when reached by URL. A user who may not open the home page gets a plain start
    page at "/" instead, so that every page keeps its own URL. Returns the page to run."""
    import streamlit as st
    roles = set(roles)
    home = home_page()
    sections: dict[str, list] = {}
    if not allows(home.role, roles):
        sections[home.section] = [st.Page(_start(allowed_pages(roles)), title="Start", icon=":material/home:",
                                          default=True, visibility="hidden")]
    for spec in PAGES:
        if allows(spec.role, roles):
            page = st.Page(spec.script, title=spec.title, icon=spec.icon, default=spec is home,
                           url_path=None if spec is home else spec.url_path)
        else:
            page = st.Page(_refusal(spec, refuse), title=spec.title, icon=spec.icon, url_path=spec.url_path,
                           visibility="hidden")
        sections.setdefault(spec.section, []).append(page)
    return st.navigation(sections)


def build_locked_navigation(screen: Callable[[], None]):
    """Navigation for a session that may see nothing yet: every page's URL renders ``screen`` (the sign-in
    screen) and the menu is gone, also when it was showing before (a session that just timed out)."""
    import streamlit as st
    pages = [st.Page(_named(screen, "sign_in"), title="Sign in", default=True)]
    pages += [st.Page(_named(screen, spec.url_path), title="Sign in", url_path=spec.url_path, visibility="hidden")
              for spec in PAGES]
    return st.navigation(pages, position="hidden")


def _named(screen: Callable[[], None], name: str) -> Callable[[], None]:
    def page() -> None:
        screen()
    page.__name__ = f"locked_{name.replace('-', '_')}"
    return page


def _start(pages: list[PageSpec]) -> Callable[[], None]:
    def start() -> None:
        import streamlit as st
        st.title("covidviz")
        st.write("Your role opens these pages:")
        for spec in pages:
            st.page_link(spec.script, label=spec.title, icon=spec.icon)
    return start


def _refusal(spec: PageSpec, refuse: Callable[[PageSpec], None]) -> Callable[[], None]:
    def refused() -> None:
        refuse(spec)
    refused.__name__ = f"refused_{spec.url_path.replace('-', '_')}"
    return refused
