"""Server faults as the drill fires them (bench/faults.py does the work): a broker or PostgreSQL restart, and
outages left in place for a while, one at a time — PostgreSQL stopped, the broker stopped, the database slowed
down by a proxy in front of it."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from bench import faults
from bench.drill.plan import Fault, Params
from testkit.proxies import SlowProxy


class Injector:
    def __init__(self, p: Params, base_url: str):
        self.p, self.base_url = p, base_url
        self.proxy: SlowProxy | None = None  # members reach PostgreSQL through it when slow_db
        self.outage: tuple[Fault, float, Callable[[], object]] | None = None  # under way: fault, its end, undo

    def check(self) -> None:
        """Refuse before starting when a requested fault cannot be injected on this machine."""
        if self.p.broker_restarts or self.p.broker_outages:
            faults.check_broker()
        if self.p.db_restarts or self.p.db_outages:
            faults.database_cluster(self.base_url)

    def open_proxy(self, db_url: str) -> None:
        if self.p.slow_db:
            target = urlsplit(db_url)
            self.proxy = SlowProxy(target.hostname or "127.0.0.1", target.port or 5432)

    def members_url(self, db_url: str) -> str:
        """The database URL members use: through the proxy when there is one."""
        if self.proxy is None:
            return db_url
        server = urlsplit(db_url).netloc.rsplit("@", 1)[-1]
        return db_url.replace(server, f"127.0.0.1:{self.proxy.port}", 1)

    def outage_due(self) -> bool:
        return self.outage is not None and time.monotonic() >= self.outage[1]

    def fire(self, f: Fault) -> str:
        """Inject a server fault (SERVER_FAULTS); what happened. FaultFailed when a server did not come back."""
        p = self.p
        if f.kind == "broker":
            f.took_s = round(faults.restart_broker(), 1)
            return f"broker stopped and started again in {f.took_s}s"
        if f.kind == "database":
            f.took_s = round(faults.restart_database(self.base_url), 1)
            return f"pg_ctlcluster restart, accepting connections again after {f.took_s}s"
        if f.kind == "db_down":
            cluster = faults.stop_database(self.base_url)
            self.outage = (
                f,
                time.monotonic() + p.db_outage_seconds,
                lambda: faults.start_database(self.base_url, cluster),
            )
            return f"PostgreSQL stopped (pg_ctlcluster stop -m fast) for {p.db_outage_seconds:g}s"
        if f.kind == "broker_down":
            faults.stop_broker()
            self.outage = (f, time.monotonic() + p.broker_outage_seconds, faults.start_broker)
            return f"broker stopped (kafka.sh down) for {p.broker_outage_seconds:g}s"
        assert f.kind == "slow_db" and self.proxy is not None, f.kind
        proxy = self.proxy
        proxy.delay = p.slow_db_latency
        self.outage = (f, time.monotonic() + p.slow_db_seconds, lambda: setattr(proxy, "delay", 0.0))
        return f"database {p.slow_db_latency:g}s slower per chunk each way for {p.slow_db_seconds:g}s"

    def end_outage(self) -> Fault:
        """Undo the outage under way (start the server again, take the latency away); the fault it was."""
        assert self.outage is not None
        f, _, undo = self.outage
        self.outage = None
        undo()
        return f

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
