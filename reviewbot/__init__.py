"""reviewbot: an LLM pull-request reviewer that posts only the findings engineers act on."""

__version__ = "0.1.0"
