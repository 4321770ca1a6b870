"""Side-by-side performance harness (issue "Benchmarks"; README "Benchmarks").

Every target is a ratio of two things measured in the same run on the same services, the
runs interleaved (A B A B ...), because the machines are shared and noisy: an absolute
time says more about the neighbours than about the code. Entry point: `python -m
benchmarks [--quick]`; results: `benchmarks/results/<mode>.json` and `.md`.
"""
