"""Joining a Ray cluster, or starting a private local one, and the cluster's job client.

Everything parsec places on Ray lives in namespace ``parsec`` (``NAMESPACE``): server
fleets, testbed shards and the jobs that find them again with ``ray.get_actor``.
"""

from __future__ import annotations

import os

import ray
from ray.job_submission import JobSubmissionClient

from parsec.console import say

NAMESPACE = "parsec"
LOCAL_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keeps Ray's sockets on 127.0.0.1
    "RAY_AUTH_MODE": "disabled",
}


def local_ray_env() -> None:
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)


def start_ray(address: str | None):
    local_ray_env()
    if address:
        say(f"joining Ray at {address}")
        return ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    say("starting a private local Ray cluster")
    # "local": a fresh cluster even when `ray start` left one running on this machine
    return ray.init(address="local", namespace=NAMESPACE, include_dashboard=True, dashboard_host="127.0.0.1",
                    log_to_driver=False, num_cpus=os.cpu_count() or 2)


def job_client(context, address: str | None) -> JobSubmissionClient:
    url = context.dashboard_url or ""
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return JobSubmissionClient(url or "http://127.0.0.1:8265")
