"""Training recipes and the shared machinery they use."""
