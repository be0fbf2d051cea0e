"""A sweep's runs as Slurm jobs through submitit (optional: `pip install 'robustfair[slurm]'`).

`robustfair sweep PRESET ... --launcher slurm --slurm.partition P --slurm.gpus-per-node N
--slurm.timeout MIN`, typed on a login node, submits one job per unfinished run of the grid
(`engine.sweep.plan_sweep`: same layout `<out>/<preset>/seed<k>`, same overrides) and
returns; `--wait` keeps it running until the jobs end and then prints the tables, like the
local launcher. `robustfair sweep ... --table-only` prints them later.

- Finished runs (results.json) are not submitted; an interrupted run's job resumes it from
  its last checkpoint, as the local launcher does.
- Hot starts: a run that fine-tunes another run of the grid (FRL, FAAL: `init_from`) is
  submitted with `--dependency=afterok:<source job>` and `--kill-on-invalid-dep=yes`, so Slurm
  starts it only after its source finished successfully and cancels it if the source fails.
  A source that finished earlier needs no dependency.
- Timeouts and preemption: the job callable is checkpointable (submitit requeues it, up to
  submitit's limit of 3 timeouts by default); the requeued job resumes from
  `checkpoints/last.safetensors`, losing at most the epoch it was in.
- Multi-GPU runs inside one job use DDP as `torchrun` does: the job gets
  `--ntasks-per-node = --slurm.gpus-per-node` tasks, one process per GPU, and each task
  exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT from Slurm's job
  environment (`submitit.helpers.TorchDistributedEnvironment`) before training, which is
  what `engine.distributed.init_distributed` reads. `--slurm.nodes` > 1 spans nodes.
- Logs: submitit writes each job's sbatch script, stdout and stderr to
  `<folder>/<job id>/` (default folder `<out>/slurm`); the run's epoch lines go to stderr.

`cluster="local"` runs the same jobs with submitit's local executor (a process per job on
this machine, `--launcher submitit-local`); it has no job dependencies, so a hot start is
submitted only after its source's job has finished. The tests use it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustfair.errors import ConfigError, RobustfairError

CLUSTERS = ("slurm", "local")


class SubmissionError(ConfigError):
    """The cluster refused a job (sbatch failed)."""


@dataclass(frozen=True)
class SlurmOptions:
    """What each job asks Slurm for (the `--slurm.*` options of `robustfair sweep`).

    gpus_per_node: GPUs per node and job, also the number of tasks (DDP processes) per node
    (0: a CPU job with one task); timeout_min: the job's time limit in minutes; extra:
    further sbatch options passed through verbatim ({"gres": "gpu:a100:1"} -> #SBATCH
    --gres=gpu:a100:1); setup: shell lines run in the sbatch script before the job
    (e.g. "module load cuda"); folder: where submitit writes scripts and logs.
    """

    partition: str | None = None
    gpus_per_node: int = 1
    timeout_min: int = 240
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    nodes: int = 1
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    job_name: str = "robustfair"
    folder: str | None = None
    setup: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, low in (("gpus_per_node", 0), ("timeout_min", 1), ("nodes", 1), ("cpus_per_task", 1), ("mem_gb", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                flag = "--slurm." + name.replace("_min", "").replace("_", "-")
                raise ConfigError(f"{flag}: {value!r} must be an integer >= {low}")
        if not self.job_name.strip():
            raise ConfigError("--slurm.job-name: must not be empty")

    @property
    def tasks_per_node(self) -> int:
        """One task (training process, DDP rank) per GPU; one for a CPU job."""
        return max(1, self.gpus_per_node)


def parse_extra(items: Sequence[str]) -> dict[str, str]:
    """['gres=gpu:1', 'mail-type=END'] -> {'gres': 'gpu:1', 'mail-type': 'END'}; ConfigError otherwise."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(
                f"--slurm.extra {item!r}: expected KEY=VALUE, an sbatch option without its "
                "leading dashes (for example gres=gpu:a100:1)"
            )
        out[key] = value.strip()
    return out


def executor_parameters(options: SlurmOptions, *, name: str, after: str | None = None) -> dict[str, Any]:
    """Keyword arguments of `submitit.AutoExecutor.update_parameters` for one job.

    Generic keys apply to every submitit cluster; `slurm_*` keys only to Slurm (the local
    executor ignores them). `after`: the job id this job waits for (afterok).
    """
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": options.timeout_min,
        "nodes": options.nodes,
        "gpus_per_node": options.gpus_per_node,
        "tasks_per_node": options.tasks_per_node,
    }
    if options.cpus_per_task is not None:
        params["cpus_per_task"] = options.cpus_per_task
    if options.mem_gb is not None:
        params["mem_gb"] = options.mem_gb
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(options, key) is not None:
            params[f"slurm_{key}"] = getattr(options, key)
    if options.setup:
        params["slurm_setup"] = list(options.setup)
    additional = dict(options.extra)
    if after is not None:
        additional["dependency"] = f"afterok:{after}"
        additional["kill-on-invalid-dep"] = "yes"
    if additional:
        params["slurm_additional_parameters"] = additional
    return params


class RunJob:
    """One run of the grid as a submitit job: train (or resume) `preset` with `overrides`
    into `run_dir`. Picklable; checkpointable, so a timed-out or preempted job is requeued
    and resumes from the run's last checkpoint. threads: torch CPU threads in the job
    (`sweep --threads`); None leaves torch's default."""

    def __init__(
        self,
        preset: str,
        overrides: Sequence[str],
        run_dir: str | Path,
        source_dir: str | Path | None,
        threads: int | None = None,
    ):
        self.preset = preset
        self.overrides = tuple(overrides)
        self.run_dir = str(run_dir)
        self.source_dir = None if source_dir is None else str(source_dir)
        self.threads = threads

    def __call__(self) -> str:
        from robustfair.engine.config import load_config
        from robustfair.engine.trainer import train

        _export_distributed_environment()
        run_dir = Path(self.run_dir)
        if (run_dir / "results.json").is_file():
            return f"{run_dir}: finished"
        if self.source_dir is not None and not (Path(self.source_dir) / "results.json").is_file():
            raise RobustfairError(f"{run_dir}: its hot-start source {self.source_dir} has not finished")
        config = load_config(self.preset, self.overrides)
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        resume = (run_dir / "config.yaml").is_file()
        print(
            f"robustfair: {'resuming' if resume else 'training'} {self.preset} -> {run_dir}",
            file=sys.stderr,
            flush=True,
        )
        train(config, run_dir, resume=resume, progress=False)
        return f"{run_dir}: finished"

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on timeout or preemption: requeue the same run (it resumes)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)

    def __repr__(self) -> str:
        return f"RunJob({self.preset!r}, run_dir={self.run_dir!r})"


def _export_distributed_environment() -> dict[str, str]:
    """In a job of several tasks, set the env:// variables torch.distributed reads (as torchrun
    sets them) and return them; {} for a job of one task or outside a submitit job."""
    import submitit

    try:
        tasks = submitit.JobEnvironment().num_tasks
    except RuntimeError:  # not inside a submitit job (a direct call)
        return {}
    if tasks <= 1:
        return {}
    # Every rank keeps seeing all the node's GPUs: init_distributed picks cuda:LOCAL_RANK.
    env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return {
        "RANK": str(env.rank),
        "WORLD_SIZE": str(env.world_size),
        "LOCAL_RANK": str(env.local_rank),
        "MASTER_ADDR": env.master_addr,
        "MASTER_PORT": str(env.master_port),
    }


def require_submitit(launcher: str) -> None:
    """ConfigError (one line) when submitit is not installed."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ConfigError(f"--launcher {launcher}: needs submitit: pip install 'robustfair[slurm]'") from None


@dataclass
class LaunchOutcome:
    """What `launch_sweep` did: jobs by run directory, runs skipped as finished, failures;
    with wait, also the runs whose job finished."""

    jobs: dict[Path, Any] = field(default_factory=dict)
    skipped: list[Path] = field(default_factory=list)
    finished: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)


def job_error(job: Any) -> str | None:
    """None when the job succeeded, else one line: its exception's last line and where its log is.

    Blocks until the job has ended.
    """
    try:
        job.result()
    except Exception as err:  # submitit's FailedJobError / UncompletedJobError carry the traceback text
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        last = next((line for line in reversed(lines) if "Error" in line.split(":", 1)[0]), None)
        message = last or (lines[-1] if lines else type(err).__name__)
        log = getattr(getattr(job, "paths", None), "stderr", None)
        return f"job {job.job_id} failed: {message}" + (f" (log: {log})" if log else "")
    return None


def launch_sweep(
    presets: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    overrides: Sequence[str] = (),
    *,
    options: SlurmOptions | None = None,
    cluster: str = "slurm",
    wait: bool = False,
    log: Callable[[str], None] = print,
    make_executor: Callable[[Path], Any] | None = None,
    threads: int | None = None,
) -> LaunchOutcome:
    """Submit every unfinished run of the grid as a job (see the module docstring).

    cluster: "slurm" or "local" (submitit's local executor: hot starts wait for their source's
    job before they are submitted). wait: block until every job has ended and record each
    outcome. make_executor(folder): an executor factory (default `submitit.AutoExecutor`).
    threads: torch CPU threads each job sets (None: torch's default in the job).
    Raises ConfigError for a bad grid before anything is submitted.
    """
    from robustfair.engine.sweep import plan_sweep, preset_label, run_dir_for

    if cluster not in CLUSTERS:
        raise ConfigError(f"cluster: {cluster!r} is not allowed; valid values: {', '.join(CLUSTERS)}")
    options = options or SlurmOptions()
    out = Path(out).resolve()  # jobs may start in another directory than this process
    plan = plan_sweep([_absolute(p) for p in presets], seeds, out, overrides)
    preset_by_label = {preset_label(p): _absolute(p) for p in presets}
    folder = Path(options.folder).resolve() if options.folder else out / "slurm"
    if make_executor is None:
        require_submitit("slurm" if cluster == "slurm" else "submitit-local")
        import submitit

        def make_executor(where: Path) -> Any:
            try:
                return submitit.AutoExecutor(folder=where / "%j", cluster=cluster)
            except RuntimeError as err:  # e.g. no srun here: not a Slurm login node
                raise ConfigError(f"--launcher slurm: {err} (submit from a Slurm login node)") from None

    outcome = LaunchOutcome()
    for index, run in enumerate(plan, 1):
        where = f"[{index}/{len(plan)}] {run.preset} seed {run.seed}"
        if run.finished:
            outcome.skipped.append(run.run_dir)
            log(f"{where}: finished, skipped ({run.run_dir})")
            continue
        source_dir = run_dir_for(out, run.source, run.seed) if run.source is not None else None
        after = None
        if source_dir is not None and not (source_dir / "results.json").is_file():
            source_job = outcome.jobs.get(source_dir)
            if source_job is None:
                outcome.failed[run.run_dir] = f"its hot-start source {run.source} seed {run.seed} was not submitted"
                log(f"{where}: not submitted, {outcome.failed[run.run_dir]}")
                continue
            if cluster == "slurm":
                after = str(source_job.job_id)
            else:
                log(f"{where}: waiting for job {source_job.job_id} ({run.source} seed {run.seed}) to finish")
                problem = job_error(source_job)
                if problem is not None:
                    outcome.failed[run.run_dir] = f"its hot-start source {run.source} seed {run.seed}: {problem}"
                    log(f"{where}: not submitted, {outcome.failed[run.run_dir]}")
                    continue
        executor = make_executor(folder)
        executor.update_parameters(
            **executor_parameters(options, name=f"{options.job_name}-{run.preset}-seed{run.seed}", after=after)
        )
        try:
            job = executor.submit(RunJob(preset_by_label[run.preset], run.overrides, run.run_dir, source_dir, threads))
        except Exception as err:  # sbatch refused the job (a wrong partition, account, ...)
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            done = ", ".join(str(j.job_id) for j in outcome.jobs.values())
            raise SubmissionError(
                f"{where}: submitting its job failed: {lines[-1] if lines else type(err).__name__}"
                + (f" (jobs already submitted: {done})" if done else "")
            ) from None
        outcome.jobs[run.run_dir] = job
        log(
            f"{where}: submitted job {job.job_id}"
            + (f" (starts after job {after} succeeds)" if after else "")
            + f" -> {run.run_dir}"
        )
    try:
        (folder / "%j").rmdir()  # the executor's folder pattern, left empty once the jobs have their own
    except OSError:
        pass
    if wait:
        for run_dir, job in outcome.jobs.items():
            problem = job_error(job)
            if problem is None:
                outcome.finished.append(run_dir)
            else:
                outcome.failed[run_dir] = problem
                log(f"{run_dir}: {problem}")
    return outcome


def _absolute(preset: str) -> str:
    """A YAML path made absolute (the job may start elsewhere); a preset name as it is."""
    path = Path(preset)
    return str(path.resolve()) if path.suffix in (".yaml", ".yml") or path.exists() else preset


__all__ = [
    "SubmissionError",
    "SlurmOptions",
    "RunJob",
    "LaunchOutcome",
    "launch_sweep",
    "executor_parameters",
    "parse_extra",
    "job_error",
    "require_submitit",
    "CLUSTERS",
]
