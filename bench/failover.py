#!/usr/bin/python3
"""Failover benchmark: hotbackup's promote and switchover beside Redis 7's REPLICAOF NO ONE and
FAILOVER, on this machine, on loopback, in the same script.

    bench/failover.py [RUNS]        (default 5; figures are medians over the runs)

Each run builds a fresh pair of each kind (100k keys of 100 bytes, fsync on every write: Redis
with appendonly yes + appendfsync always), then measures:

  1. promote: the master is killed (SIGKILL); time from starting the promote command (a process:
     `hotbackup promote` / `redis-cli REPLICAOF NO ONE`) to the first write acknowledged by the
     new master. hotbackup's includes making the new generation durable (fsync of the journal
     and a store checkpoint); Redis's REPLICAOF NO ONE writes nothing to disk.
  2. switchover: under a continuous write load (one client, SET after SET, moving to the other
     node when refused), the longest gap between two acknowledged writes around a planned swap
     (hotbackup switchover / Redis FAILOVER), and whether any acknowledged write is missing on
     the new master afterwards.

Needs Debian's redis-server, redis-tools and python3-redis (apt-get install them as root), and
runs `cargo build --release`.
"""

import os
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
KEYS = 100_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if redis.Redis(port=port, socket_timeout=1).ping():
                return
        except Exception:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} did not come up")


def load(port):
    r = redis.Redis(port=port)
    value = b"x" * 100
    for start in range(0, KEYS, 1000):
        r.mset({f"k{i:07}": value for i in range(start, start + 1000)})


def wait_until(f, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if f():
            return True
        time.sleep(0.01)
    return False


def first_write_after(port, t0, timeout=30):
    """Seconds from t0 to the first SET acknowledged by the node at `port`."""
    r = redis.Redis(port=port, socket_timeout=2)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            r.set("probe", "1")
            return time.time() - t0
        except redis.RedisError:
            time.sleep(0.001)
    raise RuntimeError("no write accepted")


class Writer(threading.Thread):
    """SET after SET on whichever node takes them; records acked keys and the longest gap."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.ports = ports
        self.stop = threading.Event()
        self.acked = []
        self.longest = 0.0

    def run(self):
        which = 0
        conns = [redis.Redis(port=p, socket_timeout=5) for p in self.ports]
        last = time.time()
        i = 0
        deadline = time.time() + 120
        while not self.stop.is_set() and time.time() < deadline:
            key = f"w{i}"
            try:
                conns[which].set(key, i)
                now = time.time()
                self.longest = max(self.longest, now - last)
                last = now
                self.acked.append(key)
                i += 1
            except redis.RedisError:
                which = 1 - which
                time.sleep(0.0005)


def missing(port, keys):
    r = redis.Redis(port=port)
    lost = 0
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        lost += sum(1 for v in r.mget(chunk) if v is None)
    return lost


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, log):
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def kill(self, p):
        p.send_signal(signal.SIGKILL)
        p.wait()

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def hb_pair(work, procs):
    key = os.path.join(work, "pair.key")
    with open(key, "w") as f:
        f.write("benchmark-pair-secret-0123456789\n")
    os.chmod(key, 0o600)
    ports = {n: (free_port(), free_port()) for n in "ab"}
    nodes = {}
    for n, role in (("b", "slave"), ("a", "master")):
        other = "a" if n == "b" else "b"
        cfg = os.path.join(work, f"{n}.toml")
        with open(cfg, "w") as f:
            f.write(
                f'role = "{role}"\ndata_dir = "{work}/data-{n}"\n'
                f'[client]\nlisten = "127.0.0.1:{ports[n][0]}"\n'
                f'[link]\nlisten = "127.0.0.1:{ports[n][1]}"\n'
                f'peers = ["127.0.0.1:{ports[other][1]}"]\nkey_file = "{key}"\n'
                f'reconnect_min = "50ms"\nreconnect_max = "500ms"\n'
                f'[log]\nlevel = "warn"\n'
            )
        log = open(os.path.join(work, f"{n}.log"), "ab")
        nodes[n] = {
            "cfg": cfg,
            "port": ports[n][0],
            "proc": procs.start([BIN, "serve", "--config", cfg], log),
        }
        wait_up(ports[n][0])
    return nodes


def hb_synced(nodes, master, slave):
    m = redis.Redis(port=nodes[master]["port"])
    s = redis.Redis(port=nodes[slave]["port"])

    def ok():
        mi = m.info("replication")
        si = s.info("replication")
        return mi.get("durable_lsn", 0) > 0 and si.get("slave_repl_offset") == mi.get("durable_lsn")

    if not wait_until(ok, 120):
        raise RuntimeError("hotbackup slave did not catch up")


def redis_pair(work, procs):
    pm, ps = free_port(), free_port()
    common = ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--bind", "127.0.0.1"]
    for name, port, extra in (("rm", pm, []), ("rs", ps, ["--replicaof", "127.0.0.1", str(pm)])):
        d = os.path.join(work, name)
        os.makedirs(d)
        log = open(os.path.join(work, f"{name}.log"), "ab")
        p = procs.start(["redis-server", "--port", str(port), "--dir", d] + common + extra, log)
        if name == "rm":
            rm_proc = p
        wait_up(port)
    return pm, ps, rm_proc


def redis_synced(pm, ps):
    m = redis.Redis(port=pm)
    s = redis.Redis(port=ps)

    def ok():
        mi = m.info("replication")
        si = s.info("replication")
        return si.get("master_link_status") == "up" and si.get("slave_repl_offset") == mi.get("master_repl_offset")

    if not wait_until(ok, 120):
        raise RuntimeError("redis replica did not catch up")


def run_once(results):
    work = tempfile.mkdtemp(prefix="hb-failover-bench.", dir="/var/tmp")
    procs = Procs()
    try:
        # 1. promote after the master's death.
        hb = hb_pair(work, procs)
        load(hb["a"]["port"])
        hb_synced(hb, "a", "b")
        procs.kill(hb["a"]["proc"])
        t0 = time.time()
        subprocess.run([BIN, "promote", "--config", hb["b"]["cfg"]], check=True, capture_output=True)
        results["hb_promote"].append(first_write_after(hb["b"]["port"], t0))
        procs.stop_all()

        pm, ps, rm = redis_pair(work, procs)
        load(pm)
        redis_synced(pm, ps)
        procs.kill(rm)
        t0 = time.time()
        # The same shape as hotbackup's: an admin command run as a process.
        subprocess.run(["redis-cli", "-p", str(ps), "REPLICAOF", "NO", "ONE"], check=True,
                       capture_output=True)
        results["redis_promote"].append(first_write_after(ps, t0))
        procs.stop_all()

        # 2. switchover under write load.
        work2 = os.path.join(work, "s")
        os.makedirs(work2)
        hb = hb_pair(work2, procs)
        load(hb["a"]["port"])
        hb_synced(hb, "a", "b")
        w = Writer([hb["a"]["port"], hb["b"]["port"]])
        w.start()
        time.sleep(1)
        t0 = time.time()
        out = subprocess.run([BIN, "switchover", "--config", hb["a"]["cfg"]], capture_output=True, text=True)
        took = time.time() - t0
        if out.returncode != 0:
            raise RuntimeError(f"switchover failed: {out.stdout}{out.stderr}")
        time.sleep(1)
        w.stop.set()
        w.join()
        hb_synced(hb, "b", "a")
        results["hb_switch_gap"].append(w.longest)
        results["hb_switch_cmd"].append(took)
        results["hb_switch_lost"].append(missing(hb["b"]["port"], w.acked))
        procs.stop_all()

        work3 = os.path.join(work, "r2")
        os.makedirs(work3)
        pm, ps, _ = redis_pair(work3, procs)
        load(pm)
        redis_synced(pm, ps)
        w = Writer([pm, ps])
        w.start()
        time.sleep(1)
        t0 = time.time()
        redis.Redis(port=pm).execute_command("FAILOVER", "TIMEOUT", "10000")
        ok = wait_until(lambda: redis.Redis(port=ps).info("replication").get("role") == "master", 30)
        took = time.time() - t0
        if not ok:
            raise RuntimeError("redis FAILOVER did not complete")
        time.sleep(1)
        w.stop.set()
        w.join()
        results["redis_switch_gap"].append(w.longest)
        results["redis_switch_cmd"].append(took)
        results["redis_switch_lost"].append(missing(ps, w.acked))
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    if not shutil.which("redis-server"):
        sys.exit("needs redis-server (apt-get install redis-server redis-tools python3-redis)")
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=ROOT, check=True)
    keys = ["hb_promote", "redis_promote", "hb_switch_gap", "hb_switch_cmd", "hb_switch_lost",
            "redis_switch_gap", "redis_switch_cmd", "redis_switch_lost"]
    results = {k: [] for k in keys}
    for i in range(runs):
        run_once(results)
        print(f"run {i + 1}/{runs} done", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in results.items()}
    ms = lambda s: f"{s * 1000:8.1f} ms"
    print(f"failover benchmark, {runs} run(s), medians; {KEYS} keys, fsync on every write\n")
    print(f"{'':44}{'hotbackup':>12}{'Redis 7':>12}{'ratio':>8}")
    for label, a, b in (
        ("promote: command -> first write acked", "hb_promote", "redis_promote"),
        ("switchover: longest write gap (client)", "hb_switch_gap", "redis_switch_gap"),
        ("switchover: command duration", "hb_switch_cmd", "redis_switch_cmd"),
    ):
        ratio = med[a] / med[b] if med[b] else float("inf")
        print(f"{label:44}{ms(med[a]):>12}{ms(med[b]):>12}{ratio:8.2f}")
    print(f"{'switchover: acked writes lost (total)':44}{sum(results['hb_switch_lost']):>12}"
          f"{sum(results['redis_switch_lost']):>12}")


if __name__ == "__main__":
    main()
