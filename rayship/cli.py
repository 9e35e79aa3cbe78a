"""Command line entry point (placeholder until the CLI lands)."""
