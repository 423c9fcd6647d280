"""Code systems, value sets and the clinic's price list."""
