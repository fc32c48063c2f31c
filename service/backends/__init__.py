"""Backend replicas: their state, health and load, and the choice among them."""
