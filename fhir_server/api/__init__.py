"""HTTP layer: routes, content negotiation, response headers."""
