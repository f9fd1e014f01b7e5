"""The console's webhook endpoint as Stripe has it registered: the preflight check and pruning stale ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from services import audit
from services.config import CONSOLE_EVENT_TYPES, Settings
from services.runtime import Runtime


def _same_path(a: str, b: str) -> bool:
    return urlsplit(a).path.rstrip("/") == urlsplit(b).path.rstrip("/")


def prune_webhook_endpoints(runtime: Runtime, *, url: str, apply: bool, actor: str) -> list[str]:
    """Endpoints that duplicate or shadow the console's: the same URL registered twice,
    or the same path on another host/scheme (an old deployment)."""
    # Stripe lists newest first; keep the oldest registration for the URL.
    endpoints = sorted(reversed(runtime.gateway.list_webhook_endpoints()), key=lambda e: e.get("created", 0))
    keep = next((e for e in endpoints if e["url"] == url), None)
    stale = [e for e in endpoints if e is not keep and (e["url"] == url or _same_path(e["url"], url))]
    lines = [f"Keeping {keep['id']} {keep['url']}" if keep else f"No endpoint is registered for {url}."]
    if not stale:
        lines.append("Nothing to prune.")
        return lines
    for endpoint in stale:
        why = "duplicate of the console URL" if endpoint["url"] == url else "same path on another host"
        if not apply:
            lines.append(f"Would delete {endpoint['id']} {endpoint['url']} ({why})")
            continue
        runtime.gateway.delete_webhook_endpoint(endpoint["id"])
        with runtime.uow() as uow:
            audit.record(uow, actor=actor, action="webhooks.prune", target=endpoint["id"], result="ok",
                         details={"url": endpoint["url"], "why": why})
            uow.commit()
        lines.append(f"Deleted {endpoint['id']} {endpoint['url']} ({why})")
    if not apply:
        lines.append("Dry run: nothing deleted. Re-run with --apply to delete.")
    return lines


@dataclass(frozen=True)
class EndpointCheck:
    url: str | None
    endpoint_id: str | None
    enabled: bool
    missing_events: list[str]
    duplicates: int
    error: str | None = None


def endpoint_registration_check(runtime: Runtime) -> EndpointCheck:
    settings: Settings = runtime.settings
    url = settings.console_webhook_url
    needed = sorted(set(CONSOLE_EVENT_TYPES) | set(settings.stripe_webhook_allowed_events))
    try:
        endpoints = runtime.gateway.list_webhook_endpoints()
    except Exception as error:  # the page shows the reason instead of failing
        return EndpointCheck(url, None, False, needed, 0, getattr(error, "message", str(error)))
    matching = [e for e in endpoints if url and e["url"] == url]
    if not matching:
        return EndpointCheck(url, None, False, needed, 0, "no endpoint is registered for this URL")
    endpoint = matching[0]
    enabled_events = set(endpoint.get("enabled_events") or [])
    missing = [] if "*" in enabled_events else [e for e in needed if e not in enabled_events]
    return EndpointCheck(url, endpoint["id"], endpoint.get("status") == "enabled", missing, len(matching) - 1)


