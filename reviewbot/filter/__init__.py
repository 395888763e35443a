"""Which candidates are worth a comment: severity, dedup, acceptance, budget.

Pure: data in, data out; imports only the pure packages (core, review, filter).
"""
