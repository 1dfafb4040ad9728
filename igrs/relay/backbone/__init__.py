"""Relay backbones: embedded (SQLite, one node) and NATS JetStream (cluster, optional)."""

from igrs.relay.backbone.base import Backbone, KeyValue, Mailbox, NodeHooks, StoredMessage

__all__ = ["Backbone", "KeyValue", "Mailbox", "NodeHooks", "StoredMessage"]
