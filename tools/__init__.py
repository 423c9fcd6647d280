"""Generators and data-set helpers of the repository (run by hand, imported by tests)."""
