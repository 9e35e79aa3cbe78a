"""The kopf operator that reconciles ModelDeployments into Ray Serve applications."""
