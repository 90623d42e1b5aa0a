"""`embedq jobs list|delete`: stored jobs over time (storage/lifecycle.py)."""
from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("jobs", help="list stored jobs, delete old ones (with their vectors and metrics)")
    sub = p.add_subparsers(dest="jobs_command", metavar="ACTION")
    sub.required = True

    q = sub.add_parser("list", help="stored jobs, newest first")
    q.add_argument("--status", choices=("running", "done", "failed"))
    q.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    q.add_argument("--after", metavar="JOB_ID", help="start after this job (the last id of the previous page)")
    q.add_argument("--older-than", metavar="DURATION", help="only jobs created at least this long ago (7d, 12h, 30m)")
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.set_defaults(func=cmd_list)

    d = sub.add_parser("delete", help="delete jobs with their vectors and metrics (done and failed ones)")
    d.add_argument("ids", nargs="*", metavar="JOB_ID", help="jobs to delete")
    d.add_argument("--older-than", metavar="DURATION", help="jobs created at least this long ago (7d, 12h, 30m)")
    d.add_argument("--include-running", action="store_true",
                   help="also jobs still marked running (a live worker would write them again)")
    d.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    d.set_defaults(func=cmd_delete)


def _duration(text):
    import storage

    return None if text is None else storage.parse_duration(text)


def cmd_list(args) -> int:
    import storage

    try:
        jobs = storage.list_jobs(storage.connect(), status=args.status, limit=args.limit, after=args.after,
                                 older_than=_duration(args.older_than))
    except (ValueError, storage.JobNotFound) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for j in jobs:
        if args.json:
            print(json.dumps({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in j.items()}))
        else:
            when = j["created_at"].strftime("%Y-%m-%d %H:%M:%S") if j["created_at"] else "-"
            why = f"  {j['error'][:80]}" if j["error"] else ""
            print(f"{j['job_id']}  {j['status']:<7} {when}  {j['count']:>5} texts  {j['model'] or '-'}{why}")
    return 0


def cmd_delete(args) -> int:
    import storage

    if not args.ids and args.older_than is None:
        print("error: name jobs or give --older-than", file=sys.stderr)
        return 2
    try:
        older = _duration(args.older_than)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    db = storage.connect()
    statuses = None if args.include_running else storage.lifecycle.SETTLED
    if args.dry_run:
        found = storage.list_jobs(db, limit=1 << 30, older_than=older)
        ids = set(args.ids) if args.ids else None
        found = [j for j in found if (ids is None or j["job_id"] in ids)
                 and (statuses is None or j["status"] in statuses)]
        for j in found:
            print(j["job_id"])
        print(f"would delete {len(found)} job(s)", file=sys.stderr)
        return 0
    deleted = storage.delete_jobs(db, ids=args.ids or None, older_than=older, statuses=statuses)
    print(f"deleted {len(deleted)} job(s)")
    return 0
