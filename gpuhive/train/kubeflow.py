"""The same job as a Kubeflow PyTorchJob manifest, for users who run Kubernetes. Pure.

The manifest runs the job's script with the same arguments and environment; the code has
to be in the image (``image``), since Kubernetes has no gpuhive code sync. Elastic jobs
(MIN:MAX) become ``elasticPolicy`` with the c10d rendezvous the training operator uses.
"""

from __future__ import annotations

from typing import Any

from gpuhive.train.spec import JobSpec


def pytorchjob(spec: JobSpec, *, name: str, image: str, nproc_per_node: int,
               workdir_in_image: str = "/workspace") -> dict[str, Any]:
    gpus = spec.gpus_per_node or 0
    env = [{"name": k, "value": v} for k, v in {
        "GPUHIVE_MODE": spec.mode, "GPUHIVE_SYNC_EVERY": str(spec.sync_every),
        "GPUHIVE_COMPRESS": spec.compress, "GPUHIVE_JOB_ID": name,
        "GPUHIVE_CHECKPOINT_DIR": "/checkpoints", **spec.env}.items()]
    resources: dict[str, Any] = {"limits": {"nvidia.com/gpu": gpus}} if gpus else {}
    container = {
        "name": "pytorch", "image": image, "workingDir": workdir_in_image,
        "command": ["python", spec.script, *spec.args], "env": env,
        "resources": resources,
        "volumeMounts": [{"name": "checkpoints", "mountPath": "/checkpoints"}],
    }
    template = {"spec": {"containers": [container],
                         "volumes": [{"name": "checkpoints", "emptyDir": {}}]}}
    replica = {"replicas": spec.max_nodes, "restartPolicy": "OnFailure", "template": template}
    job_spec: dict[str, Any] = {"nprocPerNode": str(nproc_per_node),
                                "pytorchReplicaSpecs": {"Worker": replica},
                                "runPolicy": {"backoffLimit": spec.max_restarts}}
    if spec.elastic:
        job_spec["elasticPolicy"] = {"rdzvBackend": "c10d", "minReplicas": spec.min_nodes,
                                     "maxReplicas": spec.max_nodes,
                                     "maxRestarts": spec.max_restarts}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "gpuhive"}},
            "spec": job_spec}
