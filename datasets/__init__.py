"""Training data: label polygons, training chips, transforms and the synthetic scene generator."""
