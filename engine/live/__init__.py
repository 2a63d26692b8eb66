"""The Kafka edge run live: a local broker for tests and demos, the wire format, the producer."""
