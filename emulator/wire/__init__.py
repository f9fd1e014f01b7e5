"""HTTP wire format: errors, form decoding, list objects, expansion, routing, search."""
