"""Switchyard: an OpenAI-compatible routing and ensembling gateway in front of vLLM servers."""

__version__ = "0.1.0"
