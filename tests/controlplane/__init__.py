"""The test control plane: build.sh, cluster.py (start/stop), fixtures.py (pytest)."""
