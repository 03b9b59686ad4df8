"""ML models: the contract, preprocessing, one module per family, the registry and the store."""
