"""The in-pod migration agent (`virtmigrate-agent`): one live peer-to-peer libvirt migration, watched to its end.

    settings     flags + environment -> Settings (the policy)
    jobstats     libvirt job statistics -> JobStats; Mode
    decisions    pure: downtime steps, completion/progress timeouts, convergence prediction, verification
    monitor      the thin loop: observe job stats, decide, act (on the `Domain` seam)
    domain       the `Domain` protocol and its libvirt adapter
    migrate      wiring: connections, the migrate thread, cancel, verification -> Result
    result       the JSON termination message
    progress     status.progress of the Migration (optional, rate-limited)

Exit codes live in virtmigrate.api.exitcodes (shared with the controller).
"""
