"""Fixtures that start real parts, shared by every test folder."""

pytest_plugins = ["support.s3", "support.ray_cluster", "support.models"]
