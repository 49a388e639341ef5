"""``python -m deployments.drain``: take this Ray node out of service gracefully (the worker pods'
``preStop`` hook in k8s/base/rayservice.yaml).

Kubernetes sends SIGTERM to a pod it deletes (node upgrade, eviction, scale-in), and ``ray start
--block`` then stops every process at once: the requests of the replicas on the node would fail.
Draining first tells Ray no new work goes to this node; Serve starts replacement replicas on other
nodes, then stops the ones here, each finishing its requests within the deployment's
``graceful_shutdown_timeout_s``. This waits until no Serve replica is left on the node (or the
deadline passes), so the SIGTERM that follows finds nothing running.

Ray's ``ray drain-node`` command does the draining (the same call the autoscaler makes before it
removes an idle node); the wait is ours.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

import ray
from ray.util.state import list_actors

log = logging.getLogger("speechgraph.drain")


def serve_replicas_on(node_id: str) -> int:
    """Serve replica actors alive on the node."""
    actors = list_actors(
        filters=[("node_id", "=", node_id), ("state", "=", "ALIVE")],
        limit=10_000,
        raise_on_missing_output=False,
    )
    return sum(1 for a in actors if a.class_name.startswith("ServeReplica:"))


def drain_node(node_id: str, deadline_s: float, address: str | None = None) -> None:
    """Ask the cluster to drain ``node_id`` (Ray's ``drain-node``; Kubernetes kills the pod after
    ``deadline_s``)."""
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "drain-node",
        "--node-id",
        node_id,
        "--reason",
        "DRAIN_NODE_REASON_PREEMPTION",
        "--reason-message",
        "pod terminating",
        "--deadline-remaining-seconds",
        str(int(deadline_s)),
    ]
    if address:
        command += ["--address", address]
    subprocess.run(command, check=True)


def wait_for_no_replicas(node_id: str, deadline_s: float, poll_s: float = 2.0) -> int:
    """Wait until no Serve replica runs on the node or ``deadline_s`` passes; the replicas left."""
    deadline = time.monotonic() + deadline_s
    left = serve_replicas_on(node_id)
    while left and time.monotonic() < deadline:
        time.sleep(poll_s)
        left = serve_replicas_on(node_id)
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.drain", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=300,
        help="seconds until the pod is killed anyway: its terminationGracePeriodSeconds "
        "less a margin (default: %(default)s)",
    )
    parser.add_argument("--node-id", help="the node to drain (default: the node this runs on)")
    parser.add_argument("--address", default="auto", help="the Ray cluster (default: %(default)s)")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    ray.init(address=options.address, log_to_driver=False, logging_level=logging.WARNING)
    node_id = options.node_id or ray.get_runtime_context().get_node_id()
    started = time.monotonic()
    drain_node(node_id, options.deadline_s, None if options.address == "auto" else options.address)
    left = wait_for_no_replicas(node_id, options.deadline_s)
    log.info(
        "node %s drained in %.1f s; %d Serve replicas left on it", node_id, time.monotonic() - started, left
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
