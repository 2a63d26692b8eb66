"""Tests against a real single-node Kafka broker (marked `kafka`)."""
