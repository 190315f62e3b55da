"""One job spanning 2 tasks through submitit (the SLURM launcher's tasks_per_node, here its local executor): the tasks
find each other from submitit's JobEnvironment and train as 2 DDP ranks on gloo."""
from tests.conftest import only_record, run_cli
from tests.test_distributed import RUN


def test_a_two_task_submitit_job_trains_as_two_ranks(tmp_path):
    run_cli("-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2", "hydra.launcher.timeout_min=10",
            *RUN, "task.batch_size=64", "trainer.threads=1", f"out_root={tmp_path}")
    record = only_record(tmp_path)
    assert record["status"] == "completed" and record["extra"]["world_size"] == 2
    assert record["steps"] == 8  # 1024 examples, global batch 2 x 64
