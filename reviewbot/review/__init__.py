"""The review stages: diff -> context -> rules and prompt -> replies -> comments.

Pure: data in, data out; imports only the pure packages (core, review, filter).
"""
