"""`robustfair sweep --launcher slurm|submitit-local`: jobs through submitit (engine/slurm.py).

Without a cluster, two things are tested: the sbatch scripts submitit writes for the grid
(a fake `sbatch` on PATH records them: partition, GPUs, time limit, and the hot start's
`afterok` dependency on its source's job), and a real grid run by submitit's local
executor (a process per job): two presets x two seeds, the FRL fine-tune of each seed
starting after its PGD-AT source has finished. Skips when submitit is not installed.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import stat

import pytest
import yaml

pytest.importorskip("submitit", reason="submitit not installed (pip install 'robustfair[slurm]')")

from robustfair.cli import main  # noqa: E402
from robustfair.engine import slurm  # noqa: E402
from robustfair.engine.slurm import RunJob, SlurmOptions, executor_parameters, launch_sweep, parse_extra  # noqa: E402
from robustfair.errors import ConfigError  # noqa: E402

TINY = [
    "data.train_per_class=8",
    "data.test_per_class=3",
    "data.val_per_class=2",
    "train.epochs=1",
    "train.batch_size=32",
    "train.val_attack=none",
    "method.steps=1",
    "eval.attack=pgd10",
    "eval.sanity_checks=false",
]
PRESETS = ["digits_pgd_at", "digits_frl_rwrm"]


def _quiet(_line: str) -> None:
    pass


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """`srun` and `sbatch` on PATH: sbatch copies each script to <record>/<id>.sh and answers
    like Slurm ("Submitted batch job <id>", ids from 1001)."""
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch_record"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        "#!/bin/sh\n"
        f'n=$(ls "{record}" | wc -l)\n'
        "id=$((1001 + n))\n"
        f'cp "$1" "{record}/$id.sh"\n'
        'echo "Submitted batch job $id"\n'
    )
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def _sbatch_flags(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", script, re.M))


def test_slurm_jobs_chain_each_fine_tune_onto_its_source_job(tmp_path, fake_slurm):
    options = SlurmOptions(
        partition="gpu",
        gpus_per_node=2,
        timeout_min=90,
        cpus_per_task=8,
        mem_gb=64,
        account="lab",
        qos="normal",
        setup=("module load cuda",),
        extra={"gres": "gpu:a100:2"},
    )
    outcome = launch_sweep(PRESETS, [0, 1], tmp_path / "out", TINY, options=options, cluster="slurm", log=_quiet)
    out = (tmp_path / "out").resolve()
    ids = {run_dir.relative_to(out).as_posix(): str(job.job_id) for run_dir, job in outcome.jobs.items()}
    assert ids == {
        "digits_pgd_at/seed0": "1001",
        "digits_pgd_at/seed1": "1002",
        "digits_frl_rwrm/seed0": "1003",
        "digits_frl_rwrm/seed1": "1004",
    }
    flags = {job_id: _sbatch_flags((fake_slurm / f"{job_id}.sh").read_text()) for job_id in ids.values()}
    for job_id, run in zip(ids.values(), ids):
        f = flags[job_id]
        assert f["partition"] == "gpu" and f["gpus-per-node"] == "2" and f["ntasks-per-node"] == "2"
        assert f["time"] == "90" and f["cpus-per-task"] == "8" and f["mem"] == "64GB"
        assert f["account"] == "lab" and f["qos"] == "normal" and f["gres"] == "gpu:a100:2"
        preset, seed = run.split("/")
        assert f["job-name"] == f"robustfair-{preset}-{seed}"
        assert f["output"] == str(out / "slurm" / "%j" / "%j_0_log.out")  # Slurm puts the job id in
    assert "dependency" not in flags["1001"] and "dependency" not in flags["1002"]
    assert flags["1003"]["dependency"] == "afterok:1001" and flags["1004"]["dependency"] == "afterok:1002"
    assert flags["1003"]["kill-on-invalid-dep"] == "yes"
    assert "module load cuda" in (fake_slurm / "1001.sh").read_text()
    # Each job carries its run: the FRL job of seed 1 starts from PGD-AT seed 1's run directory.
    job = pickle.loads((out / "slurm" / "1004" / "1004_submitted.pkl").read_bytes()).function
    assert isinstance(job, RunJob) and job.run_dir == str(out / "digits_frl_rwrm" / "seed1")
    assert f"init_from={out / 'digits_pgd_at' / 'seed1'}" in job.overrides and "seed=1" in job.overrides
    assert job.source_dir == str(out / "digits_pgd_at" / "seed1")
    assert not (out / "slurm" / "%j").exists()


def test_slurm_skips_finished_runs_and_depends_only_on_unfinished_sources(tmp_path, fake_slurm):
    out = (tmp_path / "out").resolve()
    finished = out / "digits_pgd_at" / "seed0"
    finished.mkdir(parents=True)
    (finished / "results.json").write_text("{}")
    outcome = launch_sweep(PRESETS, [0, 1], out, TINY, options=SlurmOptions(gpus_per_node=0), log=_quiet)
    assert outcome.skipped == [finished]
    jobs = {run_dir.relative_to(out).as_posix(): str(job.job_id) for run_dir, job in outcome.jobs.items()}
    assert list(jobs) == ["digits_pgd_at/seed1", "digits_frl_rwrm/seed0", "digits_frl_rwrm/seed1"]
    frl0 = _sbatch_flags((fake_slurm / f"{jobs['digits_frl_rwrm/seed0']}.sh").read_text())
    frl1 = _sbatch_flags((fake_slurm / f"{jobs['digits_frl_rwrm/seed1']}.sh").read_text())
    assert "dependency" not in frl0  # its source has finished already
    assert frl1["dependency"] == f"afterok:{jobs['digits_pgd_at/seed1']}"
    assert "gpus-per-node" not in frl0 or frl0["gpus-per-node"] == "0"


def test_cli_submits_and_prints_how_to_get_the_tables(tmp_path, fake_slurm, capsys):
    out = tmp_path / "grid"
    code = main(
        [
            "sweep",
            *PRESETS,
            *TINY,
            "--seeds",
            "2",
            "--out",
            str(out),
            "--launcher",
            "slurm",
            "--slurm.partition",
            "gpu",
            "--slurm.timeout",
            "30",
            "--slurm.extra",
            "mail-type=END",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    assert "submitted 4 jobs (1001 1002 1003 1004)" in err
    assert "(starts after job 1001 succeeds)" in err
    assert f"when they have finished: robustfair sweep {' '.join(PRESETS)}" in err and "--table-only" in err
    assert _sbatch_flags((fake_slurm / "1003.sh").read_text())["mail-type"] == "END"


def test_bad_launcher_input_is_one_line_before_anything_is_submitted(tmp_path, fake_slurm, capsys):
    out = ["--out", str(tmp_path / "g")]
    cases = [
        (
            ["digits_pgd_at", *out, "--launcher", "slurm", "--slurm.timeout", "0"],
            "--slurm.timeout: 0 must be an integer >= 1",
        ),
        (
            ["digits_pgd_at", *out, "--launcher", "slurm", "--slurm.extra", "gres"],
            "--slurm.extra 'gres': expected KEY=VALUE",
        ),
        (["digits_pgd_at", *out, "--slurm.partition", "gpu"], "--slurm.partition: only with --launcher slurm"),
        (["digits_pgd_at", "train.epochz=1", *out, "--launcher", "slurm"], "epochz"),
    ]
    for argv, message in cases:
        assert main(["sweep", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert list(fake_slurm.iterdir()) == []


def test_a_refused_submission_is_one_line(tmp_path, fake_slurm, capsys):
    (fake_slurm.parent / "bin" / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n"
    )
    assert (
        main(
            [
                "sweep",
                "digits_pgd_at",
                *TINY,
                "--out",
                str(tmp_path / "g"),
                "--launcher",
                "slurm",
                "--slurm.partition",
                "nope",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "robustfair: error:" in err and "invalid partition specified: nope" in err


def test_no_slurm_here_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    assert main(["sweep", "digits_pgd_at", *TINY, "--out", str(tmp_path / "g"), "--launcher", "slurm"]) == 2
    assert "submit from a Slurm login node" in capsys.readouterr().err


def test_missing_submitit_is_one_line(tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "submitit", None)
    assert main(["sweep", "digits_pgd_at", "--out", str(tmp_path / "g"), "--launcher", "slurm"]) == 2
    assert "pip install 'robustfair[slurm]'" in capsys.readouterr().err


def test_executor_parameters_and_extra_options():
    params = executor_parameters(SlurmOptions(gpus_per_node=0), name="x", after="7")
    assert params["tasks_per_node"] == 1 and params["gpus_per_node"] == 0
    assert params["slurm_additional_parameters"] == {"dependency": "afterok:7", "kill-on-invalid-dep": "yes"}
    assert "slurm_partition" not in params and "mem_gb" not in params
    assert parse_extra(["--gres=gpu:1", "mail-user=a@b.c"]) == {"gres": "gpu:1", "mail-user": "a@b.c"}
    with pytest.raises(ConfigError, match="gpus-per-node"):
        SlurmOptions(gpus_per_node=-1)


def test_run_job_is_requeued_as_itself():
    job = RunJob("digits_pgd_at", ["seed=0"], "/tmp/x", None)
    again = pickle.loads(pickle.dumps(job))
    delayed = again.checkpoint()
    assert delayed.function is again and delayed.args == ()


def test_threads_travel_with_each_job_and_are_set_in_it(tmp_path, fake_slurm, monkeypatch):
    import torch

    from robustfair.engine import trainer

    out = (tmp_path / "out").resolve()
    outcome = launch_sweep(PRESETS[:1], [0], out, TINY, options=SlurmOptions(gpus_per_node=0), threads=3, log=_quiet)
    (job_id,) = [str(job.job_id) for job in outcome.jobs.values()]
    job = pickle.loads((out / "slurm" / job_id / f"{job_id}_submitted.pkl").read_bytes()).function
    assert job.threads == 3
    seen = []
    monkeypatch.setattr(trainer, "train", lambda *a, **k: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        job()
    finally:
        torch.set_num_threads(before)
    assert seen == [3]
    unset = RunJob("digits_pgd_at", TINY, tmp_path / "other", None)
    assert unset.threads is None


def test_a_job_of_several_tasks_exports_what_torch_distributed_reads(tmp_path):
    import submitit

    assert slurm._export_distributed_environment() == {}  # outside a job: nothing to set
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="local")
    executor.update_parameters(timeout_min=2, tasks_per_node=2, gpus_per_node=0)
    job = executor.submit(slurm._export_distributed_environment)
    envs = sorted(job.results(), key=lambda e: e["RANK"])
    assert [(e["RANK"], e["WORLD_SIZE"], e["LOCAL_RANK"]) for e in envs] == [("0", "2", "0"), ("1", "2", "1")]
    assert envs[0]["MASTER_ADDR"] and envs[0]["MASTER_PORT"] == envs[1]["MASTER_PORT"]


@pytest.mark.slow
def test_submitit_local_two_presets_two_seeds_fine_tune_after_its_source(tmp_path, capsys):
    out = tmp_path / "grid"
    code = main(
        [
            "sweep",
            *PRESETS,
            *TINY,
            "--seeds",
            "2",
            "--out",
            str(out),
            "--launcher",
            "submitit-local",
            "--slurm.gpus-per-node",
            "0",
            "--slurm.timeout",
            "10",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "4 jobs finished, 0 skipped, 0 failed" in captured.err
    for seed in (0, 1):
        source, tuned = out / "digits_pgd_at" / f"seed{seed}", out / "digits_frl_rwrm" / f"seed{seed}"
        for run in (source, tuned):
            results = json.loads((run / "results.json").read_text())
            assert results["run"]["seed"] == seed and results["run"]["epochs"] == 1
        config = yaml.safe_load((tuned / "config.yaml").read_text())
        assert config["init_from"] == str(source.resolve())
        # The fine-tune started (meta.json) after its source had finished (results.json).
        assert (tuned / "meta.json").stat().st_mtime_ns >= (source / "results.json").stat().st_mtime_ns
    logs = sorted((out / "slurm").glob("*/*_0_log.err"))
    assert len(logs) == 4 and any("initialised weights from" in log.read_text() for log in logs)
    assert "| digits_frl_rwrm | 2 |" in captured.out  # the sweep's table over the finished runs
    # Everything is finished: a second call submits nothing.
    assert (
        main(
            [
                "sweep",
                *PRESETS,
                *TINY,
                "--seeds",
                "2",
                "--out",
                str(out),
                "--launcher",
                "submitit-local",
                "--slurm.gpus-per-node",
                "0",
            ]
        )
        == 0
    )
    assert "0 jobs finished, 4 skipped" in capsys.readouterr().err
