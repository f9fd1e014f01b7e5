"""The identities built to fool an admin check (ALwrity checklist §5).

One list, used twice: the authorization-matrix test runs every privileged action
as each of these and expects a denial; the preflight runs them against the
configured ADMIN_EMAILS / ADMIN_EMAIL_DOMAIN and reports any that would be let in.
Templates are filled from each configured admin address and the admin domain.
"""

from __future__ import annotations

from services.auth import is_admin
from services.config import Settings

# Signed out and outsiders, then look-alikes of `{local}@{domain}`: a suffix, a prefix, a
# subdomain, doubled or extra @, the bare domain, the domain without its last label.
LOOKALIKE_TEMPLATES: tuple[str | None, ...] = (
    None, "", "   ", "viewer@outside.io", "{local}@{domain}.evil.io", "{local}@evil-{domain}",
    "{local}@sub.{domain}", "{local}@@{domain}", "a@b@{domain}", "{domain}", "{local}@{domain_stem}",
)


def lookalikes_of(local: str, domain: str) -> list[str | None]:
    stem = domain.rsplit(".", 1)[0]
    return [None if t is None else t.format(local=local, domain=domain, domain_stem=stem)
            for t in LOOKALIKE_TEMPLATES]


def lookalike_identities(settings: Settings) -> list[str | None]:
    """Look-alikes of every configured admin address and of the admin domain, without repeats."""
    seen: dict[str | None, None] = {}
    targets = [tuple(email.rsplit("@", 1)) for email in settings.admin_emails if "@" in email]
    if settings.admin_email_domain:
        targets.append(("admin", settings.admin_email_domain))
    for local, domain in targets:
        for identity in lookalikes_of(local, domain):
            seen.setdefault(identity, None)
    return list(seen)


def admitted_lookalikes(settings: Settings) -> list[str | None]:
    return [identity for identity in lookalike_identities(settings) if is_admin(identity, settings)]
