"""The webhook receiver (Starlette)."""
