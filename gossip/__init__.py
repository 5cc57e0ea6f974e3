"""The wire: weight codec, message validation, transports and the gossip between neighbours.

Layering: ``gossip`` depends on numpy, msgpack and xxhash only. It never imports ``swarm``
(learning) or ``peers`` (process).
"""
