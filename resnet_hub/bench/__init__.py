"""Benchmarks: resnet_hub against the reference way, measured side by side in one run."""
