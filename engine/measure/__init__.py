"""Measurement: what campaigns changed, treated against held out."""
