"""Lookahead routing (REFERENCE §1): routers that learn to foresee each candidate's response."""
