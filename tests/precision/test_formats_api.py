"""Format definitions, the registry, input handling and error messages."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

from precision import (
    FixedFormat,
    FloatFormat,
    Overflow,
    RoundingMode,
    Specials,
    quantize,
)
from precision.registry import formats, from_bits, names, parse, register

ML = {
    "bfloat16": ml_dtypes.bfloat16,
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "float8_e5m2": ml_dtypes.float8_e5m2,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e4m3": ml_dtypes.float8_e4m3,
    "float8_e3m4": ml_dtypes.float8_e3m4,
    "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
    "float8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
    "float8_e4m3b11fnuz": ml_dtypes.float8_e4m3b11fnuz,
    "float6_e3m2fn": ml_dtypes.float6_e3m2fn,
    "float6_e2m3fn": ml_dtypes.float6_e2m3fn,
    "float4_e2m1fn": ml_dtypes.float4_e2m1fn,
}


@pytest.mark.parametrize("name", list(ML))
def test_derived_constants_match_finfo(name: str) -> None:
    fmt = parse(name)
    assert isinstance(fmt, FloatFormat)
    info = ml_dtypes.finfo(ML[name])
    assert fmt.max_finite == float(info.max)
    assert fmt.smallest_normal == float(info.smallest_normal)
    assert fmt.smallest_subnormal == float(info.smallest_subnormal)
    assert fmt.epsilon == float(info.eps)
    assert fmt.total_bits == info.bits
    assert fmt.has_inf == bool(np.isinf(np.array(np.inf).astype(ML[name])))


def test_tf32_and_carriers() -> None:
    tf32 = parse("tf32")
    assert isinstance(tf32, FloatFormat)
    assert (tf32.exponent_bits, tf32.mantissa_bits, tf32.total_bits) == (8, 10, 19)
    assert tf32.carrier == "float32"
    assert parse("e11m30").carrier == "float64"
    assert parse("e8m23").carrier == "float32"


@pytest.mark.parametrize(
    ("n", "spelled"),
    [
        (4, "e3m0"),
        (8, "float8_e5m2"),
        (16, "float16"),
        (32, "float32"),
        (64, "float64"),
        (19, "tf32"),
        (6, "e4m1"),
    ],
)
def test_from_bits(n: int, spelled: str) -> None:
    fmt = from_bits(n)
    assert fmt.total_bits == n
    assert str(fmt) == spelled


@pytest.mark.parametrize("n", range(3, 65))
def test_from_bits_every_width_is_valid(n: int) -> None:
    assert from_bits(n).total_bits == n


@pytest.mark.parametrize("fmt", [f for f in formats() if isinstance(f, FloatFormat)], ids=str)
def test_spelling_round_trips(fmt: FloatFormat) -> None:
    assert parse(fmt.spelling) == fmt
    assert parse(str(fmt)) == fmt


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exponent_bits": 0, "mantissa_bits": 3}, "exponent_bits=0: must be an integer in 1..11"),
        ({"exponent_bits": 12, "mantissa_bits": 3}, "1..11"),
        (
            {"exponent_bits": 5, "mantissa_bits": 53},
            "mantissa_bits=53: must be an integer in 0..52",
        ),
        ({"exponent_bits": 1, "mantissa_bits": 3}, "no normal numbers"),
        (
            {
                "exponent_bits": 4,
                "mantissa_bits": 3,
                "specials": Specials.FN,
                "overflow": Overflow.INF,
            },
            "needs a format with infinities",
        ),
        (
            {
                "exponent_bits": 3,
                "mantissa_bits": 2,
                "specials": Specials.FINITE,
                "overflow": Overflow.NAN,
            },
            "needs a format with NaN",
        ),
        ({"exponent_bits": 11, "mantissa_bits": 52, "bias": 2000}, "leave float64's"),
    ],
)
def test_impossible_formats_raise_with_explanation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FloatFormat(**kwargs)  # type: ignore[arg-type]


def test_fixed_format_validation_and_range() -> None:
    f = FixedFormat(word_bits=8, fraction_bits=4)
    assert (f.min_value, f.max_value, f.resolution) == (-8.0, 7.9375, 0.0625)
    with pytest.raises(ValueError, match=r"word_bits=1: must be an integer in 2\.\.53"):
        FixedFormat(word_bits=1, fraction_bits=0)


def test_parse_errors_and_duplicates() -> None:
    with pytest.raises(ValueError, match="unknown; use a name"):
        parse("float7")
    with pytest.raises(ValueError, match="already registered"):
        register(FloatFormat(exponent_bits=5, mantissa_bits=2, name="float8_e5m2"))
    assert "bfloat16" in names()
    assert parse("BF16") is parse("bfloat16")
    with pytest.raises(ValueError, match="unknown rounding mode"):
        RoundingMode.parse("nearest-odd")


def test_input_types_shapes_and_strides() -> None:
    x = torch.randn(6, 5, 4)
    want = x.to(torch.bfloat16).float()
    nc = x.transpose(0, 2)
    got = quantize(nc, "bfloat16")
    assert got.shape == nc.shape and torch.equal(got, want.transpose(0, 2))
    assert torch.equal(quantize(x[:, ::2], "bfloat16"), want[:, ::2])
    assert quantize(torch.empty(0, 3), "e3m0").shape == (0, 3)
    assert quantize(torch.tensor(1.3), "e3m0").item() == 1.0
    arr = np.array([[1.3, 2.9]], dtype=np.float32)
    out = quantize(arr, "e3m0")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.tolist() == [[1.0, 2.0]]
    assert np.array_equal(arr, np.array([[1.3, 2.9]], dtype=np.float32))  # input untouched
    g = torch.randn(10, requires_grad=True)
    assert not quantize(g, "bfloat16").requires_grad


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="float32 cannot hold exactly; pass a float64 input"):
        quantize(torch.ones(3), "e11m30")
    with pytest.raises(ValueError, match="float16 cannot hold"):
        quantize(torch.ones(3, dtype=torch.float16), "bfloat16")
    with pytest.raises(TypeError, match=r"dtype torch\.int32 unsupported"):
        quantize(torch.ones(3, dtype=torch.int32), "bfloat16")
    with pytest.raises(TypeError, match=r"expected a torch\.Tensor"):
        quantize([1.0], "bfloat16")  # type: ignore[call-overload]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.gpu
def test_cuda_matches_cpu_for_every_mode() -> None:
    x = torch.randn(1 << 20)
    for mode in RoundingMode:
        g = torch.Generator().manual_seed(0)
        cpu = quantize(x, "e4m3", mode, generator=g)
        g = torch.Generator().manual_seed(0)
        gpu = quantize(x.cuda(), "e4m3", mode, generator=g).cpu()
        assert torch.equal(cpu, gpu), mode


@pytest.mark.parametrize("name", ["bfloat16", "e3m0", "fixed8.4", "e11m30", "mxfp4_e2m1", "e8m0"])
@pytest.mark.parametrize(
    "mode", [RoundingMode.NEAREST_EVEN, RoundingMode.STOCHASTIC], ids=lambda m: m.value
)
def test_in_place_equals_out_of_place(name: str, mode: RoundingMode, backend: str) -> None:
    dt = torch.float64 if name == "e11m30" else torch.float32
    x = torch.randn(40_000, dtype=dt) * 4
    want = quantize(x, name, mode, generator=torch.Generator().manual_seed(3))
    y = x.clone()
    out = quantize(y, name, mode, out=y, generator=torch.Generator().manual_seed(3))
    assert out is y
    assert torch.equal(y.nan_to_num(7.0), want.nan_to_num(7.0))
    strided = x.clone().view(200, 200).t()  # not contiguous: rounded out of place, copied back
    want_t = quantize(strided, name, mode, generator=torch.Generator().manual_seed(3))
    quantize(strided, name, mode, out=strided, generator=torch.Generator().manual_seed(3))
    assert torch.equal(strided.nan_to_num(7.0), want_t.nan_to_num(7.0))
    if mode is RoundingMode.NEAREST_EVEN and not name.startswith("mx"):  # elementwise
        assert torch.equal(strided.t().reshape(-1).nan_to_num(7.0), want.nan_to_num(7.0))
