"""streamdet.train: scene synthesis, datasets and the training loop (needs torch)."""
