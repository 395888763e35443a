"""The domain types and what every stage shares: config, settings, vocabulary, globs, feedback labels.

Pure: data in, data out; imports only the pure packages (core, review, filter).
"""
