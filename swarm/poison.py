"""Model poisoning: what a hostile member serves its neighbours instead of its model.

The poisoning functions are pure (weights in, weights out) and touch floating-point
tensors only (integer buffers go out unchanged, as a real attacker's would, or the
receiver's shape and dtype checks would refuse them at once). :class:`HostileNode` is a
``SwarmNode`` that trains and mixes honestly, so that it keeps announcing every phase like
any member, but serves the poisoned model of its ``--attack`` kind (``swarm.attacks``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from gossip.codec import WeightsMessage
from swarm.attacks import MODEL_KINDS, Attack
from swarm.node import SwarmNode

Weights = Mapping[str, np.ndarray]


def _floats(weights: Weights, fn: Callable[[str, np.ndarray], Any]) -> dict[str, np.ndarray]:
    """``fn(name, array)`` for every floating-point tensor (cast back to its dtype); others copied."""
    return {name: (np.asarray(fn(name, arr), dtype=arr.dtype) if arr.dtype.kind == "f" else np.array(arr))
            for name, arr in weights.items()}


def sign_flipped(weights: Weights) -> dict[str, np.ndarray]:
    """``-x``: same norm as the honest model, so the receiver's norm check lets it through."""
    return _floats(weights, lambda _, arr: -arr)


def scaled(weights: Weights, factor: float) -> dict[str, np.ndarray]:
    """``factor * x``."""
    return _floats(weights, lambda _, arr: factor * arr)


def noisy(weights: Weights, std: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``x`` plus Gaussian noise of standard deviation ``std`` from ``rng`` (seeded by the caller)."""
    return _floats(weights, lambda _, arr: arr + rng.normal(scale=std, size=arr.shape))


def zeroed(weights: Weights) -> dict[str, np.ndarray]:
    """All-zero floating tensors."""
    return _floats(weights, lambda _, arr: np.zeros_like(arr))


def little_is_enough(models: Sequence[Weights], z: float) -> dict[str, np.ndarray]:
    """"A little is enough" (Baruch et al. 2019): per coordinate, the mean minus ``z``
    population standard deviations of ``models`` (the first one gives the other tensors).

    Raises
    ------
    ValueError
        If ``models`` is empty.
    """
    if not models:
        raise ValueError("little_is_enough needs at least one model")

    def shift(name: str, _: np.ndarray) -> np.ndarray:
        stack = np.stack([np.asarray(m[name], dtype=np.float64) for m in models])
        return stack.mean(axis=0) - z * stack.std(axis=0)

    return _floats(models[0], shift)


def poisoned(attack: Attack, own: Weights, received: Sequence[Weights],
             rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The model ``attack`` serves in place of ``own`` (``received``: the neighbours' models
    it last mixed, for ``alie``).

    Raises
    ------
    ValueError
        If ``attack`` is not a model-poisoning kind (``swarm.attacks.MODEL_KINDS``).
    """
    if attack.kind == "signflip":
        return sign_flipped(own)
    if attack.kind == "scale":
        return scaled(own, attack.value)
    if attack.kind == "noise":
        return noisy(own, attack.value, rng)
    if attack.kind == "zeros":
        return zeroed(own)
    if attack.kind == "alie":
        return little_is_enough([own, *received], attack.value)
    raise ValueError(f"{attack.kind} does not poison a model (one of {', '.join(MODEL_KINDS)} does)")


class HostileNode(SwarmNode):
    """A ``SwarmNode`` that trains and mixes honestly but serves a poisoned model.

    Parameters
    ----------
    *args, **kwargs:
        As ``SwarmNode``.
    attacks:
        This peer's attacks (``swarm.attacks``); at most one of them poisons the model, the
        message kinds are ``swarm.forgery``'s business.
    rng:
        The seeded source of the ``noise`` kind's noise.
    """

    def __init__(self, *args: Any, attacks: tuple[Attack, ...], rng: np.random.Generator, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attacks = attacks
        self.model_attack = next((a for a in attacks if a.kind in MODEL_KINDS), None)
        self.rng = rng
        #: the neighbours' models of the last mix (what ``alie`` estimates the honest spread from)
        self.last_received: dict[str, Weights] = {}
        #: forged control messages sent, by attack kind (``swarm.forgery`` counts them here,
        #: on the node, so that the count survives a restart of the peer's executor)
        self.sent: Counter[str] = Counter()

    def outgoing(self) -> Weights:
        """The poisoned model (the own one if this peer only forges messages)."""
        if self.model_attack is None:
            return self.weights
        return poisoned(self.model_attack, self.weights, list(self.last_received.values()), self.rng)

    def mix(self, received: Mapping[str, WeightsMessage], degrees: Mapping[str, int] | None = None,
            measure: bool = True, self_degree: int | None = None, audience: str = "") -> float | None:
        """Mix honestly, remembering what arrived (``alie`` builds on it)."""
        if received:
            self.last_received = {peer: msg.tensors for peer, msg in received.items()}
        return super().mix(received, degrees, measure, self_degree, audience)
