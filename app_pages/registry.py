"""The admin pages, grouped by who uses them. app.py builds st.navigation from this."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).parent


def _page(name: str) -> str:
    return str(_HERE / f"{name}.py")


# section -> [(page file, title, url path)]
ADMIN_SECTIONS: dict[str, list[tuple[str, str, str]]] = {
    "Ops": [
        (_page("disputes"), "Disputes", "disputes"),
        (_page("dispute_analytics"), "Dispute analytics", "dispute-analytics"),
        (_page("fraud_warnings"), "Early fraud warnings", "fraud-warnings"),
        (_page("search"), "Search", "search"),
    ],
    "Engineering": [
        (_page("first_24h"), "First 24 hours", "first-24h"),
        (_page("webhooks"), "Webhooks", "webhooks"),
        (_page("reconciliation"), "Reconciliation", "reconciliation"),
        (_page("plan_changes"), "Plan changes", "plan-changes"),
        (_page("dunning"), "Dunning & SCA", "dunning"),
    ],
    "Go-live": [
        (_page("golive"), "Preflight & checklist", "go-live"),
        (_page("qa_matrix"), "QA matrix", "qa-matrix"),
        (_page("signoff"), "Sign-off", "sign-off"),
        (_page("launch_controls"), "Launch controls", "launch-controls"),
        (_page("audit"), "Audit log", "audit"),
    ],
}


def page_file(url_path: str) -> str:
    """The page file for a url path (for st.switch_page / st.page_link)."""
    return next(path for pages in ADMIN_SECTIONS.values() for path, _title, slug in pages if slug == url_path)
