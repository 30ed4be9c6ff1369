"""`haic backup [--out DIR] [--name NAME]` and `haic restore DIR [--force]`
(haic_pipeline.warehouse.backup).

Both hold the lock `haic run` holds (one at a time per DAGSTER_HOME), so no refresh of this
machine's CLI writes meanwhile; the warehouse itself is attached read-only for a backup, which
DuckDB refuses at once while any other process writes it (a daemon's run, an analyst's
read-write session), with a message saying so.
"""

from __future__ import annotations

import time
from pathlib import Path

from haic_pipeline.cli.home import ensure_dagster_home, run_lock, say
from haic_pipeline.settings import backup_settings, load_settings
from haic_pipeline.warehouse import backup


def cmd_backup(args) -> int:
    settings = load_settings(check_key=False)
    out = Path(args.out) if args.out else backup_settings().folder
    what = "backup folder (--out)" if args.out else "backup folder (HAIC_BACKUP_DIR)"
    try:
        with run_lock(ensure_dagster_home()):
            taken = backup.take(settings.warehouse, out, name=args.name, what=what,
                                  memory_limit=settings.duckdb_memory)
    except backup.BackupError as exc:
        raise SystemExit(f"error: {exc}") from None
    m = taken.manifest
    rows = sum(t["rows"] for t in m["tables"].values())
    say(f"backup of {settings.warehouse} in {taken.seconds:.1f} s: {taken.folder}")
    say(f"  {len(m['tables'])} tables ({rows:,} rows), {len(m['views'])} views, {m['bytes'] / 1e6:.1f} MB; "
        f"last drop {m['last_extract_id'] or '-'}; each table hashed in {taken.folder / backup.MANIFEST}")
    say(f"restore it with: haic restore {taken.folder}   (--force to replace an existing warehouse)")
    return 0


def cmd_restore(args) -> int:
    settings = load_settings(check_key=False)
    t0 = time.perf_counter()
    try:
        with run_lock(ensure_dagster_home()):
            manifest = backup.restore(args.folder, settings.warehouse, force=args.force,
                                      memory_limit=settings.duckdb_memory)
    except backup.BackupError as exc:
        raise SystemExit(f"error: {exc}") from None
    say(f"restored {settings.warehouse} from {args.folder} (taken {manifest['taken_at']}, last drop "
        f"{manifest['last_extract_id'] or '-'}) in {time.perf_counter() - t0:.1f} s: every table verified "
        "against the backup's manifest; the analysts' copy rewritten from it")
    say("drops delivered since the backup are still in the inbox: `haic run` lands them and refreshes")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("backup", help="copy the whole warehouse (every schema) into a new folder, with a manifest")
    p.add_argument("--out", type=Path, help="the folder receiving the backup (default: HAIC_BACKUP_DIR)")
    p.add_argument("--name", help="the backup's folder name (default: the UTC time, e.g. 20261206T030000Z)")
    p.set_defaults(fn=cmd_backup)
    p = sub.add_parser("restore", help="verify a backup and put it in place of the warehouse")
    p.add_argument("folder", type=Path, help="a backup folder (holding manifest.json and haic.duckdb)")
    p.add_argument("--force", action="store_true", help="replace an existing warehouse")
    p.set_defaults(fn=cmd_restore)
