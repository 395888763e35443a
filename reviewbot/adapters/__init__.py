"""The other outside worlds: LLM servers, a local git checkout, SARIF from CI.

I/O: may import any package; the pure ones never import it (tests/test_layout.py).
"""
