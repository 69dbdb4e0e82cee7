"""Custom Keras 3 layers and initializers."""
