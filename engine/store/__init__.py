"""Engine stores: customer states and checkpoints, purchase lines, model scores."""
