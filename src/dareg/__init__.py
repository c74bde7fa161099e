"""dareg: domain-adaptive deep regression on images, as a reproducible DVC pipeline."""
