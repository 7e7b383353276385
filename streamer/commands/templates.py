"""streamer templates: templates mined from the stream (table log_templates), new or surging ones."""

HELP = "list log templates mined from the stream: new ones (--new) or surging ones (--surging)"

# New: first seen by any member of the group inside the window.
NEW_SQL = """
SELECT template_id, service, template, first_seen, last_seen, count
FROM log_templates WHERE first_seen >= now() - %s::interval
ORDER BY first_seen DESC LIMIT %s"""

# Surging: seen inside the window, ranked by events per hour since first seen (no per-window history is kept,
# so this is a rate over the template's lifetime; a template born in a burst ranks high).
SURGING_SQL = """
SELECT template_id, service, template, first_seen, last_seen, count,
       count / greatest(extract(epoch FROM last_seen - first_seen) / 3600.0, 1.0 / 60) AS per_hour
FROM log_templates WHERE last_seen >= now() - %s::interval
ORDER BY per_hour DESC LIMIT %s"""

ALL_SQL = """
SELECT template_id, service, template, first_seen, last_seen, count
FROM log_templates ORDER BY count DESC LIMIT %s"""


def configure(parser):
    from streamer.config import add_connection_arguments

    add_connection_arguments(parser)
    g = parser.add_argument_group("templates")
    which = g.add_mutually_exclusive_group()
    which.add_argument("--new", action="store_true", help="templates first seen within --since")
    which.add_argument("--surging", action="store_true",
                       help="templates seen within --since, by events per hour since first seen")
    g.add_argument("--since", default="1h", metavar="AGE",
                   help="window for --new/--surging, a PostgreSQL interval such as 1h, 30 min, 2 days (default 1h)")
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
        rate = f" {row[6]:.1f}/h" if len(row) > 6 else ""
        print(f"{tid} {service or '-'} count={count}{rate} first={first_seen.isoformat(timespec='seconds')} "
              f"last={last_seen.isoformat(timespec='seconds')} {template}")
    return 0
