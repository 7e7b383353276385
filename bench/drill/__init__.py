"""The chaos drill of `make chaos` (bench/chaos.py is its command line and report), one job per module:

    plan.py     parameters, the workload and when each fault fires, all drawn from one seed
    feed.py     the producer that streams the workload while the drill runs; the probe of group commits
    members.py  supervision of the `streamer run` members: start, SIGKILL, restart, join, leave, stop, stuck
    inject.py   server faults (bench/faults.py): broker and PostgreSQL restarts, outages, the slow database
    drill.py    the drill itself: set up, fire the plan while watching progress, read back, clean up
    result.py   its figures

Reading back is testkit.readback, the checker the integration tests use too.
"""
