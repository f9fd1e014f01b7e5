"""Events and webhook endpoints, and their signed deliveries."""
