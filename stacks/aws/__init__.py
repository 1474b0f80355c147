"""AWS components: `TeamNetwork` (one per team and region) and `Box` (one per nomad)."""

__all__ = ["box", "network"]  # modules: they import the cloud SDK, so nothing is imported here
