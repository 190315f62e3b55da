"""Choosing the implementation (normexp/norms/dispatch.py): build_norm(impl=...), norm.impl=, what a run records, and
the fused CPU op under torch.compile as one op (no graph break)."""
import pytest
import torch

from normexp.norms import NormConfig, build_norm, fast, norm_factory, reference, swap_norms
from tests.conftest import only_record, run_cli


def test_each_impl_computes_the_formula_and_says_so():
    torch.manual_seed(1)
    x = torch.randn(4, 40)
    for impl, ran in [("auto", "fused_cpu"), ("fused_cpu", "fused_cpu"), ("torch", "torch")]:
        norm = build_norm("adanorm", 40, impl=impl)
        torch.testing.assert_close(norm(x), reference.normalize(x, norm.spec))
        assert norm.impl_ran == ran and f"impl={impl}" in repr(norm)
    auto = build_norm("layernorm", 40)
    auto(x.bfloat16())  # no fused CPU kernel for bfloat16: auto falls back to torch's F.layer_norm
    assert auto.impl_ran == "torch"


def test_auto_on_cuda_keeps_the_torch_ops_formula_where_it_was_measured_faster_than_triton():
    """The H200 measurement behind dispatch.cuda_auto_takes_triton: torch ops for the variants that detach the
    variance, Triton for the other variants without a torch kernel."""
    from normexp.norms import dispatch

    takes = {name: dispatch.cuda_auto_takes_triton(build_norm(name, 64).spec)
             for name in ("adanorm", "prmsnorm", "detach_mean", "detachnorm", "detach_var")}
    assert takes == {"adanorm": True, "prmsnorm": True, "detach_mean": True, "detachnorm": False, "detach_var": False}


def test_an_impl_that_cannot_run_says_why_in_one_line():
    with pytest.raises(ValueError, match="norm impl must be one of auto, fused_cpu, triton, torch, got 'cuda'"):
        build_norm("rmsnorm", 8, impl="cuda")
    with pytest.raises(ValueError, match="norm impl must be one of"):
        norm_factory(NormConfig(name="rmsnorm", impl="fast"))
    with pytest.raises(RuntimeError, match="impl=fused_cpu cannot run on a cpu bfloat16 input") as err:
        build_norm("rmsnorm", 8, impl="fused_cpu")(torch.randn(2, 8, dtype=torch.bfloat16))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["layernorm", "detachnorm", "adanorm", "prmsnorm"])
def test_the_fused_cpu_op_compiles_as_one_graph(name):
    """The traceable pair (rownorm_fwd/rownorm_bwd with fake impls and autograd): fullgraph, the kernel's numbers."""
    assert fast.available()
    torch._dynamo.reset()
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), build_norm(name, 32, impl="fused_cpu"), torch.nn.Linear(32, 3))
    x = torch.randn(5, 16)
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    model(x).sum().backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=0)
    compiled(x).sum().backward()
    for p, w in zip(model.parameters(), want):
        torch.testing.assert_close(p.grad, w, rtol=1e-6, atol=1e-7)


def test_a_run_records_the_impl_of_its_norm_sites(tmp_path):
    run_cli("task.train_size=300", "task.valid_size=100", "task.test_size=100", "trainer.max_epochs=1",
            "trainer.progress=false", "norm=rmsnorm", "norm.impl=torch", f"out_root={tmp_path}")
    rec = only_record(tmp_path)
    assert rec["extra"]["norm_impls"] == {"torch": rec["extra"]["norm_sites"]} and rec["extra"]["norm_sites"] > 0
    assert rec["config"]["norm"]["impl"] == "torch"


def test_swap_norms_takes_impl():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
    assert swap_norms(model, "detach_mean", impl="torch") == 1
    model(torch.randn(2, 8))
    assert model[1].impl == "torch" and model[1].impl_ran == "torch"
    with pytest.raises(ValueError, match="norm impl must be one of"):
        swap_norms(model, "detach_mean", impl="gpu")


def test_constant_to_compile_marks_what_torchs_decorator_marks_without_importing_dynamo():
    """fast.constant_to_compile stands in for torch.compiler.assume_constant_result (whose `import torch._dynamo`
    cost seconds at every CLI start): same attributes; and importing the CLI does not import dynamo."""
    import subprocess
    import sys

    def ours():
        return 1

    def theirs():
        return 1

    assert vars(fast.constant_to_compile(ours)) == vars(torch.compiler.assume_constant_result(theirs)) != {}
    probe = ("import sys, normexp.cli.train, normexp.cli.table, normexp.cli.reproduce; "
             "print('torch._dynamo' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
