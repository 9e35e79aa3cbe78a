"""Rayship: what the operator, the predictors and the CLI share (spec, storage, Serve config)."""
