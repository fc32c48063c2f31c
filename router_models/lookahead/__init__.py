"""Lookahead routing (Huang et al., NeurIPS 2025): routers that learn to foresee each candidate's response."""
