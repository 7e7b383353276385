"""Security checks: the pipeline through the broker's SASL/PLAIN listener; secrets in no log line, metric or
error message; a tampered model refused; every SQL statement parameterised (or built from constants only)."""

from __future__ import annotations

import ast
import shutil
import signal
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from testkit.clients import consume_all, free_port, produce, query, scrape, wait_for
from testkit.pipeline import MODELS, ROOT, StreamerProcess, mixed_values


def canary() -> str:
    """A password nobody would print by accident, so finding it anywhere means it leaked."""
    return f"Canary-{uuid.uuid4().hex[:12]}-pw"


def assert_not_leaked(secret: str, output: str, endpoints: dict[str, str]) -> None:
    """Not in the process output, not in any endpoint's body; and the output is JSON lines as asked."""
    assert secret not in output
    for path, body in endpoints.items():
        assert secret not in body, path
    assert_json_lines(output)


def sasl_env(streamer_env: dict, sasl: dict, password: str, metrics_port: int) -> dict:
    return {
        **streamer_env,
        "STREAMER_BOOTSTRAP_SERVERS": sasl["bootstrap.servers"],
        "STREAMER_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STREAMER_KAFKA_SASL_MECHANISM": "PLAIN",
        "STREAMER_KAFKA_SASL_USERNAME": sasl["sasl.username"],
        "STREAMER_KAFKA_SASL_PASSWORD": password,
        "STREAMER_LOG_FORMAT": "json",
        "STREAMER_METRICS_PORT": str(metrics_port),
    }


def assert_json_lines(output: str) -> None:
    """With STREAMER_LOG_FORMAT=json every line streamer writes is a JSON object (librdkafka's own `%N|` lines
    and a final `streamer run:` error line excepted)."""
    for line in output.splitlines():
        if line.strip() and not line.startswith(("%", "streamer run:")):
            assert isinstance(orjson.loads(line), dict), line


# --- (a) SASL ------------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_pipeline_runs_through_the_sasl_listener_without_printing_the_password(
    kafka_sasl_config, streamer_env, topics, migrated_db_url, tmp_path
):
    sasl = kafka_sasl_config
    password = sasl["sasl.password"]
    client = {k: v for k, v in sasl.items() if k != "bootstrap.servers"}
    values, invalid = mixed_values(400)
    produce(sasl["bootstrap.servers"], topics.raw, values, config=client)
    port = free_port()
    proc = StreamerProcess(sasl_env(streamer_env, sasl, password, port), tmp_path / "sasl.log")
    try:
        valid = len(values) - len(invalid)
        wait_for(
            lambda: query(migrated_db_url, "SELECT count(*) FROM log_entries")[0][0] == valid,
            timeout=90,
            what=f"{valid} events stored by streamer run over SASL",
        )
        scored = consume_all(sasl["bootstrap.servers"], topics.scored, expected=valid, config=client)
        assert len(scored) == valid
        endpoints = {path: scrape(port, path)[1] for path in ("/metrics", "/readyz", "/healthz")}
        assert "streamer_events_scored" in endpoints["/metrics"]
        assert proc.terminate() == 0, proc.output()[-3000:]
        output = proc.output()
    finally:
        proc.close()
    assert_not_leaked(password, output, endpoints)


@pytest.mark.integration
@pytest.mark.slow
def test_a_refused_sasl_password_is_not_printed_or_exported(kafka_sasl_config, streamer_env, tmp_path):
    secret = canary()
    port = free_port()
    proc = StreamerProcess(sasl_env(streamer_env, kafka_sasl_config, secret, port), tmp_path / "refused.log")
    try:
        wait_for(
            lambda: "authentication" in proc.output().lower(), timeout=60, what="the broker refusing the SASL login"
        )
        endpoints = {path: scrape(port, path)[1] for path in ("/metrics", "/readyz", "/healthz")}
        proc.terminate()
        output = proc.output()
    finally:
        proc.close()
    assert_not_leaked(secret, output, endpoints)


# --- (b) secrets in error messages -----------------------------------------------------------------------


def streamer_run(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamer", "run", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.integration
@pytest.mark.parametrize("where, log_format", [("userinfo", "text"), ("query", "json")])
def test_a_wrong_database_password_is_not_printed(database_url, streamer_env, tmp_path, where, log_format):
    secret = canary()
    parts = urlsplit(database_url)
    host = parts.netloc.rpartition("@")[2]
    if where == "userinfo":
        url = urlunsplit((parts.scheme, f"{parts.username}:{secret}@{host}", parts.path, parts.query, ""))
    else:
        query_string = f"{parts.query}&password={secret}" if parts.query else f"password={secret}"
        url = urlunsplit((parts.scheme, f"{parts.username}@{host}", parts.path, query_string, ""))
    env = {
        **streamer_env,
        "STREAMER_DATABASE_URL": url,
        "STREAMER_LOG_FORMAT": log_format,
        "STREAMER_MODELS_DIR": str(MODELS),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            # start-up waits for the database; one refused attempt is enough, then stop it.
            wait_for(
                lambda: "password authentication failed" in log_path.read_text(errors="replace"),
                timeout=60,
                what="the database refusing the password",
            )
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log_path.read_text(errors="replace")
    assert code != 0
    assert secret not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith("streamer run: cannot connect to PostgreSQL"), last
    if log_format == "json":
        assert_json_lines(output)


@pytest.mark.integration
def test_an_unknown_kafka_property_error_does_not_print_the_password(streamer_env):
    secret = canary()
    env = {**streamer_env, "STREAMER_MODELS_DIR": str(MODELS), "STREAMER_KAFKA_SASL_PASSWORD": secret}
    done = streamer_run(["--kafka-config", "no.such.property=1", "--kafka-config", f"ssl.key.password={secret}"], env)
    assert done.returncode != 0
    assert secret not in done.stdout + done.stderr


@pytest.mark.integration
def test_an_unknown_kafka_property_is_one_clear_line(streamer_env):
    env = {**streamer_env, "STREAMER_MODELS_DIR": str(MODELS)}
    done = streamer_run(["--kafka-config", "no.such.property=1"], env)
    assert done.returncode != 0
    err = done.stderr.strip()
    assert "Traceback" not in err, err[-2000:]
    assert err.splitlines()[-1].startswith("streamer run: ") and "no.such.property" in err.splitlines()[-1]


@pytest.mark.parametrize("pair", ["sasl.password:{}", "sasl.password {}"])
def test_a_malformed_kafka_config_pair_does_not_print_the_password(pair):
    secret = canary()
    done = streamer_run(["--kafka-config", pair.format(secret)], {"PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().startswith("streamer run: --kafka-config")
    assert secret not in done.stdout + done.stderr


# --- (c) tampered model ----------------------------------------------------------------------------------


def test_a_model_whose_sha256_does_not_match_refuses_to_load(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    target = models / "level_model.npz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content: only the sha256 can tell
    target.write_bytes(bytes(data))
    # Nothing to connect to: the model is refused whatever the services do, and at once.
    env = {
        "PATH": "/usr/bin:/bin",
        "STREAMER_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "STREAMER_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    started = time.monotonic()
    done = streamer_run(["--models", str(models)], env, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    *logged, last = done.stderr.strip().splitlines()
    assert last.startswith("streamer run: ") and "level_model.npz" in last and "sha256" in last, last
    assert all(" WARNING " in line or " INFO " in line for line in logged), logged  # start-up log lines only
    assert time.monotonic() - started < 30  # not after the 60 s wait for a database


# --- (d) SQL is parameterised ----------------------------------------------------------------------------

SQL_CALLS = {"execute", "executemany", "copy"}
# (file, statement expression): why it is safe although the scanner cannot prove it.
ALLOWED: dict[tuple[str, str], str] = {
    ("streamer/db/migrations.py", "m.sql"): "each Migration.sql is a string literal in the MIGRATIONS constant",
    ("streamer/db/__init__.py", "sql"): "one() runs its caller's statement; every one(conn, sql) call is checked",
    ("streamer/api/app.py", "sql"): "one of streamer.commands.templates' constant queries, picked by a checked enum",
    ("streamer/partitions.py", "statement"): "sql.SQL(constant).format(sql.Identifier/sql.Literal) from maintain()",
    ("streamer/api/queries.py", "sql"): "joined from constant fragments; every value from a request is a %s parameter",
}


class _Scope:
    def __init__(self, node: ast.AST, parent: _Scope | None):
        self.parent = parent
        self.bindings: dict[str, list[ast.expr | None]] = {}  # None: bound to something unknowable
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None:
                    self.bindings.setdefault(arg.arg, []).append(None)

    def bind(self, target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            self.bindings.setdefault(target.id, []).append(value)
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = (
                value.elts
                if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts)
                else [None] * len(target.elts)
            )
            for t, v in zip(target.elts, values):
                self.bind(t, v)

    def lookup(self, name: str) -> list[ast.expr | None] | None:
        scope = self
        while scope is not None:
            if name in scope.bindings:
                return scope.bindings[name]
            scope = scope.parent
        return None


def _collect(node: ast.AST, scope: _Scope, calls: list) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner = _Scope(child, scope)
            _collect(child, inner, calls)
            continue
        if isinstance(child, ast.Assign):
            for t in child.targets:
                scope.bind(t, child.value)
        elif isinstance(child, (ast.AugAssign, ast.AnnAssign)) and child.value is not None:
            scope.bind(child.target, child.value)
        elif isinstance(child, (ast.For, ast.AsyncFor, ast.comprehension)):
            scope.bind(child.target, None)
        elif isinstance(child, ast.withitem) and child.optional_vars is not None:
            scope.bind(child.optional_vars, None)
        elif isinstance(child, ast.NamedExpr):
            scope.bind(child.target, child.value)
        elif isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute):
            f = child.func
            if f.attr in ("append", "extend", "insert") and isinstance(f.value, ast.Name) and child.args:
                scope.bind(f.value, child.args[-1])  # what a list of SQL fragments is built from
            if f.attr in SQL_CALLS and child.args and (f.attr != "copy" or _looks_like_db(f.value)):
                calls.append((child, scope))
        elif (
            isinstance(child, ast.Call)
            and isinstance(child.func, ast.Name)
            and child.func.id == "one"
            and len(child.args) >= 2
        ):
            calls.append((child, scope))  # streamer.db.one(conn, sql, params): its statement is checked here
        _collect(child, scope, calls)


def _looks_like_db(receiver: ast.expr) -> bool:
    # `.copy(...)` is also dict.copy/shutil.copy; only a cursor's or connection's copy() takes SQL.
    text = ast.unparse(receiver).lower()
    return any(word in text for word in ("cur", "conn", "db"))


def _constant(expr: ast.expr | None, scope: _Scope, seen: frozenset = frozenset()) -> bool:
    """True when the value of expr can only be built from literals (so no input can reach the SQL text)."""
    if expr is None:
        return False
    if isinstance(expr, ast.Constant):
        return True
    if isinstance(expr, ast.JoinedStr):
        return all(_constant(v, scope, seen) for v in expr.values)
    if isinstance(expr, ast.FormattedValue):
        return _constant(expr.value, scope, seen) and (
            expr.format_spec is None or _constant(expr.format_spec, scope, seen)
        )
    if isinstance(expr, ast.BinOp):
        return _constant(expr.left, scope, seen) and _constant(expr.right, scope, seen)
    if isinstance(expr, (ast.Tuple, ast.List, ast.Set)):
        return all(_constant(e, scope, seen) for e in expr.elts)
    if isinstance(expr, ast.IfExp):
        return _constant(expr.body, scope, seen) and _constant(expr.orelse, scope, seen)
    if isinstance(expr, ast.Subscript):
        return _constant(expr.value, scope, seen)
    if isinstance(expr, ast.Name):
        if expr.id in seen:
            return True  # a self-reference (x = x + "...") adds nothing new
        bindings = scope.lookup(expr.id)
        return bool(bindings) and all(_constant(v, scope, seen | {expr.id}) for v in bindings)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
        f = expr.func
        path = ast.unparse(f)
        if path.endswith(("sql.Identifier", "sql.Literal", "sql.Placeholder")):
            return True  # psycopg quotes these itself
        if path.endswith("sql.SQL"):
            return all(_constant(a, scope, seen) for a in expr.args)
        if f.attr in ("join", "format", "strip", "upper", "lower"):
            return (
                _constant(f.value, scope, seen)
                and all(_constant(a, scope, seen) for a in expr.args)
                and all(_constant(k.value, scope, seen) for k in expr.keywords)
            )
    return False


def unsafe_sql(source: str, filename: str) -> list[str]:
    """`file:line: call` for every execute()/executemany()/copy() whose SQL text is not built from constants."""
    tree = ast.parse(source, filename)
    calls: list = []
    module = _Scope(tree, None)
    _collect(tree, module, calls)
    found = []
    for call, scope in calls:
        statement = call.args[1] if isinstance(call.func, ast.Name) else call.args[0]  # one(conn, sql, ...)
        if _constant(statement, scope) or (filename, ast.unparse(statement)) in ALLOWED:
            continue
        found.append(f"{filename}:{call.lineno}: {ast.unparse(call)[:160]}")
    return found


def test_every_sql_statement_in_streamer_is_parameterised():
    findings = []
    files = sorted((ROOT / "streamer").rglob("*.py"))
    assert len(files) > 10
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        findings += unsafe_sql(path.read_text(), rel)
    assert not findings, (
        "SQL text built from non-constant values (use %s parameters, COPY, or psycopg.sql "
        "Identifier/Literal; or add a justified entry to ALLOWED):\n" + "\n".join(findings)
    )


@pytest.mark.parametrize(
    "snippet, safe",
    [
        ('cur.execute("SELECT 1 WHERE a = %s", [x])', True),
        ('Q = "SELECT " + ", ".join(COLS)\nCOLS = ("a", "b")\ncur.execute(Q)', True),
        (
            'def f(conn, since):\n    where = []\n    if since:\n        where.append("t >= %s")\n'
            "    conn.execute(f\"SELECT 1 WHERE {' AND '.join(where)}\", [since])",
            True,
        ),
        (
            "with conn.cursor() as cur:\n    with cur.copy(f\"COPY t ({', '.join(COLS)}) FROM STDIN\"): pass\n"
            'COLS = ("a",)',
            True,
        ),
        ('conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(name)))', True),
        ("def f(cur, name):\n    cur.execute(f\"SELECT * FROM t WHERE name = '{name}'\")", False),
        ("def f(cur, name):\n    cur.execute(\"SELECT * FROM t WHERE name = '%s'\" % name)", False),
        ('def f(cur, name):\n    cur.execute("SELECT * FROM {}".format(name))', False),
        ('def f(cur, name):\n    q = "SELECT * FROM t WHERE x = " + name\n    cur.execute(q)', False),
        ('def f(cur, parts):\n    where = []\n    where.append(parts)\n    cur.execute(" AND ".join(where))', False),
        ('def f(conn, table):\n    conn.execute(sql.SQL(f"DROP TABLE {table}"))', False),
    ],
)
def test_the_sql_scanner_tells_constant_from_built_statements(snippet, safe):
    assert (unsafe_sql(snippet, "snippet.py") == []) == safe, snippet
