"""A seeded, reproducible generator of realistic labelled log events (the built-in training corpus).

Seven source families (web access, application with exceptions, database, auth/security, kernel/infra,
Kubernetes events, SAP-like business transactions) emit ECS-ish events at DEBUG..FATAL, and anomalies of six
named types are injected, partly in bursts (incidents). Every id, IP, number, path and duration is drawn at
random, so nothing can be memorised; levels depend on context (a retry that will be retried is a WARN, the
last one an ERROR; a 404 on a static asset is INFO, on the API a WARN; a slow query is a WARN only when
slow; different teams log the same thing at different levels), never on one keyword alone.

    generate(n, seed) -> list[dict]     iter_events(seed) -> endless iterator

Each event:
    {"@timestamp": "2024-03-01T00:00:00.020Z", "message": "...", "log.level": "warning" (absent for ~20 %,
     spelled the family's way otherwise), "host.name": "...", "service.name": "...",
     "labels": {"level": "WARN", "is_anomaly": False, "anomaly_type": None, "family": "web"}}
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

ANOMALY_TYPES: tuple[str, ...] = (
    "system_failure",
    "security_breach",
    "performance_degradation",
    "data_corruption",
    "resource_exhaustion",
    "network_anomaly",
)
FAMILIES: tuple[str, ...] = ("web", "app", "db", "auth", "kernel", "k8s", "sap")

_START = datetime(2024, 3, 1, tzinfo=UTC).timestamp()

# How each family spells its declared level (all understood by streamer.levels.normalise).
_SPELLING = {
    "web": {"DEBUG": "debug", "INFO": "info", "WARN": "warn", "ERROR": "error", "FATAL": "crit"},
    "app": {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARN", "ERROR": "ERROR", "FATAL": "FATAL"},
    "db": {"DEBUG": "DEBUG", "INFO": "LOG", "WARN": "WARNING", "ERROR": "ERROR", "FATAL": "FATAL"},
    "auth": {"DEBUG": "debug", "INFO": "notice", "WARN": "warning", "ERROR": "err", "FATAL": "alert"},
    "kernel": {"DEBUG": "7", "INFO": "6", "WARN": "4", "ERROR": "3", "FATAL": "2"},
    "k8s": {"DEBUG": "D", "INFO": "I", "WARN": "W", "ERROR": "E", "FATAL": "F"},
    "sap": {"DEBUG": "TRACE", "INFO": "Information", "WARN": "Warning", "ERROR": "Error", "FATAL": "Critical"},
}
# "LOG" is PostgreSQL's word for an informational line; normalise() doesn't know it, so say INFO there.
_SPELLING["db"]["INFO"] = "INFO"


class _G:
    """Random value helpers bound to one Random instance."""

    def __init__(self, r: random.Random):
        self.r = r

    def ip(self) -> str:
        r = self.r.randint
        return f"{r(1, 223)}.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}"

    def priv_ip(self) -> str:
        r = self.r.randint
        return f"10.{r(0, 255)}.{r(0, 255)}.{r(1, 254)}"

    def hexid(self, n: int = 12) -> str:
        return f"{self.r.getrandbits(4 * n):0{n}x}"

    def uuid(self) -> str:
        h = f"{self.r.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def num(self, a: int = 1, b: int = 99999) -> int:
        return self.r.randint(a, b)

    def pick(self, seq):
        return seq[int(self.r.random() * len(seq))]

    def ms(self, a: float, b: float) -> str:
        v = self.r.uniform(a, b)
        if v >= 1000 and self.r.random() < 0.5:
            return f"{v / 1000:.2f}s"
        return f"{v:.0f}ms" if self.r.random() < 0.6 else f"{v:.1f} ms"

    def path(self) -> str:
        p = self.pick
        return (
            f"/{p(_SEGS)}/{p(_SEGS)}/{self.num(1, 99999)}"
            if self.r.random() < 0.5
            else f"/{p(_SEGS)}/{p(_SEGS)}/{p(_SEGS)}"
        )

    def user(self) -> str:
        return self.pick(_USERS) + (str(self.num(1, 999)) if self.r.random() < 0.4 else "")

    def table(self) -> str:
        return self.pick(_TABLES)


_SEGS = (
    "api",
    "v1",
    "v2",
    "users",
    "orders",
    "cart",
    "items",
    "search",
    "catalog",
    "account",
    "payments",
    "invoices",
    "static",
    "img",
    "reports",
    "admin",
    "health",
    "session",
    "products",
    "export",
)
_USERS = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "oscar",
    "peggy",
    "trent",
    "victor",
    "walter",
    "svc_batch",
    "deploy",
    "backup",
    "jenkins",
)
_TABLES = (
    "orders",
    "customers",
    "invoices",
    "line_items",
    "payments",
    "sessions",
    "audit_log",
    "inventory",
    "shipments",
    "accounts",
    "events",
    "products",
)
_CLASSES = (
    "OrderService",
    "PaymentGateway",
    "InventoryClient",
    "UserRepository",
    "CheckoutController",
    "InvoiceExporter",
    "SessionManager",
    "PricingEngine",
    "NotificationWorker",
    "ReportScheduler",
)
_PKGS = ("com.acme.shop", "com.acme.billing", "io.corp.platform", "org.example.core", "net.retail.api")
_EXC = (
    "java.lang.NullPointerException",
    "java.lang.IllegalStateException",
    "java.io.IOException",
    "java.util.concurrent.TimeoutException",
    "java.sql.SQLTransientConnectionException",
    "java.lang.IllegalArgumentException",
    "org.springframework.dao.DataIntegrityViolationException",
    "ValueError",
    "KeyError",
    "TypeError",
    "ConnectionError",
)
_METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH")
_DOWNSTREAM = (
    "payments-api",
    "inventory-svc",
    "pricing",
    "auth-service",
    "search-backend",
    "mailer",
    "ledger",
    "shipping-api",
)
_IFACES = ("eth0", "eth1", "ens3", "bond0", "enp0s31f6")
_DEVS = ("sda", "sdb", "nvme0n1", "nvme1n1", "vda")
_PODS = ("checkout", "cart", "frontend", "payments", "search", "recommendation", "worker", "gateway")
_TCODES = ("VA01", "VA02", "ME21N", "MIGO", "FB01", "VL01N", "MM01", "F110", "VF01", "CO11N")

Emit = Callable[[_G], tuple[str, str]]

# ---------------------------------------------------------------------------------------------------------
# normal traffic: each emitter returns (message, level)


def _web(g: _G) -> tuple[str, str]:
    r = g.r.random()
    ip, path, meth = g.ip(), g.path(), g.pick(_METHODS)
    size = g.num(0, 90000)
    ua = g.pick(("Mozilla/5.0", "curl/8.1.2", "python-requests/2.31", "okhttp/4.12", "Go-http-client/1.1"))
    if r < 0.62:
        status = g.pick((200, 200, 200, 201, 204, 301, 302, 304))
        took = g.r.uniform(2, 400)
        level = "INFO"
        if took > 300 and g.r.random() < 0.5:
            level = "DEBUG"
        return (f'{ip} - - "{meth} {path} HTTP/1.1" {status} {size} "-" "{ua}" rt={took / 1000:.3f}', level)
    if r < 0.72:
        asset = g.pick(("favicon.ico", "robots.txt", "apple-touch-icon.png", "static/app.js.map"))
        return (f'{ip} - - "GET /{asset} HTTP/1.1" 404 {size} "-" "{ua}"', "INFO")
    if r < 0.80:
        status = g.pick((400, 401, 403, 404, 409, 422, 429))
        return (f'{ip} - - "{meth} /api{path} HTTP/1.1" {status} {size} "-" "{ua}"', "WARN")
    if r < 0.86:
        status = g.pick((500, 502, 503, 504))
        return (f'{ip} - - "{meth} /api{path} HTTP/1.1" {status} {size} "-" "{ua}"', "ERROR")
    if r < 0.90:
        return (f"upstream response time {g.ms(1200, 4000)} for {meth} {path} exceeded warn threshold", "WARN")
    if r < 0.94:
        return (
            f"client {ip} closed connection while waiting for request, client: {ip}, server: shop.example.com",
            "INFO",
        )
    if r < 0.97:
        return (f"worker process {g.num(100, 65000)} started, {g.num(1, 64)} connections in use", "DEBUG")
    return (
        f"upstream {g.pick(_DOWNSTREAM)} at {g.priv_ip()}:8080 marked down after {g.num(2, 5)} failed health checks",
        g.pick(("ERROR", "ERROR", "WARN")),
    )


def _stack(g: _G, exc: str) -> str:
    pkg, cls = g.pick(_PKGS), g.pick(_CLASSES)
    lines = [
        f"\n\tat {pkg}.{cls}.{g.pick(('handle', 'process', 'load', 'save', 'call', 'run'))}"
        f"({cls}.java:{g.num(20, 900)})"
        for _ in range(g.num(1, 3))
    ]
    return (
        "".join(lines)
        if exc.startswith(("java", "org"))
        else (
            f'\nTraceback (most recent call last):\n  File "/srv/app/{g.pick(_SEGS)}.py", line {g.num(10, 800)}, '
            f"in {g.pick(('handle', 'process', 'load', 'save'))}"
        )
    )


def _app(g: _G) -> tuple[str, str]:
    r = g.r.random()
    cls, ds = g.pick(_CLASSES), g.pick(_DOWNSTREAM)
    if r < 0.20:
        return (
            f"{cls}: order {g.num(100000, 999999)} created for customer {g.num(1000, 99999)} total "
            f"{g.r.uniform(1, 900):.2f} EUR",
            "INFO",
        )
    if r < 0.30:
        return (
            f"{cls}: cache lookup key=user:{g.num(1, 99999)} hit={g.pick(('true', 'false'))} took {g.ms(0.1, 3)}",
            "DEBUG",
        )
    if r < 0.37:
        return (
            f"{cls}: entering {g.pick(('validate', 'apply', 'compute', 'persist'))}"
            f"(id={g.hexid(8)}, attempt={g.num(1, 3)})",
            "DEBUG",
        )
    if r < 0.47:
        n = g.num(3, 5)
        k = g.num(1, n)
        if k < n:
            return (
                f"{cls}: call to {ds} failed ({g.pick(('timeout', 'connection refused', 'HTTP 503'))}), "
                f"retrying in {g.ms(100, 2000)} (attempt {k}/{n})",
                g.pick(("WARN",) * 6 + ("INFO",)),
            )
        return (
            f"{cls}: call to {ds} failed after {n} attempts, giving up: "
            f"{g.pick(('timeout', 'connection refused', 'HTTP 503'))}",
            "ERROR",
        )
    if r < 0.55:
        exc = g.pick(_EXC)
        return (
            f"{cls}: unhandled exception while processing request {g.uuid()}: {exc}: "
            f"{g.pick(('value was null', 'unexpected state', 'read timed out', 'invalid id'))}"
            f"{_stack(g, exc)}",
            "ERROR",
        )
    if r < 0.61:
        exc = g.pick(_EXC)
        return (f"{cls}: {exc} from {ds}, falling back to cached response (age {g.ms(1000, 50000)})", "WARN")
    if r < 0.68:
        return (f"{cls}: request {g.uuid()} completed in {g.ms(3, 300)} status=200", "INFO")
    if r < 0.73:
        return (
            f"{cls}: validation failed for field '{g.pick(('email', 'zip', 'qty', 'iban'))}': "
            f"{g.pick(('must not be empty', 'invalid format', 'out of range'))}",
            g.pick(("INFO", "WARN", "WARN")),
        )
    if r < 0.78:
        return (
            f"{cls}: scheduled job {g.pick(('cleanup', 'reindex', 'digest', 'sync'))} finished, "
            f"{g.num(0, 5000)} items processed, {g.num(0, 3)} errors",
            "INFO",
        )
    if r < 0.83:
        return (f"Started {cls} in {g.r.uniform(2, 40):.3f} seconds (JVM running for {g.r.uniform(3, 60):.3f})", "INFO")
    if r < 0.87:
        return (
            f"{cls}: configuration property '{g.pick(('pool.size', 'timeout.ms', 'feature.x'))}' is "
            f"deprecated and will be removed",
            "WARN",
        )
    if r < 0.92:
        return (
            f"HikariPool-1 - Connection is not available, request timed out after {g.ms(3000, 30000)} "
            f"(total={g.num(10, 50)}, active={g.num(10, 50)}, idle=0, waiting={g.num(1, 20)})",
            "ERROR",
        )
    if r < 0.96:
        return (
            f"{cls}: feature flag {g.pick(('new-checkout', 'fast-search', 'beta-ui'))} evaluated to "
            f"{g.pick(('on', 'off'))} for tenant {g.num(1, 500)}",
            "DEBUG",
        )
    if r < 0.985:
        return (f"{cls}: application shutting down: {g.pick(('SIGTERM received', 'context closed'))}", "INFO")
    return (
        f"{cls}: application failed to start: {g.pick(('port 8080 already in use', 'missing secret DB_URL', 'schema validation failed'))}",
        "FATAL",
    )


def _db(g: _G) -> tuple[str, str]:
    r = g.r.random()
    t = g.table()
    if r < 0.18:
        d = g.r.uniform(0.2, 90)
        return (f"duration: {d:.3f} ms  statement: SELECT * FROM {t} WHERE id = {g.num()}", "DEBUG")
    if r < 0.30:
        # mostly 1-9 s; sometimes as slow as a degraded database, yet expected (a nightly report)
        d = g.r.uniform(1000, 9000) if g.r.random() < 0.9 else g.r.uniform(15000, 40000)
        return (
            f"duration: {d:.3f} ms  statement: UPDATE {t} SET status = 'done' WHERE id = {g.num()}",
            g.pick(("WARN", "WARN", "INFO")),
        )
    if r < 0.42:
        return (
            f"checkpoint complete: wrote {g.num(10, 90000)} buffers ({g.r.uniform(0, 40):.1f}%); "
            f"0 WAL file(s) added, {g.num(0, 9)} removed, {g.num(0, 9)} recycled; "
            f"write={g.r.uniform(0, 300):.3f} s",
            "INFO",
        )
    if r < 0.50:
        return ("checkpoint starting: time", "INFO")
    if r < 0.60:
        return (
            f"connection authorized: user={g.user()} database={g.pick(('shop', 'billing', 'analytics'))} "
            f"application_name={g.pick(('psql', 'app', 'pgbouncer'))}",
            g.pick(("INFO", "DEBUG")),
        )
    if r < 0.68:
        return (f'duplicate key value violates unique constraint "{t}_pkey"', g.pick(("ERROR", "ERROR", "WARN")))
    if r < 0.73:
        return (
            f"deadlock detected: Process {g.num(1000, 99999)} waits for ShareLock on transaction "
            f"{g.num(1000, 999999)}; blocked by process {g.num(1000, 99999)}",
            "ERROR",
        )
    if r < 0.78:
        return (
            f'automatic vacuum of table "shop.public.{t}": index scans: {g.num(0, 3)}, pages: '
            f"{g.num(0, 900)} removed, {g.num(100, 90000)} remain",
            "INFO",
        )
    if r < 0.84:
        return ("could not receive data from client: Connection reset by peer", g.pick(("INFO", "WARN")))
    if r < 0.88:
        return (f"canceling statement due to statement timeout (query ran {g.ms(30000, 60000)})", "ERROR")
    if r < 0.93:
        return (f"replication lag on standby {g.priv_ip()} is {g.ms(10, 900)}", "DEBUG")
    if r < 0.955:
        return (f'FATAL:  password authentication failed for user "{g.user()}"', "FATAL")
    if r < 0.965:
        return ("FATAL:  the database system is starting up", g.pick(("FATAL", "FATAL", "INFO")))
    if r < 0.97:
        return (
            f'temporary file: path "base/pgsql_tmp/pgsql_tmp{g.num()}.{g.num(0, 9)}", size {g.num(1000, 9999999)}',
            g.pick(("INFO", "WARN")),
        )
    return ("database system is ready to accept connections", "INFO")


def _auth(g: _G) -> tuple[str, str]:
    r = g.r.random()
    u, ip, port = g.user(), g.ip(), g.num(1024, 65535)
    if r < 0.25:
        return (f"Accepted {g.pick(('publickey', 'password'))} for {u} from {ip} port {port} ssh2", "INFO")
    if r < 0.40:
        return (f"pam_unix(sshd:session): session {g.pick(('opened', 'closed'))} for user {u}", "INFO")
    if r < 0.52:
        # admins mistype root's password too: the same line as a brute force, minus the rate
        who = "root" if g.r.random() < 0.15 else u
        return (f"Failed password for {who} from {ip} port {port} ssh2", "WARN")
    if r < 0.58:
        return (f"Invalid user {u} from {ip} port {port}", g.pick(("INFO", "WARN")))
    if r < 0.66:
        return (
            f"sudo: {u} : TTY=pts/{g.num(0, 9)} ; PWD=/home/{u} ; USER=root ; COMMAND=/usr/bin/"
            f"{g.pick(('systemctl', 'journalctl', 'apt', 'tail'))}",
            "INFO",
        )
    if r < 0.72:
        return (f"token for client {g.hexid(16)} refreshed, expires in {g.num(300, 3600)} seconds", "DEBUG")
    if r < 0.80:
        return (f"login for user {u} rejected: account locked after {g.num(3, 5)} failed attempts", "ERROR")
    if r < 0.86:
        return (f"Received disconnect from {ip} port {port}:11: disconnected by user", "INFO")
    if r < 0.91:
        return (
            f"oauth2 access token validation failed for client {g.hexid(16)}: token expired",
            g.pick(("WARN", "INFO")),
        )
    if r < 0.96:
        return (
            f"pam_unix(sudo:auth): authentication failure; logname={u} uid={g.num(1000, 2000)} "
            f"euid=0 tty=/dev/pts/{g.num(0, 9)} ruser={u} rhost=  user={u}",
            "WARN",
        )
    return (f"Connection closed by authenticating user {u} {ip} port {port} [preauth]", "INFO")


def _kernel(g: _G) -> tuple[str, str]:
    r = g.r.random()
    iface, dev = g.pick(_IFACES), g.pick(_DEVS)
    if r < 0.15:
        return (
            f"{iface}: Link is Up - {g.pick(('1000', '10000', '25000'))}Mbps Full Duplex, Flow Control: RX/TX",
            "INFO",
        )
    if r < 0.22:
        return (f"{iface}: Link is Down", g.pick(("WARN", "WARN", "ERROR")))
    if r < 0.32:
        return (
            f'[{g.r.uniform(0, 99999):.6f}] audit: type=1400 apparmor="ALLOWED" operation="open" '
            f'profile="/usr/sbin/{g.pick(("nginx", "mysqld", "cupsd"))}" name="{g.path()}" '
            f"pid={g.num(100, 65000)}",
            "DEBUG",
        )
    if r < 0.42:
        return (
            f"systemd[1]: Started {g.pick(('Daily apt upgrade', 'Session', 'Cleanup of Temporary Dirs'))}"
            f" {g.num(1, 9999)}.",
            "INFO",
        )
    if r < 0.50:
        return (
            f"systemd[1]: {g.pick(('nginx', 'postgresql', 'kubelet', 'cron'))}.service: Main process "
            f"exited, code=exited, status={g.num(1, 3)}/FAILURE",
            "ERROR",
        )
    if r < 0.58:
        return (
            f"CPU{g.num(0, 63)}: Core temperature above threshold, cpu clock throttled (total events = "
            f"{g.num(1, 9999)})",
            "WARN",
        )
    if r < 0.63:
        return (f"CPU{g.num(0, 63)}: Core temperature/speed normal", "INFO")
    if r < 0.72:
        return (f"EXT4-fs ({dev}{g.num(1, 4)}): mounted filesystem with ordered data mode. Opts: (null)", "INFO")
    if r < 0.78:
        return (f"{dev}: {g.pick(('Write cache', 'Read cache'))}: enabled, supports DPO and FUA", "DEBUG")
    if r < 0.84:
        return (f"ata{g.num(1, 8)}: hard resetting link", g.pick(("WARN", "INFO")))
    if r < 0.90:
        return (
            f"TCP: request_sock_TCP: Possible SYN flooding on port {g.num(80, 9000)}. Sending cookies.",
            g.pick(("WARN", "INFO")),
        )
    if r < 0.95:
        return (
            f"usb {g.num(1, 4)}-{g.num(1, 9)}: new high-speed USB device number {g.num(1, 30)} using xhci_hcd",
            "INFO",
        )
    return (f"NFS: server {g.priv_ip()} not responding, still trying", "WARN")


def _k8s(g: _G) -> tuple[str, str]:
    r = g.r.random()
    pod = f"{g.pick(_PODS)}-{g.hexid(10)}-{g.hexid(5)}"
    ns = g.pick(("prod", "staging", "default", "payments"))
    if r < 0.20:
        return (f"Successfully assigned {ns}/{pod} to node-{g.num(1, 40)}", "INFO")
    if r < 0.32:
        return (
            f'Container image "registry.local/{g.pick(_PODS)}:{g.num(1, 9)}.{g.num(0, 30)}.{g.num(0, 99)}"'
            f" already present on machine",
            "INFO",
        )
    if r < 0.42:
        return (f"Started container {g.pick(_PODS)} in pod {ns}/{pod}", "INFO")
    if r < 0.52:
        return (f'Readiness probe failed: Get "http://{g.priv_ip()}:8080/health": context deadline exceeded', "WARN")
    if r < 0.60:
        return (f"Back-off restarting failed container {g.pick(_PODS)} in pod {ns}/{pod}", "WARN")
    if r < 0.66:
        return (
            f"Liveness probe failed: HTTP probe failed with statuscode: {g.pick((500, 503))}",
            g.pick(("WARN", "ERROR")),
        )
    if r < 0.72:
        return (f"Scaled up replica set {g.pick(_PODS)}-{g.hexid(10)} to {g.num(1, 20)}", "INFO")
    if r < 0.78:
        return (
            f"0/{g.num(3, 40)} nodes are available: {g.num(1, 9)} Insufficient cpu. preemption: not helpful",
            "WARN",
        )
    if r < 0.84:
        return (f'Pulling image "registry.local/{g.pick(_PODS)}:{g.num(1, 9)}.{g.num(0, 30)}"', "DEBUG")
    if r < 0.90:
        return (
            f'Failed to pull image "registry.local/{g.pick(_PODS)}:{g.num(1, 9)}.{g.num(0, 30)}": '
            f"rpc error: code = NotFound",
            "ERROR",
        )
    if r < 0.95:
        return (f"Updated lease for node node-{g.num(1, 40)} (renew time {g.ms(2, 90)})", "DEBUG")
    return (f"Killing container with id containerd://{g.hexid(16)}: Need to kill Pod", "INFO")


def _sap(g: _G) -> tuple[str, str]:
    r = g.r.random()
    tc, doc, cc = g.pick(_TCODES), g.num(4500000000, 4599999999), g.pick(("1000", "2000", "3100"))
    u = g.user().upper()
    if r < 0.25:
        return (f"Transaction {tc} user {u}: document {doc} posted in company code {cc}", "INFO")
    if r < 0.35:
        return (f"Transaction {tc} user {u}: document {doc} saved as draft, {g.num(1, 40)} items", "INFO")
    if r < 0.45:
        return (
            f"Background job {g.pick(('RSBTCDEL', 'SAP_REORG_JOBS', 'ZBILLING_RUN'))} "
            f"({g.num(10000000, 99999999)}) finished, runtime {g.num(1, 900)} s",
            "INFO",
        )
    if r < 0.53:
        return (
            f"Transaction {tc} user {u}: material {g.num(100000, 999999)} not maintained in plant {g.num(1000, 1999)}",
            "WARN",
        )
    if r < 0.60:
        return (
            f"Update task for document {doc} terminated: ABAP runtime error "
            f"{g.pick(('CONVT_NO_NUMBER', 'MESSAGE_TYPE_X', 'COMPUTE_INT_ZERODIVIDE'))}",
            "ERROR",
        )
    if r < 0.66:
        return (
            f"RFC call to {g.pick(('ERP_PRD', 'CRM_PRD', 'BW_PRD'))} function "
            f"{g.pick(('BAPI_PO_CREATE1', 'RFC_READ_TABLE', 'BAPI_SALESORDER_CREATEFROMDAT2'))} returned "
            f"in {g.ms(5, 400)}",
            "DEBUG",
        )
    if r < 0.72:
        return (
            f"Credit limit check for customer {g.num(100000, 999999)}: exposure {g.r.uniform(50, 99):.1f}% of limit",
            g.pick(("INFO", "WARN")),
        )
    if r < 0.78:
        return (f"IDoc {g.num(100000000, 999999999)} status 53: application document posted", "INFO")
    if r < 0.84:
        return (
            f"IDoc {g.num(100000000, 999999999)} status 51: application document not posted, "
            f"{g.pick(('vendor blocked', 'price missing', 'period closed'))}",
            "ERROR",
        )
    if r < 0.90:
        return (f"User {u} logged on to client {g.num(100, 999)} from terminal {g.ip()}", "INFO")
    if r < 0.95:
        return (
            f"Enqueue: lock {g.pick(('EVVBAKE', 'EMEKKOE', 'EFKKOP'))} for document {doc} held by "
            f"{g.user().upper()}, waiting",
            "WARN",
        )
    return (
        f"Work process {g.num(0, 40)} restarted after {g.pick(('PRIV mode', 'memory limit'))}",
        g.pick(("WARN", "ERROR")),
    )


_EMITTERS: dict[str, Emit] = {
    "web": _web,
    "app": _app,
    "db": _db,
    "auth": _auth,
    "kernel": _kernel,
    "k8s": _k8s,
    "sap": _sap,
}
_FAMILY_WEIGHTS = (
    ("web", 0.24),
    ("app", 0.22),
    ("db", 0.13),
    ("auth", 0.12),
    ("kernel", 0.10),
    ("k8s", 0.11),
    ("sap", 0.08),
)
_SERVICES = {
    "web": ("nginx", "haproxy", "envoy"),
    "app": ("checkout", "billing", "catalog", "notifications"),
    "db": ("postgresql", "mysql"),
    "auth": ("sshd", "sudo", "keycloak"),
    "kernel": ("kernel", "systemd"),
    "k8s": ("kubelet", "kube-scheduler", "kube-controller-manager"),
    "sap": ("sap-erp", "sap-crm"),
}
_HOSTS = {
    "web": "web",
    "app": "app",
    "db": "db",
    "auth": "bastion",
    "kernel": "node",
    "k8s": "k8s-node",
    "sap": "sap-prd",
}

# ---------------------------------------------------------------------------------------------------------
# anomalies: each returns (message, level, family)


def _a_system_failure(g: _G) -> tuple[str, str, str]:
    r = g.r.random()
    if r < 0.2:
        return ("Kernel panic - not syncing: Fatal exception in interrupt", "FATAL", "kernel")
    if r < 0.4:
        return (
            f"{g.pick(_CLASSES)}: process crashed with signal 11 (SIGSEGV), core dumped to /var/crash/core.{g.num()}",
            g.pick(("FATAL", "ERROR")),
            "app",
        )
    if r < 0.55:
        return (
            f"Node node-{g.num(1, 40)} status is now: NodeNotReady, kubelet stopped posting node status",
            "ERROR",
            "k8s",
        )
    if r < 0.7:
        return (f'PANIC: could not write to file "pg_wal/{g.hexid(24).upper()}": Input/output error', "FATAL", "db")
    if r < 0.85:
        return (
            f"Short dump SYSTEM_CORE_DUMPED in work process {g.num(0, 40)}, update system deactivated",
            "FATAL",
            "sap",
        )
    return (
        f"all {g.num(2, 6)} replicas of {g.pick(_DOWNSTREAM)} are unavailable, cluster quorum lost",
        g.pick(("FATAL", "ERROR")),
        "app",
    )


def _a_security(g: _G) -> tuple[str, str, str]:
    r = g.r.random()
    ip = g.ip()
    if r < 0.1:
        return (
            f"Failed password for root from {ip} port {g.num(1024, 65535)} ssh2 ({g.num(50, 900)} "
            f"failures from this address in the last {g.num(1, 5)} min)",
            "WARN",
            "auth",
        )
    if r < 0.2:  # one line of a brute force looks like any failed login: only the rate tells (hard case)
        return (
            f"Failed password for {g.pick(('root', 'admin', 'oracle', 'test'))} from {ip} port "
            f"{g.num(1024, 65535)} ssh2",
            "WARN",
            "auth",
        )
    if r < 0.35:
        return (
            f"possible SQL injection blocked in parameter '{g.pick(('id', 'q', 'sort'))}' from {ip}: ' OR 1=1 --",
            g.pick(("WARN", "ERROR")),
            "web",
        )
    if r < 0.5:
        return (
            f"reverse mapping checking getaddrinfo for host-{g.num()}.example.net [{ip}] failed - "
            f"POSSIBLE BREAK-IN ATTEMPT!",
            g.pick(("WARN", "INFO")),
            "auth",
        )
    if r < 0.65:
        return (
            f"privilege escalation: user www-data executed /bin/sh via sudo on {g.pick(('web', 'app'))}-"
            f"{g.num(1, 30):02d}",
            "ERROR",
            "auth",
        )
    if r < 0.8:
        return (
            f'{ip} - - "GET /{g.pick(("../../etc/passwd", ".env", "wp-admin/setup.php", ".git/config"))}'
            f' HTTP/1.1" {g.pick((200, 403, 404))} {g.num(0, 9000)} "-" "sqlmap/1.7"',
            g.pick(("WARN", "INFO")),
            "web",
        )
    return (
        f"User {g.user().upper()} granted profile SAP_ALL outside change window by {g.user().upper()}",
        g.pick(("WARN", "ERROR")),
        "sap",
    )


def _a_performance(g: _G) -> tuple[str, str, str]:
    r = g.r.random()
    if r < 0.25:
        return (
            f"p99 latency for {g.pick(_DOWNSTREAM)} is {g.ms(3000, 20000)}, SLO is 500ms "
            f"(burn rate {g.r.uniform(5, 40):.1f}x)",
            "WARN",
            "app",
        )
    if r < 0.45:
        return (
            f"duration: {g.r.uniform(15000, 120000):.3f} ms  statement: SELECT * FROM {g.table()} "
            f"JOIN {g.table()} USING (id) WHERE created_at > now() - interval '1 day'",
            g.pick(("WARN", "WARN", "INFO")),
            "db",
        )
    if r < 0.6:
        return (
            f"GC pause (G1 Evacuation Pause) {g.ms(2500, 15000)}, heap {g.num(90, 99)}% after collection",
            "WARN",
            "app",
        )
    if r < 0.75:
        return (
            f"request queue depth {g.num(2000, 50000)} exceeds limit, thread pool saturated "
            f"({g.num(200, 400)}/{g.num(200, 400)} busy)",
            g.pick(("WARN", "ERROR")),
            "app",
        )
    if r < 0.88:
        return (
            f"Dialog response time {g.ms(5000, 30000)} above threshold for transaction {g.pick(_TCODES)}",
            "WARN",
            "sap",
        )
    return (
        f"upstream response time {g.ms(20000, 60000)} for GET {g.path()}, {g.num(50, 500)} requests waiting",
        "WARN",
        "web",
    )


def _a_corruption(g: _G) -> tuple[str, str, str]:
    r = g.r.random()
    if r < 0.25:
        return (
            f"invalid page in block {g.num(1, 999999)} of relation base/{g.num(10000, 99999)}/{g.num(10000, 99999)}",
            "ERROR",
            "db",
        )
    if r < 0.45:
        return (
            f"EXT4-fs error (device {g.pick(_DEVS)}{g.num(1, 4)}): ext4_validate_block_bitmap: "
            f"bad block bitmap checksum for group {g.num(0, 9999)}",
            "ERROR",
            "kernel",
        )
    if r < 0.65:
        return (f"checksum mismatch for object {g.hexid(40)}: expected {g.hexid(8)} got {g.hexid(8)}", "ERROR", "app")
    if r < 0.8:
        return (
            f"Document {g.num(4500000000, 4599999999)} inconsistent: sum of line items "
            f"{g.r.uniform(10, 9000):.2f} differs from header total {g.r.uniform(10, 9000):.2f}",
            g.pick(("ERROR", "WARN")),
            "sap",
        )
    return (
        f'could not read block {g.num(0, 99999)} in file "base/{g.num(10000, 99999)}/{g.num()}": '
        f"read only 0 of 8192 bytes",
        g.pick(("ERROR", "FATAL")),
        "db",
    )


def _a_exhaustion(g: _G) -> tuple[str, str, str]:
    r = g.r.random()
    if r < 0.2:
        return (
            f"Out of memory: Killed process {g.num(100, 65000)} ({g.pick(('java', 'postgres', 'python3'))}"
            f") total-vm:{g.num(1000000, 9000000)}kB, anon-rss:{g.num(1000000, 9000000)}kB",
            g.pick(("ERROR", "FATAL")),
            "kernel",
        )
    if r < 0.35:
        return (f"write {g.path()}: No space left on device", "ERROR", "app")
    if r < 0.5:
        return ("accept4() failed (24: Too many open files)", "ERROR", "web")
    if r < 0.62:
        return (
            f"Container {g.pick(_PODS)} in pod {g.pick(('prod', 'payments'))}/{g.pick(_PODS)}-"
            f"{g.hexid(10)} was OOMKilled (limit {g.num(256, 4096)}Mi)",
            "ERROR",
            "k8s",
        )
    if r < 0.75:
        return (
            f"filesystem /var/lib/{g.pick(('postgresql', 'docker', 'kafka'))} usage at "
            f"{g.r.uniform(95, 100):.1f}%, {g.num(10, 900)}MB free",
            g.pick(("WARN", "ERROR")),
            "kernel",
        )
    if r < 0.88:
        return (f"FATAL:  sorry, too many clients already ({g.num(100, 500)} connections)", "FATAL", "db")
    return (f"Lock table overflow: {g.num(50000, 99999)} entries in use, enqueue requests rejected", "ERROR", "sap")


def _a_network(g: _G) -> tuple[str, str, str]:
    r = g.r.random()
    if r < 0.2:
        return (
            f"packet loss {g.r.uniform(20, 80):.0f}% to {g.priv_ip()} over last {g.num(1, 10)} min, "
            f"rtt {g.ms(400, 3000)}",
            g.pick(("WARN", "ERROR")),
            "kernel",
        )
    if r < 0.35:
        return (
            f"{g.pick(_IFACES)}: link flapping detected ({g.num(5, 60)} state changes in {g.num(1, 5)} min)",
            "ERROR",
            "kernel",
        )
    if r < 0.55:
        return (
            f"DNS resolution failed for {g.pick(_DOWNSTREAM)}.svc.cluster.local: SERVFAIL from {g.priv_ip()}",
            g.pick(("ERROR", "WARN")),
            "k8s",
        )
    if r < 0.7:
        return (
            f"upstream connection reset by peer while reading response header, {g.num(100, 2000)} "
            f"resets in the last minute",
            "ERROR",
            "web",
        )
    if r < 0.85:
        return (
            f"TCP retransmission rate {g.r.uniform(8, 40):.1f}% on {g.pick(_IFACES)} exceeds threshold",
            "WARN",
            "kernel",
        )
    return (f"BGP session to {g.priv_ip()} went down: hold timer expired", "ERROR", "kernel")


_ANOMALY_EMITTERS = {
    "system_failure": _a_system_failure,
    "security_breach": _a_security,
    "performance_degradation": _a_performance,
    "data_corruption": _a_corruption,
    "resource_exhaustion": _a_exhaustion,
    "network_anomaly": _a_network,
}

_BASE_ANOMALY_RATE = 0.02  # scattered anomalies
_INCIDENT_START = 0.0015  # per event: an incident begins
_INCIDENT_RATE = 0.35  # share of anomalous events during an incident


def iter_events(seed: int = 0, start: float = _START) -> Iterator[dict]:
    """Endless, reproducible stream of labelled events (same seed -> same events)."""
    r = random.Random(seed)
    g = _G(r)
    families = [f for f, _ in _FAMILY_WEIGHTS]
    cum, acc = [], 0.0
    for _, w in _FAMILY_WEIGHTS:
        acc += w
        cum.append(acc)
    t = start
    incident_left, incident_type = 0, ""
    fromts = datetime.fromtimestamp
    utc = UTC
    while True:
        t += r.expovariate(50.0)
        if incident_left:
            incident_left -= 1
            anomaly = incident_type if r.random() < _INCIDENT_RATE else None
        else:
            if r.random() < _INCIDENT_START:
                incident_left, incident_type = r.randint(20, 120), g.pick(ANOMALY_TYPES)
            anomaly = g.pick(ANOMALY_TYPES) if r.random() < _BASE_ANOMALY_RATE else None
        if anomaly:
            message, level, family = _ANOMALY_EMITTERS[anomaly](g)
        else:
            x = r.random()
            family = families[-1]
            for f, c in zip(families, cum):
                if x < c:
                    family = f
                    break
            message, level = _EMITTERS[family](g)
        event = {
            "@timestamp": fromts(t, utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "message": message,
            "host.name": f"{_HOSTS[family]}-{r.randint(1, 12):02d}",
            "service.name": g.pick(_SERVICES[family]),
            "labels": {"level": level, "is_anomaly": anomaly is not None, "anomaly_type": anomaly, "family": family},
        }
        if r.random() < 0.8:
            event["log.level"] = _SPELLING[family][level]
        yield event


def generate(n: int, seed: int = 0) -> list[dict]:
    """The first n events of iter_events(seed)."""
    it = iter_events(seed)
    return [next(it) for _ in range(n)]
