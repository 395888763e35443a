"""Labels -> per-repo acceptance models, and what the data says: stats, usage, dashboard.

I/O: may import any package; the pure ones never import it (tests/test_layout.py).
"""
