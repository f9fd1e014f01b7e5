"""Streamlit's XSRF protection stays on and errors never show details to users."""

from __future__ import annotations

import tomllib

from tests.conftest import REPO_ROOT


def test_effective_config_keeps_xsrf_on() -> None:
    from streamlit import config

    config._config_options = None  # re-read .streamlit/config.toml from the repo
    config.get_config_options(force_reparse=True, options_from_flags={})
    assert config.get_option("server.enableXsrfProtection") is True
    assert config.get_option("client.showErrorDetails") in ("none", False)
    assert config.get_option("browser.gatherUsageStats") is False


def test_config_file_states_it_explicitly() -> None:
    settings = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert settings["server"]["enableXsrfProtection"] is True


def test_no_legacy_pages_folder() -> None:
    # A pages/ folder beside app.py re-enables Streamlit's legacy discovery (DESIGN.md).
    assert not (REPO_ROOT / "pages").exists()
