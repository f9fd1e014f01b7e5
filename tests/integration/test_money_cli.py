"""`billing-ops check` prints each mapped price as a person reads it, by the currency's exponent:
a zero-decimal (JPY) and a three-decimal (KWD) price against the emulator."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.integration.conftest import emulator_gateway


def test_check_prints_jpy_and_kwd_prices_by_their_exponent(check_env: dict[str, str]) -> None:
    from cli import main

    client = emulator_gateway(check_env).client
    prices = {currency: client.v1.prices.create({
        "currency": currency, "unit_amount": amount, "recurring": {"interval": "month"},
        "product_data": {"name": f"Plan billed in {currency}"},
    }).id for currency, amount in (("jpy", 1000), ("kwd", 1500))}
    mapping = json.loads(check_env["STRIPE_PLAN_PRICE_MAPPING_TEST"])
    mapping["basic"]["monthly"], mapping["pro"]["monthly"] = prices["jpy"], prices["kwd"]
    env = {**check_env, "STRIPE_PLAN_PRICE_MAPPING_TEST": json.dumps(mapping), "STRIPE_PRICE_PRO_MONTHLY": None,
           "STRIPE_SECRET_KEY": None, "STRIPE_WEBHOOK_SECRET": None}
    result = CliRunner().invoke(main, ["check"], env=env, catch_exceptions=False)
    assert f"basic.monthly → {prices['jpy']}: active, every month, 1,000 JPY." in result.output, result.output
    assert f"pro.monthly → {prices['kwd']}: active, every month, 1.500 KWD." in result.output
    assert "1000 JPY" not in result.output and "1500 KWD" not in result.output
    as_json = json.loads(CliRunner().invoke(main, ["check", "--json"], env=env, catch_exceptions=False).output)
    messages = {c["id"]: c["message"] for c in as_json["checks"]}
    assert messages["price.basic.monthly"].endswith("1,000 JPY.")
