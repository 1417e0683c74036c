"""LightningModules of the study."""
