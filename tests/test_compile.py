"""trainer.compile=true: every norm variant traces into one graph (no graph break: under compilation the norms take
their torch formula, not the fused CPU op), and the trainer trains through the compiled model."""
import pytest
import torch
from torch import nn

from normexp.norms import build_norm
from tests.test_trainer import make

NORMS = ["none", "layernorm", "layernorm_simple", "rmsnorm", "prmsnorm", "detachnorm", "detach_mean", "detach_var",
         "adanorm", "batchnorm"]


def test_every_norm_compiles_to_one_graph_with_eager_results():
    """backend aot_eager: dynamo's tracing and AOT autograd as inductor gets them, without its C++ build per norm
    (tens of seconds each on 2 cores); fullgraph=True fails on any graph break."""
    for name in NORMS:
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), build_norm(name, 32), nn.ReLU(), nn.Linear(32, 1))
        x = torch.randn(8, 5, 16)
        eager = model(x)
        eager.square().sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
        compiled.square().sum().backward()
        # eager CPU float32 runs the fused kernel, compiled the torch formula: equal up to rounding
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5, msg=name)
        for p, g in zip(model.parameters(), grads):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-5 * float(g.abs().max()), msg=name)


@pytest.mark.parametrize("norm", ["adanorm"])
def test_trainer_compile_true_trains(tmp_path, norm):
    torch._dynamo.reset()
    trainer = make(tmp_path, norm=norm, compile=True, max_epochs=1, threads=1)
    record = trainer.fit()
    assert record.status == "completed" and record.extra["compiled"] is True
    assert hasattr(trainer.train_model, "_orig_mod")  # the loss ran through the compiled module
    assert record.curves["valid"][-1]["loss"] < 10
