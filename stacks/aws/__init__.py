"""AWS components: `TeamNetwork` (one per team and region) and `Box` (one per nomad)."""
