"""Speed benchmarks of fastgan's fused operators against eager PyTorch and torch.compile.

`pytest benchmarks/ --benchmark-only` for pytest-benchmark tables, `python -m benchmarks.run`
for the runner that writes results/*.json and results/README.md. See README.md here.
"""
