"""Runtimes wire the pure core to adapters: the embedded runtime (default) and, later, Kafka."""
