"""`python -m tests.bench` (`make bench`): a benchmark of routerd against a bare aiohttp proxy.

A benchmark, never a test: it measures and prints; it asserts nothing about timings. Modules here
are deliberately not named `test_*.py` so pytest does not collect them.
"""
