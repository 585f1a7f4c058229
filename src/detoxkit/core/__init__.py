"""Pure tensor functions: log-probabilities, losses, contrastive logits. Shapes are in each docstring."""
