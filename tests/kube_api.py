"""A loopback HTTP server that answers the Kubernetes REST calls a TrainJob step makes.

No Kubernetes API server can run on our machines (no binary on PyPI/apt/npm, no container
engine), so the TrainJob step's create / reattach / wait / fail / log logic is exercised over
real HTTP through the real ``kubernetes`` client against this stand-in. It serves exactly the
paths :class:`videostar.training.trainjob.Cluster` calls, each as the API server shapes it:

- ``/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs[/{name}]``: POST (refused
  with 422 unless the body reads back unchanged through the Trainer v2 API models, 409 when the
  name exists), GET (404 when absent), DELETE (the object lingers for ``linger`` more GETs, as
  under foreground deletion);
- ``/api/v1/namespaces/{ns}/pods?labelSelector=k=v,...``: the pods whose labels match;
- ``/api/v1/namespaces/{ns}/pods/{pod}/log?container=...&follow=...``: the pod's log lines.

What the Trainer controller and the nodes do (status conditions, pods, logs, the files a node
writes) a test plays through ``on_get``, called on every GET of a TrainJob.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

TRAINJOBS = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/{ns}/trainjobs"
PODS = "/api/v1/namespaces/{ns}/pods"


class FakeKubeAPI:
    """The state of the fake cluster, and the server that serves it on 127.0.0.1."""

    def __init__(self, namespace: str = "videostar") -> None:
        self.namespace = namespace
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str]] = []
        self.deleting: dict[str, int] = {}
        self.linger = 1
        self.on_get: Callable[[FakeKubeAPI, str], None] | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        # polled every 10 ms (not the default 0.5 s), so leaving the `with` does not wait half a second
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def configuration(self) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return cfg

    # ---- what the controller and the nodes do, played by a test ---------------------------------

    def add_job(self, job: dict[str, Any]) -> None:
        meta = job.setdefault("metadata", {})
        meta.update(namespace=self.namespace, uid=f"uid-{meta['name']}", creationTimestamp=_now())
        self.jobs[meta["name"]] = job

    def set_condition(self, name: str, kind: str, reason: str = "", message: str = "") -> None:
        cond = {"type": kind, "status": "True", "reason": reason, "message": message,
                "lastTransitionTime": _now()}
        self.jobs[name].setdefault("status", {})["conditions"] = [cond]

    def add_pod(self, pod: str, job: str, replicated_job: str = "node", index: int = 0,
                phase: str = "Running", lines: list[str] | None = None) -> None:
        self.pods[pod] = {"metadata": {
            "name": pod, "namespace": self.namespace, "creationTimestamp": _now(),
            "labels": {"jobset.sigs.k8s.io/jobset-name": job,
                       "jobset.sigs.k8s.io/replicatedjob-name": replicated_job,
                       "batch.kubernetes.io/job-completion-index": str(index)}},
            "status": {"phase": phase}}
        self.logs[pod] = list(lines or [])

    def calls(self, method: str) -> list[str]:
        return [path for m, path in self.requests if m == method]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message}


def _valid(body: dict[str, Any]) -> str | None:
    """Why the Trainer v2 API would not take ``body`` as it is, or None."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    try:
        read = TrainerV1alpha1TrainJob.from_dict(body).to_dict()
    except ValueError as exc:
        return str(exc)
    return None if read == body else "fields unknown to trainer.kubeflow.org/v1alpha1 TrainJob"


def _handler(api: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    jobs_path, pods_path = TRAINJOBS.format(ns=api.namespace), PODS.format(ns=api.namespace)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            api.requests.append((method, url.path))
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path.startswith(jobs_path):
                return self._trainjobs(method, url.path[len(jobs_path):].strip("/"))
            if url.path == pods_path and method == "GET":
                return self._pod_list(query.get("labelSelector", ""))
            if url.path.startswith(pods_path + "/") and url.path.endswith("/log") and method == "GET":
                pod = url.path[len(pods_path) + 1:-len("/log")]
                if pod not in api.logs:
                    return self._send(404, _status(404, "NotFound", f'pods "{pod}" not found'))
                return self._send(200, "".join(f"{line}\n" for line in api.logs[pod]), "text/plain")
            self._send(404, _status(404, "NotFound", f"{method} {url.path}: not served here"))

        def _trainjobs(self, method: str, name: str) -> None:
            if method == "POST" and not name:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                problem = _valid(body)
                if problem:
                    return self._send(422, _status(422, "Invalid", problem))
                if body["metadata"]["name"] in api.jobs:
                    return self._send(409, _status(409, "AlreadyExists",
                                                   f'trainjobs "{body["metadata"]["name"]}" already exists'))
                api.add_job(body)
                return self._send(201, body)
            if name not in api.jobs:
                return self._send(404, _status(404, "NotFound", f'trainjobs "{name}" not found'))
            if method == "GET":
                if name in api.deleting:
                    api.deleting[name] -= 1
                    if api.deleting[name] < 0:
                        del api.jobs[name], api.deleting[name]
                        return self._send(404, _status(404, "NotFound", f'trainjobs "{name}" not found'))
                elif api.on_get is not None:
                    api.on_get(api, name)
                return self._send(200, api.jobs[name])
            if method == "DELETE":
                api.deleting.setdefault(name, api.linger)
                for pod in [p for p, o in api.pods.items()
                            if o["metadata"]["labels"]["jobset.sigs.k8s.io/jobset-name"] == name]:
                    del api.pods[pod]
                return self._send(200, _status(200, "Success", "deleting") | {"status": "Success"})
            self._send(405, _status(405, "MethodNotAllowed", method))

        def _pod_list(self, selector: str) -> None:
            wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
            items = [p for p in api.pods.values()
                     if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
            self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler
