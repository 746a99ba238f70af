"""GPU profiles: reading them, timing real iterations, fitting batch-time models, shipped presets."""
