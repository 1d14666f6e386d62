"""The seeded chaos campaign (issue 11, section 5): migrations on the local cluster with faults at random moments.

Each round migrates every VM of a small pool at once and injects one fault into one of those Migrations (its
"victim") at a random moment: SIGKILL of the agent, the controller, a launcher, a node's libvirtd or the node
runner; an API server restart; the agent pod deleted while the controller is down; a cancel — alone or racing
any of the others. Then it waits, bounded, and checks what the user was promised, read from the facts (each
node's libvirtd, the guests' serial heartbeats, the API), never from what the controller says about itself.

    plan.py        pure: the round's plan from (seed, round) — fault, victim, moment, pauses, bandwidths
    facts.py       what is true now: domains per node (virsh), heartbeat counters, pods; the agent-pod watch
    faults.py      doing harm: SIGKILL by pid from the cluster's state directory, restarts a supervisor would do
    invariants.py  pure: a snapshot of facts + what the round did -> violations
    campaign.py    the loop: pool, rounds, bounded waits, repair after a violation, the summary
    __main__.py    `python -m tests.chaos` (make chaos): flags and env SEED, ROUNDS, ROUND, VMS

Fed by hack/chaos.sh and tests/e2e/test_chaos.py (a short fixed-seed subset inside `make test`).
"""
