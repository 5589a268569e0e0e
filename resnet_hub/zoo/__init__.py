"""The model zoo: hub_configs/ schema and loading, the timm registry, the ``hub:`` prefix, labels."""
