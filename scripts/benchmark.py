"""Benchmarks measured side by side: resnet_hub vs the reference way (see resnet_hub/bench/benchmark.py).

    python scripts/benchmark.py [--quick] [--json OUT] [--only inference,pipeline]
"""
from resnet_hub import commands
from resnet_hub.bench import benchmark

if __name__ == "__main__":
    raise SystemExit(commands.main(benchmark.add_arguments, benchmark.run, __doc__.splitlines()[0]))
