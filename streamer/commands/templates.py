"""streamer templates: templates mined from the stream (table log_templates), new or surging ones."""

HELP = "list log templates mined from the stream: new ones (--new) or surging ones (--surging)"

# New: first seen by any member of the group inside the window.
NEW_SQL = """
SELECT template_id, service, template, first_seen, last_seen, count
FROM log_templates WHERE first_seen >= now() - %s::interval
ORDER BY first_seen DESC LIMIT %s"""

# Surging: the rate inside the window (log_template_hours, whole hours: the window starts at the hour
# `since` ago falls in) against the template's own rate before it; +1 event/h keeps new templates finite.
SURGING_SQL = """
WITH w AS (SELECT date_trunc('hour', now() - %s::interval) AS start),
recent AS (SELECT h.template_id, sum(h.count) AS n FROM log_template_hours h, w WHERE h.hour >= w.start
           GROUP BY h.template_id),
rates AS (
    SELECT t.template_id, t.service, t.template, t.first_seen, t.last_seen, t.count,
           r.n / greatest(extract(epoch FROM now() - w.start) / 3600.0, 1.0 / 60) AS recent_per_hour,
           greatest(t.count - r.n, 0) / greatest(extract(epoch FROM w.start - t.first_seen) / 3600.0, 1.0)
               AS before_per_hour
    FROM recent r JOIN log_templates t USING (template_id), w)
SELECT *, recent_per_hour / (1 + before_per_hour) AS surge FROM rates ORDER BY surge DESC LIMIT %s"""

ALL_SQL = """
SELECT template_id, service, template, first_seen, last_seen, count
FROM log_templates ORDER BY count DESC LIMIT %s"""


def configure(parser):
    from streamer.config import add_connection_arguments

    add_connection_arguments(parser)
    g = parser.add_argument_group("templates")
    which = g.add_mutually_exclusive_group()
    which.add_argument("--new", action="store_true", help="templates first seen within --since")
    which.add_argument(
        "--surging",
        action="store_true",
        help="templates seen within --since, by their rate then against their own earlier rate "
        "(hourly counts: the window starts on the hour)",
    )
    g.add_argument(
        "--since",
        default="1h",
        metavar="AGE",
        help="window for --new/--surging, a PostgreSQL interval such as 1h, 30 min, 2 days (default 1h)",
    )
    g.add_argument("--limit", type=int, default=50, metavar="N", help="at most N templates (default 50)")


def _interval(since: str) -> str:
    import re

    from streamer.errors import ConfigError

    m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", since)
    if m:
        return f"{m.group(1)} {dict(s='seconds', m='minutes', h='hours', d='days')[m.group(2)]}"
    if not re.fullmatch(r"[\w\s.]+", since):
        raise ConfigError(f"--since must be like 1h, 30m or '2 days', got {since!r}")
    return since


def run(args) -> int:
    from streamer.config import settings_from_args
    from streamer.db import connect

    settings = settings_from_args(args)
    with connect(settings.database_url) as conn:
        if args.new:
            rows = conn.execute(NEW_SQL, (_interval(args.since), args.limit)).fetchall()
        elif args.surging:
            rows = conn.execute(SURGING_SQL, (_interval(args.since), args.limit)).fetchall()
        else:
            rows = conn.execute(ALL_SQL, (args.limit,)).fetchall()
    for row in rows:
        tid, service, template, first_seen, last_seen, count = row[:6]
        rate = f" recent={row[6]:.1f}/h before={row[7]:.1f}/h surge={row[8]:.1f}x" if len(row) > 6 else ""
        print(
            f"{tid} {service or '-'} count={count}{rate} first={first_seen.isoformat(timespec='seconds')} "
            f"last={last_seen.isoformat(timespec='seconds')} {template}"
        )
    return 0
