"""One module per technique of the guide."""
