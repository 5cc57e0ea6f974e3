"""The learning: averaging math, topologies, data, models, training, simulation, reports.

Layering: ``swarm`` may import ``gossip`` (the wire) but never ``peers`` (the process).
Only ``swarm`` imports torch.
"""
