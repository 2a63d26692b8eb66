"""What the engine keeps, so that nothing needs re-reading: checkpointed states, and the accepted purchase lines."""
