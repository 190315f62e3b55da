"""The batchnorm variant under DDP normalizes over the global batch: 2 gloo ranks × batch B equal 1 process × 2B."""
from tests.test_distributed import RUN, run_ddp
from tests.conftest import only_record, run_cli


def test_two_ranks_with_batchnorm_match_one_process(tmp_path):
    run_cli(*RUN, "norm=batchnorm", "task.batch_size=128", f"hydra.run.dir={tmp_path / 'single'}")
    run_ddp("norm=batchnorm", "task.batch_size=64", f"hydra.run.dir={tmp_path / 'ddp'}", port=29519)
    single, ddp = only_record(tmp_path / "single"), only_record(tmp_path / "ddp")
    assert ddp["extra"]["world_size"] == 2 and ddp["steps"] == single["steps"] == 8
    for split in ("best_valid", "test"):
        assert abs(ddp[split]["loss"] - single[split]["loss"]) < 1e-3 * single[split]["loss"], split
