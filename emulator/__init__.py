"""A stateful Stripe API emulator the real stripe SDK talks to (see DESIGN.md)."""
