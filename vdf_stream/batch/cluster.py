"""Ray, the engine that spreads a batch: connecting to it (or starting a local one), deciding
the workers and what each task asks for, and the remote versions of the tasks."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..errors import UsageError
from .options import BatchOptions, RayUnavailable
from .tasks import execute_eval, execute_join, execute_unit


def import_ray():
    """Ray, imported on demand (an optional dependency)."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable('the batch command needs Ray: pip install "vdf-stream[batch]"') \
            from None
    return ray


@dataclass(frozen=True)
class Resources:
    """How the batch uses the cluster: resolved once Ray is up."""

    workers: int
    cpus_per_task: float
    gpus_per_task: float
    device: str
    threads: int  # CPU threads a unit uses (torch, decoder, encoder)
    cluster_cpus: float
    cluster_gpus: float
    started_ray: bool
    address: str


def start_ray(options: BatchOptions, ray_messages: bool = False) -> Resources:
    """Connect to (or start) Ray quietly and decide workers and per-task resources.

    A Ray that this process already initialised is used as it is (and left running).
    ``ray_messages``: let Ray print what it says about its workers (lost, retried).

    Raises:
        RayUnavailable: Ray is missing or the cluster cannot be reached.
        UsageError: GPUs asked for where the cluster has none.
    """
    from ..environment import usable_cores

    ray = import_ray()
    cores = usable_cores()
    started = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        settings = dict(include_dashboard=False, logging_level=logging.ERROR,
                        log_to_driver=False, configure_logging=True)
        if options.address is None:
            # a laptop-sized local Ray: at least one CPU slot per worker asked for
            settings.update(num_cpus=max(cores, options.workers or cores),
                            object_store_memory=128 * 2**20)
            address = "local"
        else:
            address = options.address
        try:
            ray.init(address=address, **settings)
        except ImportError as error:
            raise RayUnavailable(f"--address {address}: Ray's client is missing ({error}); "
                                 'pip install "vdf-stream[batch]"') from None
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as error:
            raise RayUnavailable(f"cannot reach the Ray cluster at {address}: "
                                 f"{str(error).splitlines()[0] if str(error) else error}") \
                from None
        started = True
        if not ray_messages and hasattr(ray._private.worker, "_worker_logs_enabled"):
            # Ray prints its workers' deaths and retries on stdout, where the summary goes;
            # the manifest records attempts instead (Ray's debugger flips the same switch)
            ray._private.worker._worker_logs_enabled = False
    resources = ray.cluster_resources()
    cluster_cpus = float(resources.get("CPU", 0))
    cluster_gpus = float(resources.get("GPU", 0))
    local = options.address is None
    gpus = options.gpus_per_task
    if gpus is None:
        gpus = 1.0 if cluster_gpus >= 1 and options.device != "cpu" else 0.0
    if gpus > 0 and cluster_gpus < gpus:
        if started:
            ray.shutdown()
        raise UsageError(f"--gpus-per-task {gpus:g}: the Ray cluster has "
                         f"{cluster_gpus:g} GPUs")
    if options.workers is not None:
        workers = options.workers
    elif gpus > 0:
        workers = max(1, int(cluster_gpus // gpus))
    else:
        workers = max(1, int(cluster_cpus if not local else cores))
    cpus_per_task = float(max(1, cores // workers)) if local else 1.0
    device = options.device
    if device == "auto":
        device = "cuda" if gpus > 0 else "cpu"
    return Resources(workers, cpus_per_task, gpus, device, int(cpus_per_task), cluster_cpus,
                     cluster_gpus, started, options.address or "local")


def shutdown_ray() -> None:
    import ray

    try:
        ray.shutdown()
    except Exception:
        pass


def remote_tasks(ray, retries: int, resources: Resources):
    """The Ray tasks, with the batch's resources. Worker loss is retried ``retries``
    times (Ray's ``max_retries``); exceptions never are (``retry_exceptions=False``):
    units return their failures instead of raising them."""
    from types import SimpleNamespace

    common = dict(num_cpus=resources.cpus_per_task, num_gpus=resources.gpus_per_task,
                  max_retries=retries, retry_exceptions=False)
    return SimpleNamespace(
        unit=ray.remote(**common)(execute_unit),
        join=ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(execute_join),
        eval=ray.remote(**common)(execute_eval),
    )
