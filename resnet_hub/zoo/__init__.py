"""The model zoo: hub_configs/ schema and loading, the stem table, the model-name parser, the timm
registry, the ``hub:`` prefix, labels."""
