from __future__ import annotations

import pytest

from services.auth import Identity, is_admin, normalise_email, session_expired, signoff_roles
from services.config import load_settings

DOMAIN_ONLY = load_settings({"ADMIN_EMAIL_DOMAIN": "example.com"}, env_file=None)
LIST_ONLY = load_settings({"ADMIN_EMAILS": "ops@corp.io,Lead@Corp.io"}, env_file=None)
NONE = load_settings({}, env_file=None)


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("admin@example.com", True),
        ("ADMIN@EXAMPLE.COM", True),
        ("  admin@example.com  ", True),
        ("admin@example.com.evil.io", False),  # suffix attack
        ("admin@evil-example.com", False),  # lookalike
        ("admin@sub.example.com", False),  # subdomain
        ("admin@example.co", False),
        ("admin@examplecom", False),
        ("example.com@evil.io", False),
        ("admin@evil.io@example.com", False),  # two @
        ("admin@@example.com", False),
        ("", False),
        ("   ", False),
        (None, False),
        ("@example.com", False),
        ("admin @example.com", False),
    ],
)
def test_admin_by_domain(email: str | None, expected: bool) -> None:
    assert is_admin(email, DOMAIN_ONLY) is expected


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("ops@corp.io", True),
        ("OPS@corp.io", True),
        ("lead@corp.io", True),
        ("ops@corp.io.evil.io", False),
        ("xops@corp.io", False),
        ("ops@corp.i", False),
        ("other@corp.io", False),  # a list grants no domain access
    ],
)
def test_admin_by_list(email: str, expected: bool) -> None:
    assert is_admin(email, LIST_ONLY) is expected


def test_nobody_is_admin_without_configuration() -> None:
    assert not is_admin("admin@example.com", NONE)


def test_normalise_email() -> None:
    assert normalise_email(" A@B.io ") == "a@b.io"
    assert normalise_email("a@b@c") is None


KELVIN = "\u212a"  # KELVIN SIGN, which lower() and casefold() both turn into "k"
LOOKALIKE_LIST = load_settings({"ADMIN_EMAILS": "kate@corp.io,finance@corp.io,ops@corp.io"}, env_file=None)


@pytest.mark.parametrize(
    "email",
    [
        f"{KELVIN}ate@corp.io",  # Kelvin sign for k
        "\uff4bate@corp.io",  # fullwidth k
        "\uff2b\uff21\uff34\uff25@\uff43\uff4f\uff52\uff50.\uff49\uff4f",  # all fullwidth
        "kate@corp\uff0eio",  # fullwidth full stop
        "\ufb01nance@corp.io",  # the "fi" ligature
        "ops@corp.\u0131o",  # dotless i
        "ops@corp.\u0130o",  # capital I with dot
        "\u043eps@corp.io",  # Cyrillic o
        "ops@corp.io\u200b",  # zero-width space
        "o\u0301ps@corp.io",  # combining accent
        "kate@corp.io\u00a0",  # no-break space
    ],
)
def test_unicode_lookalikes_never_match(email: str) -> None:
    assert normalise_email(email) is None
    assert not is_admin(email, LOOKALIKE_LIST)
    assert not is_admin(email, load_settings({"ADMIN_EMAIL_DOMAIN": "corp.io"}, env_file=None))
    assert signoff_roles(email, load_settings({"SIGNOFF_ENG_LEADS": "kate@corp.io,ops@corp.io"},
                                              env_file=None)) == set()


def test_ascii_case_still_matches_after_folding() -> None:
    assert is_admin("KATE@CORP.IO", LOOKALIKE_LIST)
    assert normalise_email(" Kate@Corp.IO ") == "kate@corp.io"


@pytest.mark.parametrize("variable", ["ADMIN_EMAILS", "SIGNOFF_ENG_LEADS", "SIGNOFF_PRODUCT_OWNERS",
                                      "ADMIN_EMAIL_DOMAIN"])
def test_lookalike_in_settings_refuses_start_up(variable: str) -> None:
    from services.config import SettingsError

    value = f"{KELVIN}ate.com" if variable == "ADMIN_EMAIL_DOMAIN" else f"{KELVIN}ate@corp.io"
    with pytest.raises(SettingsError) as raised:
        load_settings({variable: value}, env_file=None)
    assert str(raised.value).startswith(f"{variable}:") and KELVIN not in str(raised.value)


def test_signoff_roles() -> None:
    settings = load_settings({"SIGNOFF_ENG_LEADS": "Eng@x.io", "SIGNOFF_PRODUCT_OWNERS": "po@x.io"}, env_file=None)
    assert signoff_roles("eng@X.io", settings) == {"eng_lead"}
    assert signoff_roles("po@x.io", settings) == {"product_owner"}
    assert signoff_roles("someone@x.io", settings) == set()


def test_idle_timeout_and_absolute_lifetime() -> None:
    settings = load_settings({}, env_file=None)
    identity = Identity(email="a@b.io", signed_in_at=1000.0, last_seen_at=1000.0)
    assert session_expired(identity, settings, now=1000.0 + 1799) is None
    assert "30 minutes" in (session_expired(identity, settings, now=1000.0 + 1801) or "")
    busy = Identity(email="a@b.io", signed_in_at=1000.0, last_seen_at=1000.0 + 12 * 3600)
    assert "maximum length" in (session_expired(busy, settings, now=1000.0 + 12 * 3600 + 1) or "")
