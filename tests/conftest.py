"""Fixtures shared by every test: the real parts tests run against."""

pytest_plugins = ["support.s3"]
