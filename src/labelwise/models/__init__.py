"""Models: the registry of classifiers, PyTorch models, committees, semi-supervised fits,
explanations."""
