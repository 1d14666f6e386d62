"""The in-pod migration agent (`virtmigrate-agent`): one live peer-to-peer libvirt migration, watched to its end.

    settings     flags + environment -> Settings, and the Policy the decisions read
    jobstats     libvirt job statistics -> JobStats; Mode (pre-copy, post-copy, paused)
    decisions    pure: downtime steps, completion and progress timeouts, cancel
    convergence  pure: will pre-copy finish in time? act early (post-copy, throttle)
    steering     pure: one poll's observation folded in, decisions composed and recorded
    monitor      the thin loop: observe job stats, decide, act on the `Domain` seam
    domain       the `Domain` protocol and its libvirt adapter
    migrate      wiring: connections, the migrate thread, cancel, verification -> Result
    verify       pure: where the guest must be after success / failure
    result       the JSON termination message (<= 4 KiB)
    progress     status.progress of the Migration (optional, rate-limited)
    logs         JSON lines (virtmigrate.jsonlog: nothing to import)

Exit codes live in virtmigrate.api.exitcodes (shared with the controller).
"""
