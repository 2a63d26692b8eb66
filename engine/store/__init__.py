"""What the engine keeps, so that nothing needs re-reading: checkpointed states, the accepted purchase lines, and
the model scores."""
