"""Unit and property tests for ``swarm.averaging``: aggregates, input checks, mixing weights."""

from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from swarm.averaging import (
    Contribution,
    check_contributions,
    coordinate_median,
    metropolis_weights,
    mixing_row,
    trimmed_mean,
    weighted_average,
)
from swarm.errors import AveragingError, TopologyError
from swarm.topology import build_topology

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)

# ------------------------------------------------------------------ strategies

DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))


def _elements(dtype: np.dtype) -> st.SearchStrategy:
    if dtype.kind == "i":
        return st.integers(-1000, 1000)
    return st.floats(-1e3, 1e3, width=8 * dtype.itemsize)


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Tensor names with a shape and dtype each, like a small state_dict."""
    count = draw(st.integers(1, 3))
    return {
        f"layer{i}": (
            draw(array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4)),
            draw(st.sampled_from(DTYPES)),
        )
        for i in range(count)
    }


def _model(draw: st.DrawFn, schema: dict) -> dict[str, np.ndarray]:
    return {
        name: draw(arrays(dtype, shape, elements=_elements(dtype)))
        for name, (shape, dtype) in schema.items()
    }


@st.composite
def contribution_lists(draw: st.DrawFn, min_size: int = 1, max_size: int = 6) -> list[Contribution]:
    """Compatible contributions from distinct peers with positive weights."""
    schema = draw(schemas())
    size = draw(st.integers(min_size, max_size))
    return [
        Contribution(f"peer{i}", _model(draw, schema), draw(st.floats(0.01, 100.0)))
        for i in range(size)
    ]


def _scale(contributions: list[Contribution], name: str) -> float:
    return max(float(np.abs(c.weights[name]).max()) for c in contributions) + 1.0


def _atol(dtype: np.dtype, scale: float) -> float:
    """Rounding slack: a few dozen ulps of the largest input; integers may round either way."""
    if dtype.kind != "f":
        return 1.0
    return 64 * float(np.finfo(dtype).eps) * scale


def _assert_close(actual: dict, expected: dict, contributions: list[Contribution]) -> None:
    assert list(actual) == list(expected)
    for name, value in expected.items():
        assert isinstance(actual[name], np.ndarray)
        assert actual[name].dtype == value.dtype
        assert actual[name].shape == value.shape
        atol = _atol(value.dtype, _scale(contributions, name))
        np.testing.assert_allclose(actual[name], value, rtol=0, atol=atol)


AGGREGATES: dict[str, Callable[[list[Contribution]], dict[str, np.ndarray]]] = {
    "weighted_average": weighted_average,
    "coordinate_median": coordinate_median,
    "trimmed_mean": lambda cs: trimmed_mean(cs, 0.2),
}

# ------------------------------------------------------------ algebraic properties


@PROPERTY
@given(
    contribution_lists(max_size=1),
    st.integers(1, 6),
    st.lists(st.floats(0.01, 100.0), min_size=6, max_size=6),
)
@pytest.mark.parametrize("aggregate", AGGREGATES.values(), ids=AGGREGATES.keys())
def test_averaging_identical_models_returns_them(aggregate, single, copies, weights) -> None:
    model = single[0].weights
    contributions = [Contribution(f"p{i}", model, weights[i]) for i in range(copies)]
    _assert_close(aggregate(contributions), dict(model), contributions)


@PROPERTY
@given(contribution_lists(min_size=2), st.randoms(use_true_random=False))
@pytest.mark.parametrize("aggregate", AGGREGATES.values(), ids=AGGREGATES.keys())
def test_order_of_contributions_does_not_matter(aggregate, contributions, rnd) -> None:
    shuffled = list(contributions)
    rnd.shuffle(shuffled)
    _assert_close(aggregate(shuffled), aggregate(contributions), contributions)


@PROPERTY
@given(contribution_lists())
def test_weighted_average_with_equal_weights_is_the_mean(contributions) -> None:
    equal = [Contribution(c.peer, c.weights, 7.0) for c in contributions]
    expected = {}
    for name, value in contributions[0].weights.items():
        mean = np.mean([c.weights[name] for c in contributions], axis=0, dtype=np.float64)
        expected[name] = (np.rint(mean) if value.dtype.kind == "i" else mean).astype(value.dtype)
    _assert_close(weighted_average(equal), expected, contributions)


@PROPERTY
@given(contribution_lists())
def test_weighted_average_matches_float64_reference(contributions) -> None:
    total = math.fsum(c.weight for c in contributions)
    expected = {}
    for name, value in contributions[0].weights.items():
        exact = sum(c.weight * c.weights[name].astype(np.float64) for c in contributions) / total
        expected[name] = (np.rint(exact) if value.dtype.kind == "i" else exact).astype(value.dtype)
    _assert_close(weighted_average(contributions), expected, contributions)


@PROPERTY
@given(contribution_lists(), st.floats(1e-3, 1e3))
def test_weighted_average_is_invariant_to_scaling_all_weights(contributions, factor) -> None:
    scaled = [Contribution(c.peer, c.weights, c.weight * factor) for c in contributions]
    _assert_close(weighted_average(scaled), weighted_average(contributions), contributions)


@PROPERTY
@given(contribution_lists())
@pytest.mark.parametrize("aggregate", AGGREGATES.values(), ids=AGGREGATES.keys())
def test_result_lies_within_coordinatewise_min_and_max(aggregate, contributions) -> None:
    result = aggregate(contributions)
    for name, value in result.items():
        stack = np.stack([c.weights[name] for c in contributions])
        slack = 0.0 if value.dtype.kind == "i" else _atol(value.dtype, _scale(contributions, name))
        assert np.all(value >= stack.min(axis=0) - slack)
        assert np.all(value <= stack.max(axis=0) + slack)


@PROPERTY
@given(contribution_lists())
@pytest.mark.parametrize("aggregate", AGGREGATES.values(), ids=AGGREGATES.keys())
def test_aggregates_do_not_modify_their_inputs(aggregate, contributions) -> None:
    before = copy.deepcopy(contributions)
    result = aggregate(contributions)
    for old, new in zip(before, contributions):
        for name in old.weights:
            np.testing.assert_array_equal(old.weights[name], new.weights[name])
            assert result[name] is not new.weights[name]


# ------------------------------------------------------------------ robustness


@PROPERTY
@given(contribution_lists(min_size=2, max_size=6), st.sampled_from([1e30, -1e30]))
def test_one_huge_contribution_cannot_move_the_median_out_of_honest_range(honest, huge) -> None:
    attacker = _attacker(honest, huge)
    result = coordinate_median([*honest, attacker])
    _assert_within_honest_range(result, honest)


@PROPERTY
@given(contribution_lists(min_size=3, max_size=6), st.sampled_from([1e30, -1e30]))
def test_one_huge_contribution_is_trimmed_away(honest, huge) -> None:
    attacker = _attacker(honest, huge)
    # 4..7 contributions with trim 0.25 drop at least one value at each end.
    result = trimmed_mean([attacker, *honest], 0.25)
    _assert_within_honest_range(result, honest)


def _attacker(honest: list[Contribution], huge: float) -> Contribution:
    """A peer sending ``huge`` in every float coordinate and +-10**12 in integer ones."""
    tensors = {
        name: np.full_like(value, huge if value.dtype.kind == "f" else math.copysign(10**12, huge))
        for name, value in honest[0].weights.items()
    }
    return Contribution("attacker", tensors, 1.0)


def _assert_within_honest_range(result: dict, honest: list[Contribution]) -> None:
    for name, value in result.items():
        stack = np.stack([c.weights[name] for c in honest])
        slack = 0.0 if value.dtype.kind == "i" else _atol(value.dtype, _scale(honest, name))
        assert np.all(value >= stack.min(axis=0) - slack)
        assert np.all(value <= stack.max(axis=0) + slack)


def test_weighted_average_is_not_robust_which_the_robustness_tests_rely_on() -> None:
    honest = [Contribution(f"p{i}", {"w": np.array([float(i)])}, 1.0) for i in range(3)]
    attacker = Contribution("attacker", {"w": np.array([1e30])}, 1.0)
    assert weighted_average([*honest, attacker])["w"][0] > 1e29


def test_median_and_trimmed_mean_on_known_values() -> None:
    def peers(*values: float) -> list[Contribution]:
        return [
            Contribution(f"p{i}", {"w": np.array([v], np.float32)}, 1.0)
            for i, v in enumerate(values)
        ]

    assert coordinate_median(peers(1, 5, 100))["w"][0] == 5
    assert coordinate_median(peers(1, 2, 3, 100))["w"][0] == 2.5
    assert trimmed_mean(peers(1, 2, 3, 100), 0.25)["w"][0] == 2.5  # floor(0.25*4)=1 dropped per end
    assert trimmed_mean(peers(1, 2, 3, 100), 0.2)["w"][0] == 26.5  # floor(0.2*4)=0: plain mean


def test_integer_tensors_are_averaged_then_rounded() -> None:
    contributions = [
        Contribution("a", {"num_batches_tracked": np.array(0, np.int64)}, 1.0),
        Contribution("b", {"num_batches_tracked": np.array(10, np.int64)}, 2.0),
    ]
    result = weighted_average(contributions)["num_batches_tracked"]
    assert result.dtype == np.int64
    assert result == 7  # 20/3 = 6.67


def test_weighted_average_weights_the_contributions() -> None:
    contributions = [
        Contribution("a", {"w": np.array([0.0, 4.0], np.float32)}, 3.0),
        Contribution("b", {"w": np.array([8.0, 0.0], np.float32)}, 1.0),
    ]
    np.testing.assert_array_equal(weighted_average(contributions)["w"], [2.0, 3.0])


def test_robust_aggregates_ignore_weights() -> None:
    contributions = [
        Contribution("a", {"w": np.array([1.0])}, 0.0),
        Contribution("b", {"w": np.array([2.0])}, -5.0),
        Contribution("c", {"w": np.array([9.0])}, float("nan")),
    ]
    assert coordinate_median(contributions)["w"][0] == 2.0
    assert trimmed_mean(contributions, 0.0)["w"][0] == 4.0


# ---------------------------------------------------------------- error cases


def _base() -> list[Contribution]:
    rng = np.random.default_rng(0)
    return [
        Contribution(
            peer,
            {
                "w": rng.standard_normal((2, 3)).astype(np.float32),
                "bias": rng.standard_normal(3).astype(np.float32),
            },
            10.0,
        )
        for peer in ("a", "b", "c")
    ]


def _with_b(**changes) -> list[Contribution]:
    """The base contributions with peer ``b``'s tensors or weight changed."""
    contributions = _base()
    b = contributions[1]
    tensors = dict(b.weights)
    for name, value in changes.get("tensors", {}).items():
        if value is None:
            del tensors[name]
        else:
            tensors[name] = value
    contributions[1] = Contribution("b", tensors, changes.get("weight", b.weight))
    return contributions


def _poisoned(value: float) -> np.ndarray:
    array = np.zeros(3, np.float32)
    array[1] = value
    return array


TENSOR_FAULTS = {
    "missing tensor": (_with_b(tensors={"bias": None}), "bias"),
    "extra tensor": (_with_b(tensors={"extra": np.zeros(1, np.float32)}), "extra"),
    "shape mismatch": (_with_b(tensors={"w": np.zeros((3, 2), np.float32)}), "w"),
    "dtype mismatch": (_with_b(tensors={"w": np.zeros((2, 3), np.float64)}), "w"),
    "not an array": (_with_b(tensors={"w": [[0.0] * 3] * 2}), "w"),
    "nan": (_with_b(tensors={"bias": _poisoned(float("nan"))}), "bias"),
    "inf": (_with_b(tensors={"bias": _poisoned(float("inf"))}), "bias"),
    "-inf": (_with_b(tensors={"w": np.full((2, 3), -np.inf, np.float32)}), "w"),
}
WEIGHT_FAULTS = {
    "zero weight": _with_b(weight=0.0),
    "negative weight": _with_b(weight=-1.0),
    "nan weight": _with_b(weight=float("nan")),
    "inf weight": _with_b(weight=float("inf")),
    "non-numeric weight": _with_b(weight="10"),
}
CHECKED = {"check_contributions": check_contributions, **AGGREGATES}


@pytest.mark.parametrize("function", CHECKED.values(), ids=CHECKED.keys())
def test_empty_input_is_rejected(function) -> None:
    with pytest.raises(AveragingError) as info:
        function([])
    assert (info.value.peer, info.value.tensor) == (None, None)


@pytest.mark.parametrize("function", CHECKED.values(), ids=CHECKED.keys())
@pytest.mark.parametrize("contributions,tensor", TENSOR_FAULTS.values(), ids=TENSOR_FAULTS.keys())
def test_tensor_faults_name_peer_and_tensor(function, contributions, tensor) -> None:
    before = copy.deepcopy(contributions)
    with pytest.raises(AveragingError) as info:
        function(contributions)
    assert (info.value.peer, info.value.tensor) == ("b", tensor)
    assert "peer b" in str(info.value) and f"tensor {tensor}" in str(info.value)
    for old, new in zip(before, contributions):  # nothing written into the inputs
        for name in old.weights:
            np.testing.assert_array_equal(old.weights[name], new.weights[name])


@pytest.mark.parametrize("function", [check_contributions, weighted_average])
@pytest.mark.parametrize("contributions", WEIGHT_FAULTS.values(), ids=WEIGHT_FAULTS.keys())
def test_weight_faults_name_the_peer(function, contributions) -> None:
    with pytest.raises(AveragingError) as info:
        function(contributions)
    assert (info.value.peer, info.value.tensor) == ("b", None)


@pytest.mark.parametrize("contributions,_", TENSOR_FAULTS.values(), ids=TENSOR_FAULTS.keys())
def test_weighted_average_reports_the_same_fault_as_check_contributions(contributions, _) -> None:
    with pytest.raises(AveragingError) as checked:
        check_contributions(contributions)
    with pytest.raises(AveragingError) as averaged:
        weighted_average(contributions)
    assert str(averaged.value) == str(checked.value)


def test_first_faulty_peer_is_named_when_several_are_faulty() -> None:
    contributions = _with_b(tensors={"bias": _poisoned(float("nan"))})
    inf = np.full((2, 3), np.inf, np.float32)
    contributions[2] = Contribution("c", {**contributions[2].weights, "w": inf}, 1.0)
    with pytest.raises(AveragingError) as info:
        weighted_average(contributions)
    assert (info.value.peer, info.value.tensor) == ("b", "bias")


def test_overflow_of_finite_inputs_is_reported() -> None:
    top = np.finfo(np.float32).max
    contributions = [
        Contribution(f"p{i}", {"w": np.full(2, top, np.float32)}, float(w))
        for i, w in enumerate([8, 10, 8, 11, 5])  # normalised float32 weights sum to just over 1
    ]
    check_contributions(contributions)  # the inputs themselves are fine
    with pytest.raises(AveragingError, match="overflow") as info:
        weighted_average(contributions)
    assert info.value.tensor == "w"


@pytest.mark.parametrize("trim", [-0.1, 0.5, 0.9, float("nan"), True, "0.1"])
def test_trimmed_mean_rejects_bad_trim(trim) -> None:
    with pytest.raises(AveragingError):
        trimmed_mean(_base(), trim)


def test_unsupported_dtype_is_rejected() -> None:
    contributions = [Contribution(p, {"z": np.zeros(2, np.complex64)}, 1.0) for p in "ab"]
    with pytest.raises(AveragingError) as info:
        weighted_average(contributions)
    assert (info.value.peer, info.value.tensor) == ("a", "z")


# ------------------------------------------------------------ mixing weights


@st.composite
def topologies(draw: st.DrawFn) -> dict[int, list[int]]:
    """Connected graphs from every builder, with parameters valid for each."""
    name = draw(st.sampled_from(["ring", "full", "exponential", "kregular", "smallworld"]))
    seed = draw(st.integers(0, 2**16))
    if name == "kregular":
        n = draw(st.integers(3, 20))
        degree = draw(st.sampled_from([d for d in range(2, n) if n * d % 2 == 0]))
        return build_topology(name, n, degree=degree, seed=seed)
    if name == "smallworld":
        n = draw(st.integers(4, 20))
        degree = draw(st.integers(1, n - 1).filter(lambda d: d + d % 2 < n))
        rewire = draw(st.floats(0.0, 1.0))
        return build_topology(name, n, degree=degree, rewire=rewire, seed=seed)
    return build_topology(name, draw(st.integers(1, 20)), seed=seed)


@PROPERTY
@given(topologies())
def test_metropolis_matrix_is_symmetric_and_doubly_stochastic(graph) -> None:
    matrix = metropolis_weights(graph)
    n = len(graph)
    assert matrix.shape == (n, n)
    np.testing.assert_allclose(matrix, matrix.T, rtol=0, atol=0)
    np.testing.assert_allclose(matrix.sum(axis=1), np.ones(n), rtol=0, atol=1e-12)
    assert np.all(np.diag(matrix) > 0)
    for i in range(n):  # support is exactly the edges plus the diagonal
        assert set(np.flatnonzero(matrix[i])) == {i, *graph[i]}


@PROPERTY
@given(topologies(), st.integers(0, 2**32 - 1))
def test_gossip_preserves_the_mean_and_converges_to_it(graph, seed) -> None:
    matrix = metropolis_weights(graph)
    x = np.random.default_rng(seed).uniform(-100, 100, len(graph))
    mean = x.mean()
    distances = [np.linalg.norm(x - mean)]
    for _ in range(30):
        x = matrix @ x
        assert x.mean() == pytest.approx(mean, abs=1e-9)
        distances.append(np.linalg.norm(x - mean))
    assert all(b <= a + 1e-9 for a, b in zip(distances, distances[1:]))
    if len(graph) > 1:
        assert distances[-1] < distances[0]
    final = np.linalg.matrix_power(matrix, 4096) @ x
    np.testing.assert_allclose(final, np.full(len(graph), mean), rtol=0, atol=1e-6)


@PROPERTY
@given(topologies())
def test_mixing_row_reproduces_each_row_of_the_metropolis_matrix(graph) -> None:
    matrix = metropolis_weights(graph)
    for i, adjacent in graph.items():
        own, others = mixing_row(len(adjacent), {str(j): len(graph[j]) for j in adjacent})
        assert own == matrix[i, i]
        assert others == {str(j): matrix[i, j] for j in adjacent}


def test_metropolis_weights_of_a_path() -> None:
    matrix = metropolis_weights({0: [1], 1: [0, 2], 2: [1]})
    third = 1 / 3
    np.testing.assert_allclose(
        matrix, [[2 * third, third, 0], [third, third, third], [0, third, 2 * third]], atol=1e-15
    )


def test_mixing_row_keeps_weight_of_absent_neighbours() -> None:
    own, others = mixing_row(3, {"a": 3})  # two of three neighbours silent this round
    assert others == {"a": 0.25}
    assert own == 0.75


@pytest.mark.parametrize(
    "adjacency",
    [
        {},
        {0: [1], 1: []},  # not symmetric
        {0: [0]},  # self-loop
        {0: [2], 1: []},  # unknown node
        {0: [1, 1], 1: [0]},  # duplicate
        {1: [2], 2: [1]},  # not numbered 0..n-1
    ],
    ids=["empty", "asymmetric", "self-loop", "unknown", "duplicate", "numbering"],
)
def test_metropolis_weights_rejects_bad_adjacency(adjacency) -> None:
    with pytest.raises(TopologyError):
        metropolis_weights(adjacency)


def test_mixing_row_names_neighbour_with_impossible_degree() -> None:
    with pytest.raises(AveragingError) as info:
        mixing_row(2, {"a": 2, "b": 0})
    assert info.value.peer == "b"


@pytest.mark.parametrize("self_degree", [1, -1, True, 2.0])
def test_mixing_row_rejects_bad_self_degree(self_degree) -> None:
    with pytest.raises(AveragingError):
        mixing_row(self_degree, {"a": 1, "b": 1})
