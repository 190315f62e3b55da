"""The LayerNorm and RMSNorm papers' own small experiments: per-sample norms give each example the same output alone
or in a batch (Ba et al.), LayerNorm is invariant to shifting and scaling its input while RMSNorm is invariant to
scaling only (Zhang & Sennrich, docs/papers.md §1.6), and the perm-MNIST preset runs end to end into its table."""
from __future__ import annotations

import functools

import pytest
import torch

from normexp.models.mlp import MLP, MLPConfig
from normexp.norms import VARIANTS, build_norm
from normexp.tasks.mnist.task import MnistConfig, MnistTask
from tests.conftest import only_record, run_cli

PER_SAMPLE = [v for v in VARIANTS if v != "batchnorm"]  # normalize each example with its own statistics
CENTRING = ["layernorm", "layernorm_simple", "detachnorm", "detach_mean", "detach_var", "adanorm"]
RMS = ["rmsnorm", "prmsnorm"]


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    task = MnistTask(MnistConfig(permute_pixels=True, test_size=64), MLPConfig(), seed=1)
    return task.splits["test"][0].double()


def _paper_mlp(name: str, seed: int = 0, **cfg) -> MLP:
    """Ba et al.'s 784-1000-1000-10 MLP in float64, with its norms' parameters (and BatchNorm's running statistics)
    drawn at random so that no gain of 1 or bias of 0 hides a difference."""
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # initialise in float64: a float32 w + 0.2 is not exactly a shift
    try:
        model = MLP(MLPConfig(**cfg), functools.partial(build_norm, name), 784, 10)
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():
        for norm in model.norms:
            for tensor in [*norm.parameters(), *norm.buffers()]:
                if tensor.is_floating_point():
                    tensor.copy_(torch.rand_like(tensor) + 0.5)
    return model


def _one_at_a_time(model, x):
    return torch.cat([model(x[i : i + 1]) for i in range(len(x))])


@pytest.mark.parametrize("name", VARIANTS)
def test_evaluating_one_example_at_a_time_equals_batched_evaluation(name, images):
    model = _paper_mlp(name).eval()  # BatchNorm in eval uses its running statistics: per-sample too
    with torch.no_grad():
        torch.testing.assert_close(_one_at_a_time(model, images), model(images), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_per_sample_norms_compute_the_same_in_training_and_at_test(name, images):
    """Ba et al.: "layer normalization performs exactly the same computation at training and test times"."""
    model = _paper_mlp(name)
    with torch.no_grad():
        train_batched, train_single = model.train()(images), _one_at_a_time(model, images)
        torch.testing.assert_close(train_single, train_batched, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(model.eval()(images), train_batched, rtol=1e-10, atol=1e-10)


def test_batchnorm_output_depends_on_the_batch_in_training(images):
    model = _paper_mlp("batchnorm").train()
    with torch.no_grad():
        whole = model(images)
        halves = torch.cat([model(images[:32]), model(images[32:])])
        assert (whole - halves).abs().max() > 1e-2  # the same example, other batch-mates, another output
        assert (model.eval()(images) - whole).abs().max() > 1e-2  # and train ≠ test
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        model.train()(images[:1])  # batch size 1 cannot be trained with BatchNorm


def _row_scalars(rows: int, low: float, high: float) -> torch.Tensor:
    return torch.empty(rows, 1, dtype=torch.float64).uniform_(low, high)


def _with_random_affine(norm: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in norm.parameters():
            p.copy_(torch.randn_like(p))
    return norm.double()


@pytest.mark.parametrize("name", CENTRING)
def test_centring_norms_ignore_a_shift_and_a_scale_of_their_input(name):
    torch.manual_seed(0)
    norm = _with_random_affine(build_norm(name, 64, eps=0.0))  # eps = 0: the papers' exact formulas
    x = torch.randn(16, 64, dtype=torch.float64)
    shifted_scaled = _row_scalars(16, 0.1, 10.0) * x + _row_scalars(16, -5.0, 5.0)
    torch.testing.assert_close(norm(shifted_scaled), norm(x), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", RMS)
def test_rms_norms_ignore_a_scale_but_not_a_shift(name):
    torch.manual_seed(0)
    norm = _with_random_affine(build_norm(name, 64, eps=0.0))
    x = torch.randn(16, 64, dtype=torch.float64)
    torch.testing.assert_close(norm(_row_scalars(16, 0.1, 10.0) * x), norm(x), rtol=1e-9, atol=1e-9)
    assert (norm(x + 1.0) - norm(x)).abs().max() > 0.1  # re-centring the input changes the output


@pytest.mark.parametrize("name, invariant", [("layernorm", True), ("rmsnorm", False), ("batchnorm", False),
                                             ("none", False)])
def test_only_layernorm_ignores_weights_initialised_around_a_shifted_centre(name, invariant, images):
    """The re-centring preset: every weight matrix + 0.2 adds 0.2·Σx to all units of one example. LayerNorm removes
    it (and the softmax ignores it in the logits), so the predicted distribution is unchanged; RMSNorm's is not."""
    plain = _paper_mlp(name, seed=3).train()  # batchnorm: batch statistics, as at the start of training
    shifted = _paper_mlp(name, seed=3, weight_init_mean=0.2).train()
    with torch.no_grad():
        p, q = plain(images).log_softmax(-1), shifted(images).log_softmax(-1)
    if invariant:
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-10)
    else:
        assert (q - p).abs().max() > 0.1


def test_perm_mnist_preset_runs_and_fills_its_table(tmp_path):
    run_cli("experiment=tiny/perm_mnist", "norm=batchnorm", "task.batch_size=4", "task.train_size=1000",
            "task.test_size=2000", "trainer.max_epochs=1", "trainer.threads=1", f"out_root={tmp_path}",
            "trainer.progress=false")
    record = only_record(tmp_path)
    assert (record["status"], record["task"], record["model"], record["norm"]) == ("completed", "mnist", "mlp", "batchnorm")
    assert record["config"]["task"]["permute_pixels"] is True and record["data"]["permute_pixels"] is True
    assert record["config"]["model"]["hidden"] == [256, 256] and record["extra"]["norm_sites"] == 2
    assert record["steps"] == 250  # 1,000 images in batches of 4
    assert record["test"]["error"] == pytest.approx(100 - record["test"]["accuracy"])
    assert record["test"]["error"] < 30, "1,000 shuffled-pixel images should already teach the MLP most digits"
    table = run_cli("table=ln_paper_batch_size", f"root={tmp_path}", "plots=false", module="normexp.cli.table").stdout
    row = next(line for line in table.splitlines() if line.startswith("| BatchNorm |")).split("|")
    b128, b4, b1 = (cell.strip() for cell in row[2:5])
    assert b4.startswith(f"{record['test']['error']:.2f} (n=1)") and b128.startswith("–") and b1.startswith("–")
