"""8-bit quantised transport (``encode(q8=True)``): close, a quarter of the bytes, validated."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash

from gossip.codec import decode, encode
from gossip.quantize import quantize_q8
from gossip.errors import CodecError
from tests.unit.test_codec import _message, _reason, _split, _join, _with_header


def _weights(seed: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"w{i}": rng.standard_normal((64, 64)).astype(np.float32) for i in range(4)}


def test_q8_is_within_half_a_step_and_about_a_quarter_of_the_size() -> None:
    weights = _weights()
    full, small = encode(_message(**weights)), encode(_message(**weights), q8=True)
    out = decode(small)
    assert len(small) < 0.27 * len(full)
    for name, arr in weights.items():
        step = np.abs(arr).max() / 127
        assert out.tensors[name].dtype == np.float32
        assert np.abs(out.tensors[name] - arr).max() <= step / 2 + 1e-7
        assert not np.array_equal(out.tensors[name], arr)


def test_q8_leaves_other_dtypes_exact_and_zeros_stay_zero() -> None:
    msg = _message(i64=np.arange(5), f64=np.linspace(0, 1, 3), zeros=np.zeros(4, np.float32))
    out = decode(encode(msg, q8=True))
    np.testing.assert_array_equal(out.tensors["i64"], np.arange(5))
    np.testing.assert_array_equal(out.tensors["f64"], np.linspace(0, 1, 3))
    np.testing.assert_array_equal(out.tensors["zeros"], np.zeros(4, np.float32))


def test_quantize_keeps_the_peak_exactly() -> None:
    q, scale = quantize_q8(np.array([-2.0, 0.5, 1.0], np.float32))
    assert q.tolist() == [-127, 32, 64] and scale * 127 == pytest.approx(2.0)


def test_a_tensor_with_nan_cannot_be_quantised() -> None:
    with pytest.raises(CodecError) as info:
        encode(_message(w=np.array([1.0, np.nan], np.float32)), q8=True)
    assert info.value.reason == "bad-header"


@pytest.mark.parametrize("scales", [[-1.0], [float("nan")], [float("inf")], ["1"], [1], [], [0.1, 0.1], 0.1])
def test_bad_scales_are_rejected(scales) -> None:
    data = bytes(encode(_message(w=np.ones(8, np.float32)), q8=True))
    assert _reason(_with_header(data, q8=scales)) == "bad-header"


def test_a_scale_on_a_tensor_that_is_not_float32_is_rejected() -> None:
    data = bytes(encode(_message(w=np.ones(8, np.float32)), q8=True))
    assert _reason(_with_header(data, dtypes=["|i1"])) == "bad-header"


def test_minus_128_is_rejected() -> None:
    data = bytes(encode(_message(w=np.ones(8, np.float32)), q8=True))
    header, body = _split(data)
    body = bytearray(body)
    body[0] = 0x80  # -128
    header["checksum"] = xxhash.xxh3_64_intdigest(bytes(body))
    assert _reason(_join(header, bytes(body))) == "bad-header"


def test_unknown_keys_are_still_rejected() -> None:
    data = bytes(encode(_message(w=np.ones(8, np.float32)), q8=True))
    assert _reason(_with_header(data, q9=[None])) == "bad-header"


def test_a_huge_scale_decodes_to_values_validation_refuses() -> None:
    # the codec only checks the scale is finite; the receiver's value bound does the rest
    data = bytes(encode(_message(w=np.ones(8, np.float32)), q8=True))
    out = decode(_with_header(data, q8=[1e30]))
    assert np.abs(out.tensors["w"]).max() > 1e4
