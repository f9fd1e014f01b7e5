"""Payments: payment methods and test cards, payment intents, charges, setup intents, refunds, balance."""
