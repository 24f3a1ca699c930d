"""A step's cluster settings on its task: resources, node pool, secrets, volumes, retries, caching.

The local runner ignores the Kubernetes-only parts (accelerators, node selectors, secrets).
"""

from typing import Any

from kfp import kubernetes

from videostar.config import PipelineConfig, StepResources
from videostar.config.platform import watcher_step


def schedule(task: Any, res: StepResources, pipeline: PipelineConfig) -> Any:
    """Apply a step's resources, node pool, secrets, volumes, retries and caching to a task.

    A step whose launcher is ``trainjob`` only creates and waits for its TrainJob: it runs on
    the CPU pool (:func:`watcher_step`) and its GPUs go to the job's nodes."""
    if res.launcher.kind == "trainjob":
        res = watcher_step(res)
    if res.accelerator_type and res.accelerator_count:
        task.set_accelerator_type(res.accelerator_type)
        task.set_accelerator_limit(res.accelerator_count)
    if res.cpu:
        task.set_cpu_request(res.cpu).set_cpu_limit(res.cpu)
    if res.memory:
        task.set_memory_request(res.memory).set_memory_limit(res.memory)
    for key, value in res.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for tol in res.tolerations:
        kubernetes.add_toleration(task, key=tol.key, operator=tol.operator, value=tol.value,
                                  effect=tol.effect)
    if res.shm_size:
        kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm",
                                   medium="Memory", size_limit=res.shm_size)
    if pipeline.pvc:
        kubernetes.mount_pvc(task, pvc_name=pipeline.pvc, mount_path=pipeline.pvc_mount)
    for secret in pipeline.secrets:
        kubernetes.use_secret_as_env(task, secret_name=secret.secret,
                                     secret_key_to_env=secret.env)
    # the step images run as uid 10001; say so in the pod spec too, so non-root is enforced
    kubernetes.set_security_context(task, run_as_user=10001, run_as_group=10001, run_as_non_root=True)
    if res.retries:
        task.set_retry(num_retries=res.retries, backoff_duration=res.backoff, backoff_factor=2.0)
    task.set_caching_options(res.cache)
    return task
