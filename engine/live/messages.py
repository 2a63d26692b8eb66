"""The `messages` topic: every message the live path sends, keyed by its idempotency key, beside its channel.

A message is published after its channel took it and before the ledger marks it sent (`flush` waits for the
broker's acknowledgements), so a crash between the two publishes it again under the same key: a consumer keeps
the first message of each key (`distinct_keys` shows the set a consumer ends with).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from engine.delivery.channels import Channel
from engine.delivery.message import Message
from engine.errors import DeliveryError


class MessagesTopic:
    """A kafka-python producer onto the messages topic (acks from all in-sync replicas, idempotent retries)."""

    def __init__(self, bootstrap: str, topic: str = "messages") -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, retries=5)
        self._pending: list = []

    def publish(self, message: Message) -> None:
        """Queue `message` for the topic (sent for sure at the next `flush`)."""
        value = json.dumps(message.to_dict(), ensure_ascii=False, sort_keys=True).encode()
        self._pending.append(self.producer.send(self.topic, key=message.key.encode(), value=value))

    def flush(self) -> None:
        """Wait until the broker has every queued message, or raise `DeliveryError`."""
        self.producer.flush()
        pending, self._pending = self._pending, []
        for future in pending:
            if future.failed():
                raise DeliveryError(f"messages topic {self.topic}: {future.exception}")

    def close(self) -> None:
        """Flush and close the producer."""
        self.producer.close()


class Published:
    """A channel whose every message is also published to the messages topic."""

    def __init__(self, channel: Channel, topic: MessagesTopic) -> None:
        self.channel, self.topic = channel, topic

    def send(self, message: Message) -> str:
        """Send on the channel, then queue the message on the topic; the channel's receipt."""
        receipt = self.channel.send(message)
        self.topic.publish(message)
        return receipt

    def flush(self) -> None:
        """The channel's flush (when it has one), then the topic's."""
        flush = getattr(self.channel, "flush", None)
        if flush is not None:
            flush()
        self.topic.flush()


def published(channels: Mapping[str, Channel], topic: MessagesTopic) -> dict[str, Channel]:
    """Every channel of `channels`, publishing to `topic` too."""
    return {name: Published(channel, topic) for name, channel in channels.items()}


def distinct_keys(bootstrap: str, topic: str = "messages", timeout_ms: int = 5_000) -> tuple[set[str], int]:
    """The distinct keys on the topic and how many messages carried them (a consumer's dedupe, from the start)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=timeout_ms)
    keys: set[str] = set()
    count = 0
    try:
        for record in consumer:
            keys.add(record.key.decode())
            count += 1
    finally:
        consumer.close()
    return keys, count
