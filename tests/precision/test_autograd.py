"""Straight-through quantizers and precision policies applied to unmodified models."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from precision import quantize
from precision.autograd import Cast, Quantizer, format_name, quant_function, quantizer
from precision.formats import FixedFormat, FloatFormat
from precision.policy import PrecisionPolicy, apply_policy
from precision.registry import BFLOAT16, FLOAT8_E4M3FN, FLOAT8_E5M2, FLOAT16, FLOAT32, MXFP8_E4M3
from precision.rounding import RoundingMode

NARROW = [FLOAT8_E5M2, FLOAT8_E4M3FN, BFLOAT16, FixedFormat(word_bits=8, fraction_bits=4)]


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),  # in place on a quantized output must work
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
    )


def run(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    out = model(x)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("fmt", NARROW, ids=str)
def test_quantizer_rounds_forward_and_backward(fmt: FloatFormat | FixedFormat) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, generator=g, requires_grad=True)
    upstream = torch.randn(50, generator=g) * 3
    y = Quantizer(forward=fmt, backward=FLOAT8_E5M2)(x)
    y.backward(upstream)
    assert torch.equal(y.detach(), quantize(x.detach(), fmt))
    assert torch.equal(x.grad, quantize(upstream, FLOAT8_E5M2))


def test_none_sides_pass_through_and_functional_form_matches_module() -> None:
    x = torch.randn(20, requires_grad=True)
    assert quant_function(x) is x
    only_bwd = quantizer(backward=FLOAT8_E4M3FN)(x)
    assert torch.equal(only_bwd.detach(), x.detach())
    only_bwd.backward(torch.full((20,), 1.1))
    assert torch.equal(x.grad, torch.full((20,), 1.125))
    with pytest.raises(TypeError, match="parse names"):
        Quantizer(forward="e5m2")  # type: ignore[arg-type]


def test_backward_rounding_is_separate_and_stochastic_uses_generator() -> None:
    x = torch.full((4000,), 1.0, requires_grad=True)
    q = quantizer(
        forward=FLOAT32,
        backward=FLOAT8_E5M2,
        backward_rounding=RoundingMode.STOCHASTIC,
        generator=torch.Generator().manual_seed(3),
    )
    q(x).backward(torch.full((4000,), 1.1))
    values = set(x.grad.unique().tolist())
    assert values == {1.0, 1.25}
    assert abs(x.grad.mean().item() - 1.1) < 0.02  # unbiased


def test_float32_policy_is_bit_identical() -> None:
    x = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    ref_out, ref_grads = run(small_cnn(), x)
    model = small_cnn()
    f32 = Cast(FLOAT32)
    policy = PrecisionPolicy(
        layers=("Conv2d", "Linear", "BatchNorm2d"), weight=f32, activation=f32, error=f32, input=f32
    )
    with apply_policy(model, policy) as handle:
        assert list(handle) == ["0", "1", "4"]
        out, _ = run(model, x)
    grads = [p.grad for p in model.parameters()]  # the original parameters, back in place
    assert torch.equal(out, ref_out)
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("fmt", [FLOAT8_E5M2, FLOAT8_E4M3FN, MXFP8_E4M3], ids=str)
def test_narrow_policy_tensors_are_representable(fmt: FloatFormat) -> None:
    model = small_cnn()
    cast = Cast(fmt)
    policy = PrecisionPolicy(
        layers=("Conv2d", "Linear"), weight=cast, activation=cast, error=cast, input=cast
    )
    seen: dict[str, torch.Tensor] = {}
    conv, lin = model[0], model[4]

    # Registered before the policy, this hook sees the raw output; the gradient reaching
    # it is the error after the policy's rounding.
    def capture_error(_m: nn.Module, _a: object, out: torch.Tensor) -> None:
        out.register_hook(lambda g: seen.__setitem__("error", g))

    conv.register_forward_hook(capture_error)
    handle = apply_policy(model, policy)
    conv.register_forward_pre_hook(lambda m, a: seen.__setitem__("input", a[0]))
    lin.register_forward_hook(lambda m, a, out: seen.__setitem__("output", out))
    seen["weight"] = conv.weight
    x = torch.randn(4, 3, 6, 6) * 40
    run(model, x)
    for name, t in seen.items():
        t = t.detach()
        assert torch.equal(quantize(t, fmt), t), name
    assert not torch.equal(quantize(x, fmt), x)  # the input really was rounded
    handle.remove()
    assert not any(isinstance(m, Quantizer) for m in model.modules())
    assert set(model.state_dict()) == set(small_cnn().state_dict())


@pytest.mark.parametrize("fmt", [FLOAT8_E5M2, BFLOAT16, FLOAT16], ids=str)
def test_weight_gradient_is_built_from_the_quantized_error(fmt: FloatFormat) -> None:
    g = torch.Generator().manual_seed(5)
    lin = nn.Linear(6, 4)
    x = torch.randn(10, 6, generator=g)
    upstream = torch.randn(10, 4, generator=g)
    with apply_policy(lin, PrecisionPolicy(layers=("Linear",), error=Cast(fmt))):
        lin(x).backward(upstream)
    gq = quantize(upstream, fmt)
    torch.testing.assert_close(lin.weight.grad, gq.T @ x, rtol=0, atol=1e-6)
    torch.testing.assert_close(lin.bias.grad, gq.sum(0), rtol=0, atol=1e-6)


def test_removing_restores_float_weights_and_outputs() -> None:
    model = small_cnn()
    x = torch.randn(2, 3, 6, 6)
    before = model(x).detach()
    w = model[0].weight.detach().clone()
    handle = apply_policy(
        model, PrecisionPolicy(weight=Cast(FLOAT8_E5M2), activation=Cast(FLOAT8_E5M2))
    )
    assert not torch.equal(model(x).detach(), before)
    handle.remove()
    assert torch.equal(model(x).detach(), before)
    assert torch.equal(model[0].weight.detach(), w)
    assert isinstance(model[0].weight, nn.Parameter)


def test_policy_dict_round_trip_through_json() -> None:
    policy = PrecisionPolicy(
        layers=("Conv2d", "BatchNorm2d"),
        weight=Cast(BFLOAT16),
        activation=Cast(FLOAT8_E4M3FN),
        error=Cast(FLOAT8_E5M2, RoundingMode.STOCHASTIC),
        input=Cast(FixedFormat(word_bits=8, fraction_bits=4)),
    )
    data = json.loads(json.dumps(policy.to_dict()))
    assert data["error"] == {"format": "float8_e5m2", "rounding": "stochastic"}
    assert PrecisionPolicy.from_dict(data) == policy
    assert PrecisionPolicy.from_dict({"activation": {"format": "e3m4"}}).activation == Cast(
        FloatFormat(exponent_bits=3, mantissa_bits=4)
    )
    with pytest.raises(ValueError, match="unknown"):
        PrecisionPolicy.from_dict({"activations": None})
    with pytest.raises(TypeError, match="Cast"):
        PrecisionPolicy(weight=BFLOAT16)  # type: ignore[arg-type]
    assert format_name(FloatFormat(exponent_bits=4, mantissa_bits=2)) == "e4m2"


def test_already_parametrized_weight_is_refused_and_nothing_is_left_behind() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.utils.parametrizations.weight_norm(nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="already parametrized"):
        apply_policy(model, PrecisionPolicy(weight=Cast(BFLOAT16)))
    assert not torch.nn.utils.parametrize.is_parametrized(model[0])


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
def test_policy_composes_with_torch_compile() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    cast = Cast(FLOAT8_E4M3FN)
    x = torch.randn(4, 8)
    with apply_policy(model, PrecisionPolicy(layers=("Linear",), activation=cast, error=cast)):
        eager = model(x)
        compiled = torch.compile(model, backend="aot_eager")(x)
    assert torch.equal(eager, compiled)
    assert torch.equal(quantize(compiled.detach(), FLOAT8_E4M3FN), compiled.detach())


def test_in_place_rounding_of_layer_outputs_matches_out_of_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Conv/BN/Linear outputs are rounded in place; results and gradients are unchanged."""
    import precision.policy as policy_module

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(inplace=True), torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 10),
        )  # fmt: skip
        x = torch.randn(4, 3, 8, 8)
        policy = PrecisionPolicy(
            layers=("Conv2d", "BatchNorm2d", "Linear"),
            activation=Cast(FLOAT8_E4M3FN), error=Cast(FLOAT8_E5M2),
        )  # fmt: skip
        with apply_policy(model, policy):
            out = model(x)
            out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    in_place_out, in_place_grads = run()
    monkeypatch.setattr(policy_module, "_FRESH_OUTPUT", ())
    copy_out, copy_grads = run()
    assert torch.equal(in_place_out, copy_out)
    assert all(torch.equal(a, b) for a, b in zip(in_place_grads, copy_grads, strict=True))
