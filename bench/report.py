#!/usr/bin/python3
"""Benchmark report: hotbackup beside Redis 7 and PostgreSQL 15, on this machine, in one run.

    bench/report.sh [--runs N] [--quick] [--only SECTION,...]

Writes bench/REPORT.md, bench/report/*.svg (plots) and bench/report/data.json (every sample).
Sections (all by default, in this order):

  throughput  durable write throughput and p50/p99 latency at 1/10/50 clients, one slave:
              hotbackup sync=async and sync=durable; Redis appendfsync always and everysec, each
              with a replica; PostgreSQL synchronous_commit on and remote_write with a synchronous
              streaming standby (pgbench, single-row upserts). SET of 100-byte values over 100k
              keys (redis-benchmark) / the same upsert for PostgreSQL.
  lag         replication lag over time under load (10 clients writing as fast as they can): a
              probe writes a key on the master and times until the slave returns it. Plot.
  catchup     the slave is stopped (SIGSTOP) for 30 s while 10 clients write; time from its
              resumption to caught up, and the backlog it had to take.
  fullsync    full sync of 1.25M/2.5M/5M items of 200 bytes (0.25/0.5/1 GB of values) vs Redis's
              full sync of the same data (until loaded, and until on the replica's disk), vs
              hotbackup's store alone (examples/store_load.rs: the slave's loader with no master
              and no network) and vs the disk's limit (the same bytes written with fdatasync);
              master RSS with each item count vs Redis.
  stall       master RSS sampled every second while its slave is stopped for 60 s under load
              (hotbackup keeps the backlog in its journal: flat; Redis in a replica output
              buffer until its limit). Plot.
  slaves      throughput at 50 clients with 1, 2 and 4 slaves vs Redis with 1, 2 and 4 replicas.
  failover    promote time and switchover pause (bench/failover.py's measurements).

Figures are medians of --runs runs (default 3). Everything runs on loopback; every process this
script starts is stopped by it (by PID). Needs root for PostgreSQL (it runs as user postgres).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "hotbackup")
STORE_LOAD = os.path.join(ROOT, "target", "release", "examples", "store_load")
PG_BIN = "/usr/lib/postgresql/15/bin"
OUT_DIR = os.path.join(ROOT, "bench", "report")
KEYSPACE = 100_000
VALUE = 100

sys.path.insert(0, os.path.join(ROOT, "bench"))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def wait_until(f, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if f():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


_ports = iter(range(27000, 29000))


def port():
    """A free loopback port from a range of our own (below the kernel's ephemeral range)."""
    for p in _ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    raise RuntimeError("no free port")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Procs:
    """Processes this script started; stop_all ends them by PID."""

    def __init__(self):
        self.procs = []

    def start(self, args, logpath, stop_signal=signal.SIGTERM, **kw):
        p = subprocess.Popen(args, stdout=open(logpath, "ab"), stderr=subprocess.STDOUT, **kw)
        p.stop_signal = stop_signal
        self.procs.append(p)
        return p

    def stop(self, p, timeout=30):
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.send_signal(getattr(p, "stop_signal", signal.SIGTERM))
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)


PROCS = Procs()


# ---------------------------------------------------------------------------------------------
# The systems under test. Each: start(slaves) -> master port, slave ports; synced(); stop().


class Hotbackup:
    def __init__(self, work, sync="async", cache="256MiB", held=False):
        """held: each slave's link port is a socket this script holds open across the slave's
        restarts and passes it as systemd's socket unit does (hotbackup-slave@.socket,
        LISTEN_FDS): the master's connection waits in the backlog while the slave restarts,
        instead of for the master's next redial."""
        self.work, self.sync, self.cache, self.held = work, sync, cache, held
        self.nodes = []

    def name(self):
        return f"hotbackup sync={self.sync}"

    def _config(self, i, role, cport, lport, peers):
        cfg = os.path.join(self.work, f"hb{i}.toml")
        with open(cfg, "w") as f:
            f.write(
                f'role = "{role}"\ndata_dir = "{self.work}/hb{i}"\n'
                f'[client]\nlisten = "127.0.0.1:{cport}"\n'
                f'[link]\nlisten = "127.0.0.1:{lport}"\n'
                f"peers = [{', '.join(f'{chr(34)}127.0.0.1:{p}{chr(34)}' for p in peers)}]\n"
                f'key_file = "{self.work}/pair.key"\nsync = "{self.sync}"\n'
                f'sync_timeout = "10s"\nmax_retained_bytes = "16GiB"\n'
                f'reconnect_min = "50ms"\nreconnect_max = "500ms"\n'
                f'[store]\ncache_size = "{self.cache}"\n'
                f'[log]\nlevel = "warn"\n'
            )
        return cfg

    def start(self, slaves=1, keep=False):
        key = os.path.join(self.work, "pair.key")
        with open(key, "w") as f:
            f.write("benchmark-report-secret-0123456789\n")
        os.chmod(key, 0o600)
        if not keep:
            for i in range(5):
                shutil.rmtree(os.path.join(self.work, f"hb{i}"), ignore_errors=True)
        ports = [(port(), port()) for _ in range(slaves + 1)]
        self.nodes = []
        for i in range(slaves + 1):
            role = "master" if i == 0 else "slave"
            peers = [p[1] for p in ports[1:]] if i == 0 else [ports[0][1]]
            cfg = self._config(i, role, ports[i][0], ports[i][1], peers)
            node = {"cfg": cfg, "port": ports[i][0], "proc": None, "sock": None}
            if self.held and role == "slave":
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", ports[i][1]))
                sock.listen(128)
                node["sock"] = sock
            self.nodes.append(node)
        # Slaves first, then the master (it dials them).
        for i in list(range(1, slaves + 1)) + [0]:
            self.launch(i)
        wait_until(self.streaming, 60, "hotbackup slaves streaming")
        return self.master_port()

    def launch(self, i):
        n = self.nodes[i]
        log_path = os.path.join(self.work, f"hb{i}.log")
        if n.get("sock") is not None:
            fd = n["sock"].fileno()
            move = "" if fd == 3 else f"exec 3<&{fd} {fd}<&-; "
            wrap = (f'{move}export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=link; '
                    'exec "$0" "$@"')
            n["proc"] = PROCS.start(["/bin/sh", "-c", wrap, BIN, "serve", "--config", n["cfg"]],
                                    log_path, pass_fds=(fd,))
        else:
            n["proc"] = PROCS.start([BIN, "serve", "--config", n["cfg"]], log_path)
        wait_until(lambda: redis.Redis(port=n["port"], socket_timeout=1).ping(), 120, f"hotbackup node {i} up")

    def master_port(self):
        return self.nodes[0]["port"]

    def slave_ports(self):
        return [n["port"] for n in self.nodes[1:]]

    def master_pid(self):
        return self.nodes[0]["proc"].pid

    def slave_pid(self, i=1):
        return self.nodes[i]["proc"].pid

    def streaming(self):
        info = redis.Redis(port=self.master_port(), socket_timeout=2).info("replication")
        streaming = [v for v in info.values() if isinstance(v, dict) and v.get("state") == "streaming"]
        return len(streaming) >= len(self.nodes) - 1

    def synced(self):
        m = redis.Redis(port=self.master_port(), socket_timeout=5).info("replication")
        target = m.get("durable_lsn", 0)
        for p in self.slave_ports():
            s = redis.Redis(port=p, socket_timeout=5).info("replication")
            if s.get("slave_repl_offset") != target:
                return False
        return True

    def stop(self):
        for n in self.nodes:
            if n["proc"] is not None:
                PROCS.stop(n["proc"], timeout=120)
                n["proc"] = None
            if n.get("sock") is not None:
                n["sock"].close()
                n["sock"] = None


class Redis:
    def __init__(self, work, fsync="always", master_extra=()):
        self.work, self.fsync, self.master_extra = work, fsync, list(master_extra)
        self.ports, self.procs = [], []

    def name(self):
        return f"Redis appendfsync {self.fsync}"

    def _server(self, i, extra):
        d = os.path.join(self.work, f"redis{i}")
        os.makedirs(d, exist_ok=True)
        args = ["redis-server", "--port", str(self.ports[i]), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", self.fsync, "--dir", d] + extra
        p = PROCS.start(args, os.path.join(self.work, f"redis{i}.log"))
        wait_until(lambda: redis.Redis(port=self.ports[i], socket_timeout=1).ping(), 60, "redis up")
        return p

    def start(self, slaves=1, keep=False):
        for i in range(5):
            shutil.rmtree(os.path.join(self.work, f"redis{i}"), ignore_errors=True)
        self.ports = [port() for _ in range(slaves + 1)]
        self.procs = [self._server(0, self.master_extra)]
        for i in range(1, slaves + 1):
            self.add_replica(i)
        wait_until(self.synced, 600, "redis replicas synced")
        return self.ports[0]

    def add_replica(self, i):
        while len(self.procs) <= i:
            self.procs.append(None)
        self.procs[i] = self._server(i, ["--replicaof", "127.0.0.1", str(self.ports[0])])

    def master_port(self):
        return self.ports[0]

    def slave_ports(self):
        return self.ports[1:]

    def master_pid(self):
        return self.procs[0].pid

    def slave_pid(self, i=1):
        return self.procs[i].pid

    def replica_aof_rewritten(self, i):
        p = redis.Redis(port=self.ports[i], socket_timeout=5).info("persistence")
        return (p.get("aof_rewrites", 0) >= 1 and p.get("aof_rewrite_in_progress") == 0
                and p.get("aof_rewrite_scheduled") == 0 and p.get("aof_last_bgrewrite_status") == "ok")

    def synced(self):
        m = redis.Redis(port=self.ports[0], socket_timeout=5).info("replication")
        for p in self.ports[1:]:
            s = redis.Redis(port=p, socket_timeout=5).info("replication")
            if s.get("master_link_status") != "up" or s.get("master_sync_in_progress", 0) != 0:
                return False
            if s.get("slave_repl_offset") != m.get("master_repl_offset"):
                return False
        return True

    def stop(self):
        for p in self.procs:
            if p is not None:
                # A replica still writing its first AOF after a full sync may ignore SIGTERM.
                PROCS.stop(p, timeout=5)
        self.procs = []


class Postgres:
    """A primary and a synchronous streaming standby (synchronous_standby_names = '*')."""

    def __init__(self, work, commit="on"):
        self.work, self.commit = work, commit
        self.ports, self.procs = [], []

    def name(self):
        return f"PostgreSQL synchronous_commit={self.commit}"

    def _as_pg(self, args):
        out = subprocess.run(args, capture_output=True, text=True, user="postgres", group="postgres")
        if out.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.stdout}{out.stderr}")

    def _pg_dir(self, name):
        d = os.path.join(self.work, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d, mode=0o700)
        shutil.chown(d, "postgres", "postgres")
        return d

    def _postgres(self, i):
        d = os.path.join(self.work, f"pg{i}")
        # SIGINT is PostgreSQL's fast shutdown.
        return PROCS.start([f"{PG_BIN}/postgres", "-D", d], os.path.join(self.work, f"pg{i}.log"),
                           user="postgres", group="postgres", stop_signal=signal.SIGINT)

    def _ready(self, p):
        return subprocess.run([f"{PG_BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(p)],
                              capture_output=True).returncode == 0

    def start(self, slaves=1, keep=False):
        self.ports = [port(), port()]
        d0 = self._pg_dir("pg0")
        sock = self._pg_dir("pgsock")
        self._as_pg([f"{PG_BIN}/initdb", "-D", d0, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        with open(os.path.join(d0, "postgresql.conf"), "a") as f:
            f.write(
                f"port = {self.ports[0]}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{sock}'\n"
                "wal_level = replica\nmax_wal_senders = 8\nsynchronous_standby_names = '*'\n"
                "shared_buffers = 256MB\nmax_connections = 200\nfsync = on\n"
                f"synchronous_commit = {self.commit}\n"
            )
        with open(os.path.join(d0, "pg_hba.conf"), "a") as f:
            f.write("host replication all 127.0.0.1/32 trust\n")
        self.procs = [self._postgres(0)]
        wait_until(lambda: self._ready(self.ports[0]), 60, "postgres primary up")
        d1 = self._pg_dir("pg1")
        self._as_pg([f"{PG_BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(self.ports[0]),
                     "-U", "postgres", "-D", d1, "-R", "-X", "stream"])
        with open(os.path.join(d1, "postgresql.conf"), "a") as f:
            f.write(f"port = {self.ports[1]}\n")
        self.procs.append(self._postgres(1))
        wait_until(lambda: self._ready(self.ports[1]), 60, "postgres standby up")
        wait_until(lambda: self.sql("SELECT sync_state FROM pg_stat_replication").strip() == "sync",
                   60, "postgres standby synchronous")
        self.sql("CREATE TABLE kv (k integer PRIMARY KEY, v text NOT NULL)")
        return self.ports[0]

    def sql(self, q, p=None):
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(p or self.ports[0]), "-U", "postgres",
                              "-At", "-c", q], check=True, capture_output=True, text=True)
        return out.stdout

    def stop(self):
        for p in reversed(self.procs):
            PROCS.stop(p, timeout=60)
        self.procs = []


# ---------------------------------------------------------------------------------------------
# Load generators.


def redis_benchmark(p, clients, n, pipeline=1, keyspace=KEYSPACE, size=VALUE):
    """SET load with redis-benchmark: (requests/s, p50 ms, p99 ms)."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(p), "-t", "set", "-c", str(clients), "-n", str(n), "-P", str(pipeline),
         "-r", str(keyspace), "-d", str(size), "--csv"],
        capture_output=True, text=True, timeout=3600)
    for line in out.stdout.splitlines():
        cols = [c.strip('"') for c in line.split('","')]
        if cols[0].startswith('"SET') or cols[0] == "SET":
            # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
            return float(cols[1]), float(cols[4]), float(cols[6])
    raise RuntimeError(f"redis-benchmark gave no figure: {out.stdout}{out.stderr}")


def timed_redis_benchmark(p, clients, secs):
    """About `secs` seconds of SET load: a short probe sizes the real run."""
    rps, _, _ = redis_benchmark(p, clients, max(200, 200 * clients))
    return redis_benchmark(p, clients, max(1000, int(rps * secs)))


class Background:
    """redis-benchmark writing as fast as it can until stopped (bounded to `limit` s)."""

    def __init__(self, p, clients=10, limit=600, pipeline=1, keyspace=1_000_000):
        self.proc = subprocess.Popen(
            ["timeout", str(limit), "redis-benchmark", "-p", str(p), "-t", "set", "-c", str(clients),
             "-n", "1000000000", "-P", str(pipeline), "-r", str(keyspace), "-d", str(VALUE), "-q"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


def pgbench(pg, clients, secs, work):
    """Single-row upserts: (transactions/s, p50 ms, p99 ms) from per-transaction logs."""
    script = os.path.join(work, "upsert.sql")
    with open(script, "w") as f:
        f.write(f"\\set k random(1, {KEYSPACE})\n"
                f"INSERT INTO kv VALUES (:k, repeat('x', {VALUE})) "
                "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;\n")
    logdir = tempfile.mkdtemp(prefix="pgbench.", dir=work)
    out = subprocess.run(
        ["pgbench", "-h", "127.0.0.1", "-p", str(pg.ports[0]), "-U", "postgres", "-n", "-f", script,
         "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(secs), "-l",
         "--log-prefix", os.path.join(logdir, "tx"), "postgres"],
        capture_output=True, text=True, timeout=secs + 120)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed: {out.stdout}{out.stderr}")
    lat = []
    for name in os.listdir(logdir):
        with open(os.path.join(logdir, name)) as f:
            for line in f:
                cols = line.split()
                if len(cols) >= 3:
                    lat.append(int(cols[2]) / 1000.0)
    shutil.rmtree(logdir, ignore_errors=True)
    tps = None
    for line in out.stdout.splitlines():
        if line.startswith("tps ="):
            tps = float(line.split()[2])
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    return tps, pct(0.5), pct(0.99)


# ---------------------------------------------------------------------------------------------
# Sections.


def sec_throughput(work, cfg, data):
    clients = [1, 10, 50]
    systems = [
        ("hb_async", lambda: Hotbackup(work, "async")),
        ("hb_durable", lambda: Hotbackup(work, "durable")),
        ("redis_always", lambda: Redis(work, "always")),
        ("redis_everysec", lambda: Redis(work, "everysec")),
        ("pg_on", lambda: Postgres(work, "on")),
        ("pg_remote_write", lambda: Postgres(work, "remote_write")),
    ]
    res = data.setdefault("throughput", {})
    for run in range(cfg.runs):
        for key, make in systems:
            s = make()
            s.start(1)
            try:
                for c in clients:
                    if key.startswith("pg"):
                        r = pgbench(s, c, cfg.secs, work)
                    else:
                        r = timed_redis_benchmark(s.master_port(), c, cfg.secs)
                    res.setdefault(key, {}).setdefault(str(c), []).append(r)
                    log(f"throughput run {run + 1} {key} c={c}: {r[0]:.0f}/s p50 {r[1]:.3f} p99 {r[2]:.3f} ms")
            finally:
                s.stop()


def lag_series(m, s, secs, interval=0.05):
    """(t, lag ms) samples: SET on the master, then GET on the slave until the value is there."""
    rm = redis.Redis(port=m, socket_timeout=10)
    rs = redis.Redis(port=s, socket_timeout=10)
    out = []
    t_start = time.time()
    i = 0
    while time.time() - t_start < secs:
        key = f"lagprobe:{i}"
        val = str(time.time_ns())
        rm.set(key, val)
        t0 = time.perf_counter()
        deadline = t0 + 10
        while rs.get(key) != val.encode():
            if time.perf_counter() > deadline:
                raise RuntimeError("slave did not get the probe within 10 s")
        out.append((round(time.time() - t_start, 3), (time.perf_counter() - t0) * 1000))
        i += 1
        time.sleep(interval)
    return out


def sec_lag(work, cfg, data):
    res = data.setdefault("lag", {})
    for key, make in (("hb_async", lambda: Hotbackup(work, "async")),
                      ("redis_always", lambda: Redis(work, "always"))):
        for run in range(cfg.runs):
            s = make()
            s.start(1)
            bg = Background(s.master_port(), clients=10)
            try:
                time.sleep(1)
                series = lag_series(s.master_port(), s.slave_ports()[0], cfg.lag_secs)
            finally:
                bg.stop()
                s.stop()
            res.setdefault(key, []).append(series)
            lags = sorted(x[1] for x in series)
            log(f"lag run {run + 1} {key}: {len(lags)} probes, p50 {pct(lags, 0.5):.2f} p99 {pct(lags, 0.99):.2f} ms")


def pct(sorted_xs, q):
    return sorted_xs[min(len(sorted_xs) - 1, int(q * len(sorted_xs)))]


def writes_of(system):
    if isinstance(system, Hotbackup):
        return redis.Redis(port=system.master_port()).info("replication").get("durable_lsn", 0)
    return redis.Redis(port=system.master_port()).info("stats").get("total_commands_processed", 0)


def sec_catchup(work, cfg, data):
    res = data.setdefault("catchup", {})
    for key, make in (("hb_async", lambda: Hotbackup(work, "async")),
                      ("redis_always", lambda: Redis(work, "always"))):
        for run in range(cfg.runs):
            s = make()
            s.start(1)
            try:
                bg = Background(s.master_port(), clients=10)
                time.sleep(2)
                before = writes_of(s)
                full_before = full_syncs(s)
                pid = s.slave_pid()
                os.kill(pid, signal.SIGSTOP)
                time.sleep(cfg.outage)
                bg.stop()
                backlog = writes_of(s) - before
                t0 = time.time()
                os.kill(pid, signal.SIGCONT)
                wait_until(s.synced, 1800, f"{key} slave caught up")
                took = time.time() - t0
                resynced = full_syncs(s) - full_before
            finally:
                s.stop()
            res.setdefault(key, []).append({"secs": took, "backlog": backlog, "full_syncs": resynced})
            log(f"catch-up run {run + 1} {key}: {took:.2f} s for a backlog of {backlog} writes"
                f"{' (full resync)' if resynced else ''}")


def full_syncs(s):
    if isinstance(s, Hotbackup):
        info = redis.Redis(port=s.master_port()).info("replication")
        return int(info.get("link_full_syncs", 0))
    return int(redis.Redis(port=s.master_port()).info("stats").get("sync_full", 0))


def gen_items(path, n):
    """A RESP file of n SETs of 200-byte values (keys item:000000000000)."""
    if os.path.exists(path):
        return
    v = b"v" * 200
    with open(path + ".tmp", "wb") as out:
        buf = []
        for i in range(n):
            k = b"item:%012d" % i
            buf.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$200\r\n%s\r\n" % (len(k), k, v))
            if len(buf) >= 10000:
                out.write(b"".join(buf))
                buf = []
        out.write(b"".join(buf))
    os.rename(path + ".tmp", path)


def pipe_in(p, path):
    with open(path, "rb") as f:
        subprocess.run(["redis-cli", "-p", str(p), "--pipe"], stdin=f, check=True,
                       stdout=subprocess.DEVNULL, timeout=3600)


def fdatasync_secs(work, nbytes):
    path = os.path.join(work, "dd.out")
    t0 = time.time()
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={nbytes // (1 << 20) + 1}",
                    "conv=fdatasync", "status=none"], check=True)
    took = time.time() - t0
    os.unlink(path)
    return took


def store_load_secs(work, n):
    """hotbackup's store alone: the slave's loader and checkpoint for n items, no master, no
    network (examples/store_load.rs)."""
    out = subprocess.run([STORE_LOAD, work, str(n), "1024"], check=True, capture_output=True,
                         text=True, timeout=3600).stdout
    return float(re.search(r"secs=([0-9.]+)", out).group(1))


def sec_fullsync(work, cfg, data):
    res = data.setdefault("fullsync", {})
    for n in cfg.sizes:
        path = os.path.join(work, f"items-{n}.resp")
        gen_items(path, n)
        nbytes = n * (len("item:000000000000") + 200)
        row = res.setdefault(str(n), {"hb": [], "redis": [], "dd": [], "hb_rss": [], "redis_rss": []})
        row.setdefault("redis_durable", [])
        row.setdefault("store", [])
        # hotbackup: the master loaded once; each run starts a wiped slave.
        hb = Hotbackup(work, "async", cache="1GiB", held=True)
        hb.start(1)
        try:
            pipe_in(hb.master_port(), path)
            redis.Redis(port=hb.master_port()).execute_command("SAVE")
            wait_until(hb.synced, 1800, "hotbackup slave synced after the load")
            row["hb_rss"].append(rss_mib(hb.master_pid()))
            for run in range(cfg.runs):
                PROCS.stop(hb.nodes[1]["proc"], timeout=120)
                shutil.rmtree(os.path.join(work, "hb1"))
                t0 = time.time()
                hb.launch(1)
                wait_until(hb.synced, 3600, "hotbackup full sync")
                row["hb"].append(time.time() - t0)
                log(f"full sync {n} run {run + 1} hotbackup: {row['hb'][-1]:.2f} s")
        finally:
            hb.stop()
        rd = Redis(work, "always", master_extra=["--repl-diskless-sync-delay", "0"])
        rd.start(0)
        try:
            pipe_in(rd.master_port(), path)
            row["redis_rss"].append(rss_mib(rd.master_pid()))
            for run in range(cfg.runs):
                if len(rd.procs) > 1:
                    PROCS.stop(rd.procs[1], timeout=20)
                shutil.rmtree(os.path.join(work, "redis1"), ignore_errors=True)
                if len(rd.ports) < 2:
                    rd.ports.append(port())
                t0 = time.time()
                rd.add_replica(1)
                wait_until(rd.synced, 3600, "redis full sync")
                row["redis"].append(time.time() - t0)
                # The replica holds the data in memory now; it is on its disk once the AOF
                # rewrite that a full sync starts has finished (until then a restart of the
                # replica starts from an empty AOF).
                wait_until(lambda: rd.replica_aof_rewritten(1), 3600, "redis replica AOF rewrite")
                row["redis_durable"].append(time.time() - t0)
                log(f"full sync {n} run {run + 1} Redis: {row['redis'][-1]:.2f} s, "
                    f"on the replica's disk at {row['redis_durable'][-1]:.2f} s")
        finally:
            rd.stop()
        for run in range(cfg.runs):
            row["dd"].append(fdatasync_secs(work, nbytes))
            row["store"].append(store_load_secs(work, n))
            log(f"full sync {n} run {run + 1} hotbackup's store alone: {row['store'][-1]:.2f} s")
        row["bytes"] = nbytes
        os.unlink(path)


def sec_stall(work, cfg, data):
    res = data.setdefault("stall", {})
    for key, make in (("hb_async", lambda: Hotbackup(work, "async", cache="64MiB")),
                      ("redis_always", lambda: Redis(work, "always"))):
        s = make()
        s.start(1)
        try:
            # Warm up with the same key space first, so that what grows is the stalled slave's cost.
            redis_benchmark(s.master_port(), 50, 300_000, pipeline=16, keyspace=1_000_000)
            wait_until(s.synced, 600, "caught up before the stall")
            bg = Background(s.master_port(), clients=10)
            pid = s.master_pid()
            before = writes_of(s)
            os.kill(s.slave_pid(), signal.SIGSTOP)
            series = []
            t0 = time.time()
            try:
                while time.time() - t0 < cfg.stall:
                    series.append((round(time.time() - t0, 2), rss_mib(pid)))
                    time.sleep(1)
            finally:
                bg.stop()
                os.kill(s.slave_pid(), signal.SIGCONT)
            written = writes_of(s) - before
        finally:
            s.stop()
        res[key] = {"series": series, "writes": written}
        log(f"stall {key}: RSS {series[0][1]:.0f} -> max {max(x[1] for x in series):.0f} MiB")


def sec_slaves(work, cfg, data):
    res = data.setdefault("slaves", {})
    for run in range(cfg.runs):
        for key, make in (("hb_async", lambda: Hotbackup(work, "async")),
                          ("hb_durable", lambda: Hotbackup(work, "durable")),
                          ("redis_always", lambda: Redis(work, "always"))):
            for n in (1, 2, 4):
                s = make()
                s.start(n)
                try:
                    r = timed_redis_benchmark(s.master_port(), 50, cfg.secs)
                finally:
                    s.stop()
                res.setdefault(key, {}).setdefault(str(n), []).append(r)
                log(f"slaves run {run + 1} {key} x{n}: {r[0]:.0f}/s")


def sec_failover(work, cfg, data):
    import failover
    keys = ["hb_promote", "redis_promote", "hb_switch_gap", "hb_switch_cmd", "hb_switch_lost",
            "redis_switch_gap", "redis_switch_cmd", "redis_switch_lost"]
    res = data.setdefault("failover", {k: [] for k in keys})
    for run in range(cfg.runs):
        failover.run_once(res)
        log(f"failover run {run + 1}: promote {res['hb_promote'][-1] * 1000:.0f} ms, "
            f"switchover gap {res['hb_switch_gap'][-1] * 1000:.0f} ms")


SECTIONS = {
    "throughput": sec_throughput,
    "lag": sec_lag,
    "catchup": sec_catchup,
    "fullsync": sec_fullsync,
    "stall": sec_stall,
    "slaves": sec_slaves,
    "failover": sec_failover,
}


# ---------------------------------------------------------------------------------------------
# SVG plots (no plotting library: plain SVG text).

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def svg_lines(path, title, xlabel, ylabel, series, logy=False):
    """series: [(label, [(x, y), ...])]."""
    import math
    W, H, L, R, T, B = 720, 360, 70, 180, 40, 50
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    if not xs:
        return
    x0, x1 = 0, max(xs) or 1
    fy = (lambda y: math.log10(max(y, 1e-3))) if logy else (lambda y: y)
    y0, y1 = (fy(min(ys)), fy(max(ys))) if logy else (0, max(ys) * 1.1 or 1)
    if y1 <= y0:
        y1 = y0 + 1
    px = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)
    py = lambda y: H - B - (fy(y) - y0) / (y1 - y0) * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">{xlabel}</text>',
           f'<text x="15" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 15 {(T + H - B) / 2})">{ylabel}</text>']
    for i in range(6):
        xv = x0 + (x1 - x0) * i / 5
        out.append(f'<text x="{px(xv):.1f}" y="{H - B + 16}" text-anchor="middle">{num(xv)}</text>')
        yv = y0 + (y1 - y0) * i / 5
        label = 10 ** yv if logy else yv
        ypix = H - B - (yv - y0) / (y1 - y0) * (H - T - B)
        out.append(f'<text x="{L - 6}" y="{ypix + 4:.1f}" text-anchor="end">{num(label)}</text>')
        out.append(f'<line x1="{L}" y1="{ypix:.1f}" x2="{W - R}" y2="{ypix:.1f}" stroke="#ddd"/>')
    for k, (label, pts) in enumerate(series):
        c = COLORS[k % len(COLORS)]
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{d}"/>')
        out.append(f'<rect x="{W - R + 10}" y="{T + 20 * k}" width="12" height="12" fill="{c}"/>')
        out.append(f'<text x="{W - R + 28}" y="{T + 20 * k + 11}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def svg_bars(path, title, ylabel, groups, labels):
    """groups: [(group name, [value per label])]."""
    W, H, L, R, T, B = 760, 360, 70, 190, 40, 50
    vmax = max((v or 0) for _, vals in groups for v in vals) or 1
    gw = (W - L - R) / len(groups)
    bw = gw * 0.8 / len(labels)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<text x="15" y="{(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 15 {(T + H - B) / 2})">{ylabel}</text>']
    for i in range(6):
        v = vmax * 1.1 * i / 5
        y = H - B - v / (vmax * 1.1) * (H - T - B)
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{num(v)}</text>')
        out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
    for g, (name, vals) in enumerate(groups):
        gx = L + g * gw + gw * 0.1
        out.append(f'<text x="{L + g * gw + gw / 2:.1f}" y="{H - B + 16}" text-anchor="middle">{name}</text>')
        for k, v in enumerate(vals):
            if v is None:
                continue
            h = v / (vmax * 1.1) * (H - T - B)
            out.append(f'<rect x="{gx + k * bw:.1f}" y="{H - B - h:.1f}" width="{bw * 0.9:.1f}" '
                       f'height="{h:.1f}" fill="{COLORS[k % len(COLORS)]}"/>')
    for k, label in enumerate(labels):
        c = COLORS[k % len(COLORS)]
        out.append(f'<rect x="{W - R + 10}" y="{T + 20 * k}" width="12" height="12" fill="{c}"/>')
        out.append(f'<text x="{W - R + 28}" y="{T + 20 * k + 11}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# ---------------------------------------------------------------------------------------------
# The report.

NAMES = {
    "hb_async": "hotbackup, sync=async",
    "hb_durable": "hotbackup, sync=durable",
    "redis_always": "Redis 7, appendfsync always + replica",
    "redis_everysec": "Redis 7, appendfsync everysec + replica",
    "pg_on": "PostgreSQL 15, synchronous_commit=on + sync standby",
    "pg_remote_write": "PostgreSQL 15, synchronous_commit=remote_write + sync standby",
}
ANCHORS = ["redis_always", "redis_everysec", "pg_on", "pg_remote_write"]
SHORT = {
    "hb_async": "hotbackup async",
    "hb_durable": "hotbackup durable",
    "redis_always": "Redis always",
    "redis_everysec": "Redis everysec",
    "pg_on": "PostgreSQL on",
    "pg_remote_write": "PostgreSQL remote_write",
}


def num(v):
    """Axis labels: 12k, 1.5M, 0.25."""
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "–"


def fmt(x, spec=".0f"):
    return "–" if x is None else format(x, spec)


SECTION_TITLES = {
    "throughput": "Write throughput and latency with one slave",
    "lag": "Replication lag under load",
    "catchup": "Catch-up after an outage",
    "fullsync": "Full sync",
    "stall": "Master memory while a slave is stalled",
    "slaves": "Cost of more slaves",
    "failover": "Promote and switchover",
}


def render(data, cfg, took):
    md = []
    remeasured = data.get("remeasured", {})

    def put(line):
        md.append(line)
        for name, title in SECTION_TITLES.items():
            if line == f"## {title}\n" and name in remeasured:
                r = remeasured[name]
                md.append(f"*Measured again on {r['date']} with hotbackup {r['hotbackup']}, after the "
                          "rest of this report.*\n")
    meta = data["meta"]
    put("# hotbackup benchmark report\n")
    put(f"Written by `bench/report.sh` on {meta['date']} in {took / 60:.0f} min: {meta['runs']} run(s) per "
        f"figure, medians. Machine: {meta['machine']}. hotbackup {meta['hotbackup'].removeprefix('hotbackup ')} (release build), "
        f"{meta['redis']}, {meta['postgres']}. Everything on loopback on this one machine (the "
        "clients, the master and its slaves share its cores and its disk), so the figures compare "
        "the systems with each other; they are not what two machines would give. Raw samples: "
        "[report/data.json](report/data.json).\n")
    put("Every write below is durable before it is acknowledged unless said otherwise: hotbackup "
        "fsyncs its journal before a reply (`sync=async`: on the master; `sync=durable`: on the "
        "master and on the slave); Redis with `appendfsync always` fsyncs its AOF before a reply, "
        "`everysec` once a second (up to a second of acknowledged writes can be lost); PostgreSQL "
        "`synchronous_commit=on` waits for the standby's flush, `remote_write` for its write.\n")
    if "throughput" in data:
        t = data["throughput"]
        put("## Write throughput and latency with one slave\n")
        put(f"SET of {VALUE}-byte values over {KEYSPACE:,} keys with redis-benchmark (about {cfg.secs} s "
            f"per figure); PostgreSQL: pgbench, one-row upsert `INSERT … ON CONFLICT DO UPDATE` of "
            f"the same shape, {cfg.secs} s. Latency p50/p99 in ms.\n")
        put("| system | clients | writes/s | p50 ms | p99 ms | " + " | ".join(f"vs {SHORT[a]}" for a in ANCHORS) + " |")
        put("|---|---|---|---|---|" + "---|" * len(ANCHORS))
        summary = {}
        for key in NAMES:
            if key not in t:
                continue
            for c, runs in t[key].items():
                rps, p50, p99 = (med([r[i] for r in runs]) for i in range(3))
                summary[(key, c)] = (rps, p50, p99)
        for key in NAMES:
            for c in ("1", "10", "50"):
                if (key, c) not in summary:
                    continue
                rps, p50, p99 = summary[(key, c)]
                ratios = ([ratio(rps, summary.get((a, c), (None,))[0]) for a in ANCHORS]
                          if key.startswith("hb") else [""] * len(ANCHORS))
                put(f"| {NAMES[key]} | {c} | {fmt(rps)} | {fmt(p50, '.3f')} | {fmt(p99, '.3f')} | " + " | ".join(ratios) + " |")
        put("")
        own = [f"{c} client{'s' if c != '1' else ''} {ratio(summary[('hb_durable', c)][0], summary[('hb_async', c)][0])}"
               for c in ("1", "10", "50") if ("hb_durable", c) in summary and ("hb_async", c) in summary]
        if own:
            put("hotbackup `sync=durable` (acknowledged once durable on the master and on the slave) against "
                "its own `sync=async` (durable on the master only): " + ", ".join(own) + ".\n")
        keys = [k for k in NAMES if (k, "1") in summary]
        svg_bars(os.path.join(OUT_DIR, "throughput.svg"), "Durable writes/s with one slave", "writes/s",
                 [(f"{c} client{'s' if c != '1' else ''}", [summary.get((k, c), (None,))[0] for k in keys])
                  for c in ("1", "10", "50")], [SHORT[k] for k in keys])
        put("![throughput](report/throughput.svg)\n")
    if "lag" in data:
        put("## Replication lag under load\n")
        put(f"10 clients write as fast as they can (redis-benchmark SET) while a probe sets a key on the "
            f"master every 50 ms and times until the slave returns it ({cfg.lag_secs} s per run). "
            "Medians over runs of each run's percentiles.\n")
        put("| system | probes | p50 ms | p99 ms | max ms |")
        put("|---|---|---|---|---|")
        series = []
        for key, runs in data["lag"].items():
            p = [[pct(sorted(x[1] for x in r), q) for r in runs] for q in (0.5, 0.99, 1.0)]
            put(f"| {NAMES[key]} | {sum(len(r) for r in runs)} | {med(p[0]):.2f} | {med(p[1]):.2f} | {med(p[2]):.2f} |")
            series.append((SHORT[key], runs[0]))
        put("")
        svg_lines(os.path.join(OUT_DIR, "lag.svg"), "Replication lag under load (first run)", "seconds",
                  "lag ms (log scale)", series, logy=True)
        put("![lag](report/lag.svg)\n")
    if "catchup" in data:
        put("## Catch-up after an outage\n")
        put(f"The slave is stopped (SIGSTOP) for {cfg.outage} s while 10 clients write as fast as the "
            "master takes them; then the load stops and the slave resumes. Time from its resumption to "
            "holding everything the master has.\n")
        put("| system | backlog (writes) | catch-up s | writes/s caught up | full resyncs |")
        put("|---|---|---|---|---|")
        c = data["catchup"]
        for key, runs in c.items():
            secs = med([r["secs"] for r in runs])
            back = med([r["backlog"] for r in runs])
            put(f"| {NAMES[key]} | {back:,.0f} | {secs:.2f} | {back / secs:,.0f} | "
                f"{sum(r['full_syncs'] for r in runs)} of {len(runs)} runs |")
        if "hb_async" in c and "redis_always" in c:
            hb = med([r["backlog"] / r["secs"] for r in c["hb_async"]])
            rd = med([r["backlog"] / r["secs"] for r in c["redis_always"]])
            put(f"\nCatch-up rate, hotbackup vs Redis: {ratio(hb, rd)}.")
        put("")
    if "fullsync" in data:
        put("## Full sync\n")
        put("A wiped slave joins a master holding N items of 200 bytes (keys of 17 bytes); time from "
            "starting the slave to caught up, with the new copy durable (hotbackup switches to it "
            "only then). The slave's link port is held open across its restarts, as the "
            "package's socket unit holds it (`hotbackup-slave@.socket`), so the master's "
            "connection waits in the backlog, as a Redis replica dials its master at once. Redis: a new replica of a master holding the same data (its RDB transfer "
            "and load; `repl-diskless-sync-delay 0`, so that Redis does not first wait its default "
            "5 s for more replicas): *loaded* is when it serves the data from memory, *on disk* when "
            "the AOF rewrite that the full sync starts has finished (before that a restart of the "
            "replica comes back empty). *Store alone*: hotbackup's slave side with no master and no "
            "network (`examples/store_load.rs`: the same chunks through the same loader threads, "
            "then the checkpoint), the floor that the store puts under a full sync. The disk's "
            "limit: the same bytes written once with `dd conv=fdatasync`. Master RSS after loading "
            "the items (hotbackup's store cache 1 GiB).\n")
        put("| items | values | hotbackup s | Redis loaded s | ratio | Redis on disk s | ratio | "
            "store alone s | dd fdatasync s | master RSS MiB hotbackup | Redis | ratio |")
        put("|---|---|---|---|---|---|---|---|---|---|---|---|")
        pts_hb, pts_rd = [], []
        for n, row in sorted(data["fullsync"].items(), key=lambda kv: int(kv[0])):
            hb, rd, dd = med(row["hb"]), med(row["redis"]), med(row["dd"])
            rdd = med(row["redis_durable"]) if row.get("redis_durable") else None
            st = med(row["store"]) if row.get("store") else None
            hr, rr = med(row["hb_rss"]), med(row["redis_rss"])
            gb = int(n) * 200 / 1e9
            put(f"| {int(n):,} | {gb:.2f} GB | {hb:.2f} | {rd:.2f} | {ratio(hb, rd)} | "
                f"{fmt(rdd, '.2f')} | {ratio(hb, rdd)} | {fmt(st, '.2f')} | {dd:.2f} | "
                f"{hr:.0f} | {rr:.0f} | {ratio(hr, rr)} |")
            pts_hb.append((gb, hb))
            pts_rd.append((gb, rd))
        put("")
        svg_lines(os.path.join(OUT_DIR, "fullsync.svg"), "Full sync time by size", "GB of values", "seconds",
                  [("hotbackup", pts_hb), ("Redis 7", pts_rd)])
        put("![full sync](report/fullsync.svg)\n")
    if "stall" in data:
        put("## Master memory while a slave is stalled\n")
        put(f"The slave is stopped for {cfg.stall} s while 10 clients write; the master's RSS every "
            "second. hotbackup's store cache is 64 MiB here and the key space was written once "
            "before, so growth would be the stalled slave's cost: hotbackup keeps the backlog in its "
            "journal on disk; Redis keeps it in the replica's output buffer (until "
            "`client-output-buffer-limit replica`, 256 MB by default, drops the replica).\n")
        put("| system | RSS at start MiB | max MiB | at end MiB | writes during the stall |")
        put("|---|---|---|---|---|")
        series = []
        for key, r in data["stall"].items():
            s = r["series"]
            put(f"| {NAMES[key]} | {s[0][1]:.0f} | {max(x[1] for x in s):.0f} | {s[-1][1]:.0f} | {r['writes']:,} |")
            series.append((SHORT[key], s))
        put("")
        svg_lines(os.path.join(OUT_DIR, "stall.svg"), "Master RSS while its slave is stopped", "seconds",
                  "RSS MiB", series)
        put("![stall](report/stall.svg)\n")
    if "slaves" in data:
        put("## Cost of more slaves\n")
        put(f"Writes/s at 50 clients with 1, 2 and 4 slaves (hotbackup `sync=durable` waits for one "
            f"slave: `min_sync_slaves = 1`), about {cfg.secs} s per figure.\n")
        put("| system | 1 slave | 2 slaves | 4 slaves | 4 vs 1 |")
        put("|---|---|---|---|---|")
        for key, row in data["slaves"].items():
            v = {n: med([r[0] for r in row[n]]) for n in row}
            put(f"| {NAMES[key]} | {fmt(v.get('1'))} | {fmt(v.get('2'))} | {fmt(v.get('4'))} | "
                f"{ratio(v.get('4'), v.get('1'))} |")
        if "hb_async" in data["slaves"] and "redis_always" in data["slaves"]:
            put("")
            for n in ("1", "2", "4"):
                hb = med([r[0] for r in data["slaves"]["hb_async"].get(n, [])])
                rd = med([r[0] for r in data["slaves"]["redis_always"].get(n, [])])
                put(f"- {n} slave(s): hotbackup async {ratio(hb, rd)} Redis always.")
        put("")
    if "failover" in data:
        f = data["failover"]
        m = {k: med(v) for k, v in f.items()}
        put("## Promote and switchover\n")
        put("bench/failover.py's measurements: 100k keys, fsync on every write. Promote: the master "
            "is killed; from starting the command (`hotbackup promote` / `redis-cli REPLICAOF NO ONE`) "
            "to the first write acknowledged by the new master. Switchover: one client writing SET "
            "after SET (moving to the other node when refused); the longest gap between two "
            "acknowledged writes around a planned swap (`hotbackup switchover` / Redis `FAILOVER`).\n")
        put("| | hotbackup | Redis 7 | ratio |")
        put("|---|---|---|---|")
        for label, a, b in (("promote → first write acked", "hb_promote", "redis_promote"),
                            ("switchover: longest write gap", "hb_switch_gap", "redis_switch_gap"),
                            ("switchover: command duration", "hb_switch_cmd", "redis_switch_cmd")):
            put(f"| {label} | {m[a] * 1000:.0f} ms | {m[b] * 1000:.0f} ms | {ratio(m[a], m[b])} |")
        put(f"| acknowledged writes lost in switchovers (sum) | {sum(f['hb_switch_lost'])} | "
            f"{sum(f['redis_switch_lost'])} | |")
        put("")
    return "\n".join(md) + "\n"


def versions():
    hbv = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    rv = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    redis_v = "Redis " + next((w.split("=")[1] for w in rv if w.startswith("v=")), "?")
    pg_v = subprocess.run([f"{PG_BIN}/postgres", "--version"], capture_output=True, text=True).stdout.strip()
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "hotbackup": f"{hbv.removeprefix('hotbackup ')} ({commit})",
        "redis": redis_v,
        "postgres": pg_v.replace("postgres (PostgreSQL)", "PostgreSQL"),
        "machine": f"{os.cpu_count()} × {cpu}, {mem:.0f} GiB RAM, Linux {platform.release()}",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes and short runs (a smoke test of the script)")
    ap.add_argument("--only", default=",".join(SECTIONS))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "REPORT.md"))
    ap.add_argument("--data", help="render the report from a data.json of an earlier run")
    cfg = ap.parse_args()
    cfg.secs, cfg.lag_secs, cfg.outage, cfg.stall = (2, 3, 3, 5) if cfg.quick else (8, 20, 30, 60)
    cfg.sizes = [20_000, 40_000] if cfg.quick else [1_250_000, 2_500_000, 5_000_000]
    os.makedirs(OUT_DIR, exist_ok=True)
    if cfg.data:
        with open(cfg.data) as f:
            data = json.load(f)
        cfg.runs = data["meta"]["runs"]
        with open(cfg.out, "w") as f:
            f.write(render(data, cfg, data["meta"].get("took", 0)))
        return
    if os.geteuid() != 0:
        sys.exit("run as root (PostgreSQL runs as user postgres; packages are installed)")
    data = {"meta": versions()}
    data["meta"]["runs"] = cfg.runs
    data["meta"]["quick"] = cfg.quick
    saved = os.path.join(OUT_DIR, "data.json")
    partial = set(cfg.only.split(",")) != set(SECTIONS)
    if partial and os.path.exists(saved) and not cfg.quick:
        # Some sections again: the others stay as measured before, and the report says which
        # sections are newer and with what build.
        with open(saved) as f:
            old = json.load(f)
        now = data["meta"]
        data = old
        for name in cfg.only.split(","):
            data.setdefault("remeasured", {})[name] = {"date": now["date"], "hotbackup": now["hotbackup"]}
            # The section's samples are all measured again (not added to the old build's).
            data.pop(name, None)
    work = tempfile.mkdtemp(prefix="hb-report.", dir="/var/tmp")
    os.chmod(work, 0o755)
    started = time.time()
    try:
        for name in cfg.only.split(","):
            log(f"section {name}")
            SECTIONS[name](work, cfg, data)
            with open(os.path.join(OUT_DIR, "data.json"), "w") as f:
                json.dump(data, f)
    finally:
        PROCS.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    if not partial:
        data["meta"]["took"] = time.time() - started
    with open(os.path.join(OUT_DIR, "data.json"), "w") as f:
        json.dump(data, f)
    with open(cfg.out, "w") as f:
        f.write(render(data, cfg, data["meta"].get("took", time.time() - started)))
    log(f"wrote {cfg.out} in {(time.time() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
