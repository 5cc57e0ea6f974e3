"""The wire: weight codec, message validation, transports and the gossip between neighbours.

Layering: ``gossip`` depends on numpy and msgpack only. It never imports ``swarm``
(learning) or ``peers`` (process).
"""
