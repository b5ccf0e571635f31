#!/usr/bin/env python3
"""Bytes on disk per click and per invitation after a simulated year, retention on.

Runs the one-command mesh (`referral-mesh serve`) on a fresh data dir, month after month:
invitations and clicks through the gateway, then the mesh is stopped and every instant in
the four SQLite files is moved 30 days into the past (a clock shift: the rows age a month),
the mesh starts again (each service's retention job runs at start-up; RETENTION_INTERVAL is
short) and stops, and the data files are checkpointed, VACUUMed and summed. It prints one
line per month: the data dir's size, rows kept, and bytes per click / per invitation.

    scripts/bytes-per-click.sh --months 12 --invitations 100 --clicks 1000

Numbers are sizes, not timings: a busy machine changes how long it takes, not what it
prints. Retention flags reach every service through the environment (RETENTION_*).
"""

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

DBS = ["invite.db", "fraud.db", "incentive.db", "analytics.db"]
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}")


def http(method, url, token=None, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Mesh:
    def __init__(self, binary, data_dir, port, grpc_base, env, log):
        self.cmd = [binary, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}",
                    "--grpc-base-port", str(grpc_base)]
        self.url = f"http://127.0.0.1:{port}"
        self.env, self.log, self.proc = env, log, None

    def start(self):
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=self.log)
        for _ in range(600):
            if self.proc.poll() is not None:
                sys.exit(f"the mesh exited with {self.proc.returncode}; see the log")
            try:
                if http("GET", self.url + "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("the mesh did not become ready")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def token(binary, data_dir, sub, role, kind=None):
    cmd = [binary, "token", "--data-dir", data_dir, "--sub", sub, "--role", role, "--ttl", "2h"]
    if kind:
        cmd += ["--kind", kind]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return out.strip().split()[-1]


def shifted(value, days):
    if not isinstance(value, str) or not ISO.match(value):
        return value
    try:
        t = dt.datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        return value
    t -= dt.timedelta(days=days)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"


def shift_clock(data_dir, days):
    """Moves every stored instant `days` into the past (the mesh is stopped)."""
    for name in DBS:
        con = sqlite3.connect(os.path.join(data_dir, name))
        con.create_function("shifted", 1, lambda v: shifted(v, days), deterministic=True)
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'")]
        for table in tables:
            for col in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                if col[2].upper() in ("TEXT", ""):
                    con.execute(f'UPDATE "{table}" SET "{col[1]}" = shifted("{col[1]}") '
                                f"WHERE \"{col[1]}\" GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]?[0-9][0-9]:*'")
        con.commit()
        con.close()


def measure(data_dir):
    sizes, rows = {}, {}
    for name in DBS:
        path = os.path.join(data_dir, name)
        con = sqlite3.connect(path)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("VACUUM")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for table in ("outbox", "processed_events", "idempotency_records"):
            rows[f"{name[:-3]}.{table}"] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if name == "invite.db":
            rows["clicks"] = con.execute("SELECT count(*) FROM clicks").fetchone()[0]
            rows["invitations"] = con.execute("SELECT count(*) FROM invitations").fetchone()[0]
        con.close()
    total = 0
    for f in os.listdir(data_dir):
        if re.search(r"\.db(-wal|-shm)?$", f):
            size = os.path.getsize(os.path.join(data_dir, f))
            sizes[f] = size
            total += size
    return total, sizes, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/referral-mesh")
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--invitations", type=int, default=100, help="per month")
    ap.add_argument("--clicks", type=int, default=1000, help="per month")
    ap.add_argument("--port", type=int, default=18080)
    ap.add_argument("--grpc-base-port", type=int, default=15051)
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="bytes-per-click-")
    env = dict(os.environ)
    env.update({
        "RETENTION_INTERVAL": env.get("RETENTION_INTERVAL", "2s"),
        "API_RATE_LIMIT_PER_MINUTE": "10000000",
        "REDIRECT_RATE_LIMIT_PER_MINUTE": "10000000",
        "LOG_FORMAT": "json",
        "RUST_LOG": env.get("RUST_LOG", "warn"),
    })
    log = open(os.path.join(data_dir, "..", os.path.basename(data_dir) + ".log"), "w")
    mesh = Mesh(args.binary, data_dir, args.port, args.grpc_base_port, env, log)
    rng = random.Random(16)
    print(f"data dir {data_dir}; retention: " + ", ".join(
        f"{k}={v}" for k, v in sorted(env.items()) if k.startswith(("RETENTION_", "OUTBOX_", "DEDUPE_"))))
    # The empty mesh (schemas, indexes, keys): subtracted, so the per-click figure is what
    # traffic costs rather than the fixed start-up files.
    mesh.start()
    mesh.stop()
    baseline = measure(data_dir)[0]
    print(f"empty data dir: {baseline} bytes")
    print("month  data_bytes  clicks_kept  invitations_kept  bytes/click  bytes/invitation  outbox(invite)  processed(analytics)")
    print("       (bytes/click and bytes/invitation: (data_bytes - empty) / rows kept, each carrying the whole dir)")
    clicks_total = invitations_total = 0
    for month in range(1, args.months + 1):
        mesh.start()
        codes = []
        per_referrer = 5
        for i in range(args.invitations):
            if i % per_referrer == 0:
                sub = f"sup-{month}-{i // per_referrer}"
                tok = token(args.binary, data_dir, sub, "member", "SUPPLIER")
            body = {"referrerId": sub, "referrerKind": "SUPPLIER", "refereeKind": "COUPLE", "channel": "EMAIL",
                    "recipient": {"email": f"couple-{month}-{i}@example.com", "name": f"Couple {month} {i}"}}
            status, out = http("POST", mesh.url + "/v1/invitations", tok, body)
            if status != 200:
                sys.exit(f"invitation refused: {status} {out[:300]!r}")
            codes.append(json.loads(out)["code"])
        invitations_total += args.invitations
        for c in range(args.clicks):
            ua = f"Mozilla/5.0 (device {rng.randrange(10**6)}) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
            status, _ = http("GET", f"{mesh.url}/r/{rng.choice(codes)}", headers={"User-Agent": ua})
            if status not in (302, 303, 307):
                sys.exit(f"click refused: {status}")
        clicks_total += args.clicks
        time.sleep(3)  # consumers catch up
        mesh.stop()
        shift_clock(data_dir, 30)
        mesh.start()  # retention runs at start-up (and every RETENTION_INTERVAL)
        time.sleep(6)
        mesh.stop()
        total, sizes, rows = measure(data_dir)
        clicks = max(rows["clicks"], 1)
        invs = max(rows["invitations"], 1)
        used = total - baseline
        print(f"{month:5}  {total:10}  {rows['clicks']:11}  {rows['invitations']:16}  {used / clicks:11.0f}  "
              f"{used / invs:16.0f}  {rows['invite.outbox']:14}  {rows['analytics.processed_events']:20}", flush=True)
    print("files:", json.dumps(sizes))
    print("rows:", json.dumps(rows))
    print(f"generated {clicks_total} clicks and {invitations_total} invitations over {args.months} simulated months")
    if not args.keep:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
