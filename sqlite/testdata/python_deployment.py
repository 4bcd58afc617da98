"""The existing Python deployment's usage SQL, driven by a Go test.

It opens the database the way that deployment does (the standard sqlite3
module, one connection, commit after each write) and runs its statements
verbatim. Commands come one JSON array per line on stdin; each answer is one
JSON object per line on stdout: {"ok": value} or {"error": "text"}.

  ["startup"]                       the deployment's CREATE TABLE IF NOT EXISTS: "started"
  ["reconcile", id, feature, n]     the MVP's reconcile, then its SELECT
  ["increment", id, feature]        the later version's increment, then SELECT
  ["increments", id, feature, n]    n increments, each committed; the last count
  ["count", id, feature]            its SELECT (null for no row)
  ["integrity"]                     PRAGMA integrity_check
  ["journal_mode"]                  PRAGMA journal_mode
"""

import json
import sqlite3
import sys

STARTUP = """
CREATE TABLE IF NOT EXISTS usage_counts (
    install_id TEXT NOT NULL,
    feature TEXT NOT NULL,
    count INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (install_id, feature)
)
"""

RECONCILE = """
INSERT INTO usage_counts (install_id, feature, count) VALUES (?, ?, ?)
ON CONFLICT (install_id, feature) DO UPDATE SET
    count = MAX(usage_counts.count, excluded.count), updated_at = CURRENT_TIMESTAMP
"""

INCREMENT = """
INSERT INTO usage_counts (install_id, feature, count) VALUES (?, ?, 1)
ON CONFLICT (install_id, feature) DO UPDATE SET
    count = usage_counts.count + 1, updated_at = CURRENT_TIMESTAMP
"""

SELECT = "SELECT count FROM usage_counts WHERE install_id = ? AND feature = ?"


def count(conn, install_id, feature):
    row = conn.execute(SELECT, (install_id, feature)).fetchone()
    return None if row is None else row[0]


def run(conn, cmd):
    op, args = cmd[0], cmd[1:]
    if op == "startup":
        conn.execute(STARTUP)
        conn.commit()
        return "started"
    if op == "reconcile":
        conn.execute(RECONCILE, (args[0], args[1], args[2]))
        conn.commit()
        return count(conn, args[0], args[1])
    if op == "increment":
        conn.execute(INCREMENT, (args[0], args[1]))
        conn.commit()
        return count(conn, args[0], args[1])
    if op == "increments":
        for _ in range(args[2]):
            conn.execute(INCREMENT, (args[0], args[1]))
            conn.commit()
        return count(conn, args[0], args[1])
    if op == "count":
        return count(conn, args[0], args[1])
    if op == "integrity":
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    if op == "journal_mode":
        return conn.execute("PRAGMA journal_mode").fetchone()[0]
    raise ValueError("unknown command " + op)


def main():
    conn = sqlite3.connect(sys.argv[1], timeout=30)
    print(json.dumps({"ok": sqlite3.sqlite_version}), flush=True)
    for line in sys.stdin:
        try:
            answer = {"ok": run(conn, json.loads(line))}
        except Exception as e:  # the test reads the failure
            conn.rollback()
            answer = {"error": type(e).__name__ + ": " + str(e)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
