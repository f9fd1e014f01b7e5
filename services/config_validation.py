"""Validation helpers for `services.config`: key-prefix modes, the plan -> price mapping,
and turning pydantic's ValidationError into one safe line (variable, problem, fix)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import AliasChoices, BaseModel, ValidationError

from services.config_constants import KNOWN_INTERVALS, SETTING_FIXES, PriceMapping
from services.errors import ConsoleError

_PRICE_ENV = re.compile(r"^STRIPE_PRICE_([A-Z0-9]+)_(MONTHLY|YEARLY)$")


class SettingsError(ConsoleError):
    """A configuration value is wrong; the message is safe to print."""



def stripe_key_mode(key: str) -> Literal["test", "live"] | None:
    if key.startswith(("sk_test_", "rk_test_")):
        return "test"
    if key.startswith(("sk_live_", "rk_live_")):
        return "live"
    return None


def publishable_key_mode(key: str) -> Literal["test", "live"] | None:
    if key.startswith("pk_test_"):
        return "test"
    if key.startswith("pk_live_"):
        return "live"
    return None


def parse_price_mapping(environ: Mapping[str, str], mode: str) -> PriceMapping:
    """Merge the JSON mapping for the mode with STRIPE_PRICE_<PLAN>_<INTERVAL> variables."""
    mapping: PriceMapping = {}
    json_var = f"STRIPE_PLAN_PRICE_MAPPING_{mode.upper()}"
    for name in ("STRIPE_PLAN_PRICE_MAPPING", json_var):
        raw = environ.get(name)
        if not raw:
            continue
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            raise SettingsError(f"{name}: not valid JSON; fix: {SETTING_FIXES['STRIPE_PLAN_PRICE_MAPPING']}") from None
        if not isinstance(parsed, dict) or not all(
            isinstance(intervals, dict) and all(isinstance(p, str) for p in intervals.values())
            for intervals in parsed.values()
        ):
            raise SettingsError(
                f"{name}: must map plan -> interval -> price id; fix: {SETTING_FIXES['STRIPE_PLAN_PRICE_MAPPING']}"
            )
        for plan, intervals in parsed.items():
            mapping.setdefault(plan.lower(), {}).update({k.lower(): v for k, v in intervals.items()})
    for name, price in environ.items():
        match = _PRICE_ENV.match(name)
        if match and price:
            mapping.setdefault(match.group(1).lower(), {})[match.group(2).lower()] = price
    for plan, intervals in mapping.items():
        for interval, price in intervals.items():
            if interval not in KNOWN_INTERVALS:
                raise SettingsError(
                    f"price mapping: unknown interval '{interval}' for plan '{plan}'; fix: use monthly or yearly"
                )
            if not price.startswith("price_"):
                raise SettingsError(
                    f"price mapping: the price for {plan}.{interval} is not a price id; fix: use price_... ids"
                )
    return mapping


def env_name_for(model: type[BaseModel], field: str) -> str:
    """The primary env variable for a settings field."""
    info = model.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, str):
        return alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return first if isinstance(first, str) else field.upper()
    return field.upper()


def _canonical_variable(model: type[BaseModel], name: str) -> str:
    """The primary env name for any accepted alias (e.g. RECONCILE_CRON_INTERVAL)."""
    for field_name, info in model.model_fields.items():
        alias = info.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        if name in choices or name == field_name:
            return env_name_for(model, field_name)
    return name


def explain(model: type[BaseModel], error: ValidationError) -> str:
    """One line naming the variable, what is wrong and the fix; never the value."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if "|" in message:  # cross-field checks name their variable themselves
        variable, message = message.split("|", 1)
    else:
        loc = first.get("loc") or ("settings",)
        variable = str(loc[0])
        variable = variable if variable.isupper() else env_name_for(model, variable)
    fix = SETTING_FIXES.get(variable) or SETTING_FIXES.get(_canonical_variable(model, variable), "")
    return f"{variable}: {message}" + (f"; fix: {fix}" if fix else "")

