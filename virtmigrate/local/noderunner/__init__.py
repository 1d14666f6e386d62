"""The node runner: the local cluster's stand-in for a kubelet.

One runner process (`python -m virtmigrate.local.noderunner`, started by virtmigrate.local.cluster) serves
every node of the local cluster. For each node it registers the Node object and heartbeats its Ready
condition (node.py), watches the pods bound to that node (runner.py) and runs each container's command as
a process inside the node's libvirt mount namespace (container.py), with the pod's env, downward-API
fields and service-account identity (podenv.py, credentials.py). It reports pod status as a kubelet does
(podworker.py), deciding phases, restarts and readiness with the pure functions of decide.py.

Differences from a kubelet, on purpose: no images (a container's argv[0] resolves to our console scripts),
no volumes, no networking (every pod has IP 127.0.0.1), and stopping the runner stops its containers, so
`cluster down` leaves nothing behind.
"""
