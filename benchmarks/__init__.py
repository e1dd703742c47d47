"""jaxcnn's benchmarks (beside the package, not in it): `python scripts/benchmark.py --help`.

- `suite`: every benchmark of the README's performance table (`BENCHMARKS`), run by `scripts/benchmark.py`.
- `multi`: K CV folds as one program against K sequential runs (paired blocks, and end to end).
- `encode`: encoding all of MR.
"""
