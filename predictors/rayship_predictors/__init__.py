"""Code that runs inside Ray Serve replicas: the V2 protocol, runtimes, the Serve applications."""
