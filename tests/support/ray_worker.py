"""A second Ray node on this machine, joined to a head mlfleet started on 127.0.0.1.

Run as ``python -m tests.support.ray_worker GCS_ADDRESS NUM_CPUS``; it starts
the node's raylet and agents as its children, prints ``NODE <node id>`` once they run, and
lives until it is killed (the test kills its whole session to stop the node).

It does what ``ray start --address ... --block`` does, minus one check: mlfleet's heads keep
every server on 127.0.0.1 with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, under which `ray
start` refuses to start a worker node at all, and with the switch on it dials the head at
the host's routable address, where nothing listens. Ray's own one-machine clusters
(``ray.cluster_utils.Cluster.add_node``) start worker nodes this same way.
"""

from __future__ import annotations

import signal
import sys


def main(gcs_address: str, num_cpus: int) -> None:
    import ray._private.node
    import ray._private.parameter

    params = ray._private.parameter.RayParams(
        gcs_address=gcs_address,
        node_ip_address="127.0.0.1",
        num_cpus=num_cpus,
        # Ports of its own: Ray's fixed defaults belong to the head (or another cluster).
        node_manager_port=0,
        object_manager_port=0,
        min_worker_port=0,
        max_worker_port=0,
        dashboard_agent_listen_port=None,
        object_store_memory=300 * 1024 * 1024,
    )
    node = ray._private.node.Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
    print(f"NODE {node.node_id}", flush=True)
    signal.pause()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
