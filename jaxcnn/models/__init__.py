"""Model definitions: the Kim (2014) text CNN (and image CNNs)."""
