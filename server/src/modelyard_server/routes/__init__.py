"""One module per API family; each exposes `router`."""
