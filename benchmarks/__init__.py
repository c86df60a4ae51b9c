"""Speed benchmarks of fastgan: fused operators, training steps and data loading.

`python -m benchmarks.run` writes results/*.json, results/README.md and PNG plots;
`pytest benchmarks/ --benchmark-only` gives pytest-benchmark tables of the operator
cases. See README.md here.
"""
