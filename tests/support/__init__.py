"""Shared pytest fixtures that start real parts (S3 server, Ray)."""
