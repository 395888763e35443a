"""The GitHub App: HTTP edge, queue, worker, GitHub client, database.

I/O: may import any package; the pure ones never import it (tests/test_layout.py).
"""
