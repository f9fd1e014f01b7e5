"""Stripe's object catalogue (field shapes from the SDK) and request validation."""
