"""The HTTP layer: the only part of Switchyard that imports FastAPI."""
