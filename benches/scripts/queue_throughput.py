#!/usr/bin/env python3
"""The outbound queue under load: submission -> queue -> Postfix's smtp-sink, all on loopback.

A fresh Postlog (own data directory, every listener on a free loopback port, JSON logs) routes
d0.test ... d9.test to one `smtp-sink` with `[routes]`; `[queue]` keeps its defaults. smtpload
logs in on the `submission` listener as alice@example.test (AUTH PLAIN, plain text on
loopback) and sends N messages over 16 sessions, to one destination domain and then to ten.
For each case and run (a fresh store each time), measured:

- accepted/s: smtpload's own figure (submission `250`s per second of its run);
- delivered/s: messages the sink received / time from the first submission `250` to the last
  remote `250` (from the log lines);
- delay from the submission `250` (the session's `delivered` log line, written as the reply
  is sent, with the queue id) to the remote `250` (the scheduler's `queue: sent` line for the
  same id): p50/p99/max; also how long the scheduler took to see each new entry (its
  `queue: queued` line) as a hint of where the delay goes;
- CPU seconds of postlog, smtp-sink, smtpload, and of the rest of the machine (others' load).

Then the cost of a queued message: with the routes pointing at a closed port, K messages are
queued and deferred once (so they stay). Disk: growth of the store's segment files / K,
against the message's size as queued; broken down by record kind with `postlog dump`.
Memory: VmRSS (and RssAnon) of the server with 0 and with K queued messages, live and in a
fresh process started on the full queue, difference / K.

    benches/scripts/queue_throughput.py            # full run (N=20,000, K=10,000, 3 runs)
    benches/scripts/queue_throughput.py --quick    # a few hundred messages, under a minute
    benches/scripts/queue_throughput.py --json     # also one JSON line on stdout
    ... --dkim [rsa|ed25519]    # also a 10-domain case with the sender's domain DKIM-signing
    ... --postfix               # also the same load through a private Postfix to the same sink
    ... -c 2 -n 5000 --only throughput             # a lighter load: the delay when nothing queues up

With --postfix (root), a Postfix instance with its own configuration, queue and log in the
temporary directory (the system's Postfix is not touched) relays the ten domains to the same
sink, taking the same smtpload run without AUTH (relaying is allowed from loopback). Its
delivered rate is N / the time until the sink has them all, its delay Postfix's own `delay=`
(arrival to the remote `250`), its CPU that of the master process and its children.

Needs Postfix's smtp-sink (Debian package `postfix`). Builds the release binaries with cargo
unless --no-build. Everything it starts is stopped and its temporary directory removed at
the end, also on failure or Ctrl-C. Run it on a quiet machine; it reports the load.
"""
import argparse
import calendar
import json
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
POSTLOG = os.path.join(TARGET, "release", "postlog")
SMTPLOAD = os.path.join(TARGET, "release", "smtpload")
USER, PASSWORD = "alice@example.test", "secret"
DOMAINS = [f"d{i}.test" for i in range(10)]
LISTENERS = ["smtp", "submission", "submissions", "lmtp", "imap", "imaps", "pop3", "pop3s", "http"]
HZ = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_ports(n):
    """n distinct loopback ports nothing listens on (bound, then released)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, proc, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what}: nothing listens on 127.0.0.1:{port} after {timeout} s")


def proc_cpu(pid):
    """utime + stime of a process, in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except OSError:
        return 0.0


def busy_seconds():
    """CPU seconds the whole machine spent busy so far (all cores)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / HZ


def memory(pid):
    """VmRSS and RssAnon of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) * 1024
    return out


def segment_bytes(data_dir):
    return sum(os.path.getsize(os.path.join(data_dir, n)) for n in os.listdir(data_dir)
               if n.startswith("seg-") and n.endswith(".log"))


def store_metrics(port):
    """The store's commit counters from `GET /metrics`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        page = b""
        while chunk := c.recv(65536):
            page += chunk
    out = {}
    for line in page.decode(errors="replace").splitlines():
        for key in ("postlog_store_commit_batches_total", "postlog_store_commit_transactions_total",
                    "postlog_store_sync_seconds_total", "postlog_store_written_bytes_total"):
            if line.startswith(key + " "):
                out[key.removeprefix("postlog_store_").removesuffix("_total")] = float(line.split()[-1])
    return out


def fdatasync_rate(directory, seconds=1.0):
    """4 KiB writes + fdatasync per second in `directory`: how fast the disk commits right now."""
    path = os.path.join(directory, "fdatasync-probe.tmp")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        n, t0, block = 0, time.time(), b"x" * 4096
        while time.time() - t0 < seconds:
            os.write(fd, block)
            os.fdatasync(fd)
            n += 1
        return round(n / (time.time() - t0))
    finally:
        os.close(fd)
        os.unlink(path)


def median(xs):
    return statistics.median(xs) if xs else None


def percentile(sorted_xs, p):
    if not sorted_xs:
        return None
    k = min(len(sorted_xs) - 1, max(0, int(round(p / 100 * len(sorted_xs) + 0.5)) - 1))
    return sorted_xs[k]


_SECONDS = {}


def parse_time(text):
    """`2026-11-27T14:00:00.123Z` (the log's `time`, UTC, milliseconds) -> Unix seconds."""
    head, frac = text[:19], text[20:-1]
    base = _SECONDS.get(head)
    if base is None:
        base = _SECONDS[head] = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    return base + int(frac) / 1000


class Sink:
    """Postfix's smtp-sink, counting messages (-c) and keeping none (no -d)."""

    def __init__(self, workdir, port):
        exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        if not os.path.exists(exe):
            raise RuntimeError("smtp-sink not found: install Postfix (apt-get install postfix)")
        self.out = os.path.join(workdir, "smtp-sink.out")
        self.port = port
        user = pwd.getpwuid(os.getuid()).pw_name
        with open(self.out, "w") as out:
            self.proc = subprocess.Popen([exe, "-u", user, "-c", f"127.0.0.1:{port}", "1000"],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(port, self.proc, "smtp-sink")
        except BaseException:
            self.stop()
            raise

    def counts(self):
        """(sessions, messages) received so far, from its last counter line
        `sess=N quit=N mesg=N`."""
        with open(self.out, "rb") as f:
            f.seek(max(0, os.path.getsize(self.out) - 200))
            found = re.findall(rb"sess=(\d+) quit=\d+ mesg=(\d+)", f.read())
        return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Postlog:
    """One server on its own data directory; stderr (JSON lines) goes to a file."""

    live = set()  # started and not stopped yet: stopped on the way out, whatever happens

    def __init__(self, workdir, name, route_port, dkim=None):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.data = os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "postlog.toml")
        self.log_path = os.path.join(self.dir, "serve.log")
        self.ports = dict(zip(LISTENERS, free_ports(len(LISTENERS))))
        lines = ['hostname = "mx.example.test"', f'data_dir = "{self.data}"', "[listen]"]
        lines += [f'{k} = "127.0.0.1:{p}"' for k, p in self.ports.items()]
        lines += ["[log]", 'level = "info"', 'format = "json"', "[routes]"]
        lines += [f'"{d}" = "127.0.0.1:{route_port}"' for d in DOMAINS]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.run("domain", "add", "example.test")
        self.run("user", "add", USER, "--password-stdin", stdin=PASSWORD)
        if dkim:
            self.run("dkim", "generate", "example.test", "--algorithm", dkim)
        self.proc = None
        self.log_file = None

    def run(self, *args, stdin=None):
        r = subprocess.run([POSTLOG, *args, "--config", self.config], input=stdin, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError(f"postlog {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def start(self):
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen([POSTLOG, "serve", "--config", self.config], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log_file)
        Postlog.live.add(self)
        wait_port(self.ports["submission"], self.proc, "postlog serve")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        Postlog.live.discard(self)
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    def events(self):
        """Every JSON log line so far."""
        out = []
        with open(self.log_path, "rb") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out


class LogCounter:
    """Counts log lines by a few markers, reading only what was appended since the last call."""

    MARKERS = {"sent": b'"status":"sent"', "deferred": b'"status":"deferred"', "bounced": b'"status":"bounced"',
               "removed": b'"message":"queue: removed"', "errors": b'"level":"ERROR"'}

    def __init__(self, path):
        self.path, self.offset, self.rest = path, 0, b""
        self.counts = dict.fromkeys(self.MARKERS, 0)

    def update(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
            self.offset = f.tell()
        data = self.rest + chunk
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        for name, marker in self.MARKERS.items():
            self.counts[name] += data[:cut].count(marker)
        return self.counts


POSTFIX_MAIN_CF = """compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = pf.example.test
mydomain = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
transport_maps = inline:{{ {routes} }}
maillog_file = {dir}/maillog
maillog_file_prefixes = {dir}
alias_maps =
alias_database =
local_recipient_maps =
smtpd_peername_lookup = no
biff = no
"""


class Postfix:
    """A private Postfix instance (its own configuration, queue and log; the system's Postfix is
    not touched) that relays d0.test ... d9.test to the sink, with Debian's default master.cf
    except chroot (off) and the smtpd address. Needs root."""

    live = set()

    def __init__(self, workdir, name, sink_port):
        self.dir = os.path.join(workdir, name)
        self.conf = os.path.join(self.dir, "conf")
        os.makedirs(self.conf)
        os.makedirs(os.path.join(self.dir, "queue"))  # `postfix start` fills it in
        os.makedirs(os.path.join(self.dir, "data"))
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        self.port = free_ports(1)[0]
        self.log_path = os.path.join(self.dir, "maillog")
        routes = ", ".join(f"{d}=smtp:[127.0.0.1]:{sink_port}" for d in DOMAINS)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(POSTFIX_MAIN_CF.format(dir=self.dir, routes=routes))
        proto = next(p for p in ("/etc/postfix/master.cf.proto", "/usr/share/postfix/master.cf.dist")
                     if os.path.exists(p))
        with open(proto) as f:
            master = [f"127.0.0.1:{self.port} inet n - n - - smtpd" if line.startswith("smtp      inet") else line
                      for line in f.read().splitlines()]
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("\n".join(master) + "\n")
        for f in ("dynamicmaps.cf",):
            if os.path.exists(f"/etc/postfix/{f}"):
                shutil.copy(f"/etc/postfix/{f}", self.conf)
        self.postfix("-F", "*/*/chroot = n", command="postconf")
        self.master = None

    def postfix(self, *args, command="postfix"):
        r = subprocess.run([command, "-c", self.conf, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{command} -c {self.conf} {' '.join(args)}: exit {r.returncode}: {r.stdout.strip()}")

    def start(self):
        Postfix.live.add(self)
        self.postfix("start")
        with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
            self.master = int(f.read().split()[0])
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"Postfix does not listen on {self.port}; log: {self.log_path}")
                time.sleep(0.05)

    def stop(self):
        if self in Postfix.live:
            Postfix.live.discard(self)
            subprocess.run(["postfix", "-c", self.conf, "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(100):
                if not os.path.exists(f"/proc/{self.master}"):
                    break
                time.sleep(0.1)

    def cpu(self):
        """CPU seconds of the instance: master, its live children, and the children it reaped."""
        total = 0.0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(pid) == self.master:
                total += sum(int(x) for x in fields[11:15]) / HZ  # utime stime cutime cstime
            elif int(fields[1]) == self.master:
                total += (int(fields[11]) + int(fields[12])) / HZ
        return total


def postfix_case(workdir, sink, name, domains, n, opts, run_no):
    """The same load through Postfix (no AUTH: relaying is allowed from loopback)."""
    pf = Postfix(workdir, f"postfix-{name}-{run_no}", sink.port)
    fsync0 = fdatasync_rate(pf.dir)
    pf.start()
    try:
        time.sleep(1.0)
        _, sink0 = sink.counts()
        load0, cpu_pf0, cpu_sink0, busy0 = os.getloadavg(), pf.cpu(), proc_cpu(sink.proc.pid), busy_seconds()
        t0 = time.time()
        args = [a for a in smtpload_args(pf.port, n, opts.size, opts.connections, opts.messages_per_connection,
                                         recipients(domains)) if a != f"{USER}:{PASSWORD}" and a != "--auth"]
        load, cpu_load = run_smtpload(args, os.path.join(pf.dir, "smtpload.out"))
        last, last_change = -1, time.time()
        while (got := sink.counts()[1] - sink0) < n:
            if got != last:
                last, last_change = got, time.time()
            elif time.time() - last_change > 120:
                raise RuntimeError(f"postfix: the sink got {got} of {n}; log: {pf.log_path}")
            time.sleep(0.05)
        t_done = time.time()
        cpu_pf, cpu_sink, busy = pf.cpu() - cpu_pf0, proc_cpu(sink.proc.pid) - cpu_sink0, busy_seconds() - busy0
        load1 = os.getloadavg()
    finally:
        pf.stop()
    delays = []
    with open(pf.log_path, errors="replace") as f:
        for line in f:
            if "status=sent" in line and " delay=" in line:
                delays.append(float(line.split(" delay=", 1)[1].split(",", 1)[0]) * 1000)
    delays.sort()
    wall = t_done - t0
    return {
        "case": name, "domains": domains, "messages": n,
        "accepted_per_s": load["msgs_per_s"],
        "submission_latency_ms": load["latency_ms"],
        "delivered_per_s_wall": round(n / wall, 1),
        "delay_ms": {"p50": percentile(delays, 50), "p99": percentile(delays, 99), "max": delays[-1]},
        "cpu_s": {"postfix": round(cpu_pf, 2), "smtp_sink": round(cpu_sink, 2), "smtpload": round(cpu_load, 2),
                  "others": round(max(0.0, busy - cpu_pf - cpu_sink - cpu_load), 2)},
        "postfix_cpu_us_per_message": round(cpu_pf / n * 1e6),
        "wall_s": round(wall, 3),
        "fdatasync_per_s_before": fsync0,
        "loadavg_before_after": [round(load0[0], 2), round(load1[0], 2)],
    }


def run_smtpload(args, out_path):
    """Runs smtpload; returns (its JSON line, its CPU seconds)."""
    with open(out_path, "w") as out:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:  # interrupted: the client goes too
            p.kill()
            p.wait()
            raise
        p.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path) as f:
        text = f.read()
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"smtpload printed no JSON line (exit {p.returncode}):\n{text}")
    result = json.loads(lines[-1])
    if p.returncode != 0:
        raise RuntimeError(f"smtpload: exit {p.returncode}, not every message was accepted:\n{text}")
    return result, usage.ru_utime + usage.ru_stime


def recipients(domains):
    """Ten addresses, used in turn: on one domain, or one on each of the ten."""
    if domains == 1:
        return [f"user{i}@{DOMAINS[0]}" for i in range(10)]
    return [f"user@{d}" for d in DOMAINS[:domains]]


def smtpload_args(port, n, size, conns, per_conn, rcpts):
    args = [SMTPLOAD, "--server", f"127.0.0.1:{port}", "-c", str(conns), "-n", str(n), "--size", str(size),
            "--from", USER, "--auth", f"{USER}:{PASSWORD}", "--pipelining",
            "--messages-per-connection", str(per_conn), "--json", "--quiet"]
    for r in rcpts:
        args += ["--to", r]
    return args


def wait_for(counter, pl, want, what, stall=120):
    """Waits until the log shows `want` lines of `what`; fails when nothing moves for `stall` s."""
    last, last_change = -1, time.time()
    while True:
        counts = counter.update()
        if counts[what] >= want:
            return counts
        if pl.proc.poll() is not None:
            raise RuntimeError(f"postlog serve exited ({pl.proc.returncode}); log: {pl.log_path}")
        progress = sum(counts.values())
        if progress != last:
            last, last_change = progress, time.time()
        elif time.time() - last_change > stall:
            raise RuntimeError(f"stuck at {counts} waiting for {want} `{what}` lines; log: {pl.log_path}")
        time.sleep(0.1)


def delivery_figures(events, listener="submission"):
    """Per queue id: submission 250, scheduler intake, remote 250. Returns the figures."""
    accepted, queued, sent = {}, {}, {}
    size = []
    for e in events:
        msg = e.get("message", "")
        if msg == "delivered" and e.get("listener") == listener:
            accepted[e["id"]] = parse_time(e["time"])
        elif msg.startswith("queue: queued"):
            queued[e["id"]] = parse_time(e["time"])
            size.append(int(e.get("size", 0)))
        elif e.get("status") == "sent":
            sent[e["id"]] = parse_time(e["time"])
    ids = [i for i in accepted if i in sent]
    delays = sorted((sent[i] - accepted[i]) * 1000 for i in ids)
    intake = sorted((queued[i] - accepted[i]) * 1000 for i in ids if i in queued)
    first, last_accept = min(accepted.values()), max(accepted.values())
    last_sent = max(sent[i] for i in ids)
    drained = sum(1 for i in ids if sent[i] > last_accept)
    r1 = lambda x: None if x is None else round(x, 1)
    ms = lambda xs: {"p50": r1(percentile(xs, 50)), "p99": r1(percentile(xs, 99)), "max": r1(xs[-1] if xs else None)}
    return {
        "accepted_logged": len(accepted),
        "sent_logged": len(ids),
        "queued_size_bytes": median(size),
        "window_s": last_sent - first,
        "accept_window_s": last_accept - first,
        "drain_after_last_accept_s": last_sent - last_accept,
        "drained": drained,
        "delay_ms": ms(delays),
        "intake_ms": ms(intake),
    }


def throughput_case(workdir, sink, name, domains, n, opts, run_no, dkim=None):
    pl = Postlog(workdir, f"{name}-{run_no}", sink.port, dkim=dkim)
    fsync0 = fdatasync_rate(pl.dir)
    pl.start()
    try:
        counter = LogCounter(pl.log_path)
        time.sleep(0.5)
        sessions0, sink0 = sink.counts()
        metrics0 = store_metrics(pl.ports["http"])
        load0 = os.getloadavg()
        cpu_pl0, cpu_sink0, busy0, self0 = proc_cpu(pl.proc.pid), proc_cpu(sink.proc.pid), busy_seconds(), \
            sum(os.times()[:2])
        t0 = time.time()
        args = smtpload_args(pl.ports["submission"], n, opts.size, opts.connections, opts.messages_per_connection,
                             recipients(domains))
        load, cpu_load = run_smtpload(args, os.path.join(pl.dir, "smtpload.out"))
        t_accepted = time.time()
        counts = wait_for(counter, pl, n, "removed")
        t_done = time.time()
        cpu_pl, cpu_sink, busy = proc_cpu(pl.proc.pid) - cpu_pl0, proc_cpu(sink.proc.pid) - cpu_sink0, \
            busy_seconds() - busy0
        cpu_self = sum(os.times()[:2]) - self0
        load1 = os.getloadavg()
        sessions1, sink1 = sink.counts()
        got, sessions = sink1 - sink0, sessions1 - sessions0
        metrics1 = store_metrics(pl.ports["http"])
        seg = segment_bytes(pl.data)
        listed = pl.run("queue", "list").strip()
        if listed != "the queue is empty":
            raise RuntimeError(f"{name}: every message was removed, but `postlog queue list` says:\n{listed[:2000]}")
    finally:
        pl.stop()
    store = {k: metrics1.get(k, 0) - metrics0.get(k, 0) for k in metrics1}
    if counts["sent"] != n or counts["deferred"] or counts["bounced"] or got != n:
        raise RuntimeError(f"{name}: expected {n} sent; log counts {counts}, the sink got {got}; log: {pl.log_path}")
    f = delivery_figures(pl.events())
    if f["sent_logged"] != n:
        raise RuntimeError(f"{name}: matched {f['sent_logged']} of {n} queue ids between the log lines")
    wall = t_done - t0
    return {
        "case": name,
        "domains": domains,
        "messages": n,
        "accepted_per_s": load["msgs_per_s"],
        "submission_latency_ms": load["latency_ms"],
        "delivered_per_s": round(n / f["window_s"], 1),
        "delivered_per_s_wall": round(n / wall, 1),
        "drain_per_s": round(f["drained"] / f["drain_after_last_accept_s"], 1)
        if f["drain_after_last_accept_s"] > 0.5 else None,
        "sink_messages": got,
        "outbound_sessions": sessions,
        "store_commits_per_message": round(store["commit_batches"] / n, 2),
        "store_transactions_per_message": round(store["commit_transactions"] / n, 2),
        "store_sync_ms_mean": round(store["sync_seconds"] / max(1, store["commit_batches"]) * 1000, 3),
        "store_sync_busy_share": round(store["sync_seconds"] / wall, 2),
        "fdatasync_per_s_before": fsync0,
        "wall_s": round(wall, 3),
        "smtpload_s": round(t_accepted - t0, 3),
        "drain_after_last_accept_s": round(f["drain_after_last_accept_s"], 3),
        "delay_ms": f["delay_ms"],
        "intake_ms": f["intake_ms"],
        "queued_size_bytes": f["queued_size_bytes"],
        "log_bytes_per_message": round(seg / n),
        "cpu_s": {"postlog": round(cpu_pl, 2), "smtp_sink": round(cpu_sink, 2), "smtpload": round(cpu_load, 2),
                  "script": round(cpu_self, 2),
                  "others": round(max(0.0, busy - cpu_pl - cpu_sink - cpu_load - cpu_self), 2)},
        "postlog_cpu_us_per_message": round(cpu_pl / n * 1e6),
        "cores_busy_of_2": round(busy / wall, 2),
        "loadavg_before_after": [round(load0[0], 2), round(load1[0], 2)],
    }


def dump_breakdown(pl, after_offsets):
    """Bytes of the records written after `after_offsets` ({segment id: size}), by record kind."""
    doc = json.loads(pl.run("dump", "--json"))
    kinds = {}
    for seg in doc["segments"]:
        start = after_offsets.get(seg["id"], 0)
        records = [r for r in seg["records"] if r["offset"] >= start]
        for i, r in enumerate(records):
            end = records[i + 1]["offset"] if i + 1 < len(records) else seg["end"]
            k = kinds.setdefault(r["kind_name"], {"records": 0, "bytes": 0})
            k["records"] += 1
            k["bytes"] += end - r["offset"]
    return kinds


def segment_sizes(pl):
    doc = json.loads(pl.run("dump", "--json"))
    return {seg["id"]: seg["end"] for seg in doc["segments"]}


def cost_case(workdir, k, opts):
    """K messages queued for a closed port, each deferred once, so they stay in the queue."""
    closed = free_ports(1)[0]
    pl = Postlog(workdir, "cost", closed)
    pl.start()
    try:
        counter = LogCounter(pl.log_path)
        time.sleep(1.0)
        fresh_empty = memory(pl.proc.pid)
        seg0, offsets0 = segment_bytes(pl.data), segment_sizes(pl)
        args = smtpload_args(pl.ports["submission"], k, opts.size, opts.connections, opts.messages_per_connection,
                             recipients(10))
        run_smtpload(args, os.path.join(pl.dir, "smtpload.out"))
        counts = wait_for(counter, pl, k, "deferred")
        if counts["sent"] or counts["bounced"] or counts["removed"]:
            raise RuntimeError(f"cost: messages left the queue: {counts}")
        time.sleep(1.0)
        live_full = memory(pl.proc.pid)
        seg1 = segment_bytes(pl.data)
        t_list = time.time()
        listed = pl.run("queue", "list")
        list_s = time.time() - t_list
        queued = sum(1 for line in listed.splitlines() if "pending" in line)
        if queued != k:
            raise RuntimeError(f"cost: `postlog queue list` shows {queued} entries, expected {k}")
        breakdown = dump_breakdown(pl, offsets0)
        sizes = [int(e["size"]) for e in pl.events() if e.get("message", "").startswith("queue: queued")]
        pl.stop()
        # A fresh process on the full queue: the scheduler loads every entry at start.
        pl.start()
        time.sleep(1.5)
        fresh_full = memory(pl.proc.pid)
        if pl.run("queue", "list").count("pending") != k:
            raise RuntimeError("cost: the queue changed over the restart")
    finally:
        pl.stop()
    raw = median(sizes)
    per = lambda a, b, key: round((a[key] - b[key]) / k)
    return {
        "queued": k,
        "raw_bytes": raw,
        "submitted_bytes": opts.size,
        "disk_bytes_per_message": round((seg1 - seg0) / k),
        "disk_per_raw_byte": round((seg1 - seg0) / k / raw, 3),
        "disk_by_record_kind": {name: {"records_per_message": round(v["records"] / k, 2),
                                       "bytes_per_message": round(v["bytes"] / k)}
                                for name, v in sorted(breakdown.items())},
        "queue_list_s": round(list_s, 3),
        "rss_fresh_empty_mib": round(fresh_empty["VmRSS"] / 2**20, 1),
        "rss_fresh_full_mib": round(fresh_full["VmRSS"] / 2**20, 1),
        "rss_live_full_mib": round(live_full["VmRSS"] / 2**20, 1),
        "rss_bytes_per_message_fresh": per(fresh_full, fresh_empty, "VmRSS"),
        "anon_bytes_per_message_fresh": per(fresh_full, fresh_empty, "RssAnon"),
        "rss_bytes_per_message_live": per(live_full, fresh_empty, "VmRSS"),
        "anon_bytes_per_message_live": per(live_full, fresh_empty, "RssAnon"),
    }


def summarize(runs):
    """Medians over runs of one case."""
    med = lambda f: median([f(r) for r in runs])
    return {
        "runs": len(runs),
        "accepted_per_s": med(lambda r: r["accepted_per_s"]),
        "delivered_per_s": med(lambda r: r["delivered_per_s"]),
        "delivered_per_s_wall": med(lambda r: r["delivered_per_s_wall"]),
        "delay_ms": {p: med(lambda r: r["delay_ms"][p]) for p in ("p50", "p99", "max")},
        "intake_ms": {p: med(lambda r: r["intake_ms"][p]) for p in ("p50", "p99", "max")},
        "submission_latency_ms": {p: med(lambda r: r["submission_latency_ms"][p]) for p in ("p50", "p99", "max")},
        "drain_after_last_accept_s": med(lambda r: r["drain_after_last_accept_s"]),
        "drain_per_s": median([r["drain_per_s"] for r in runs if r["drain_per_s"] is not None]),
        "outbound_sessions": med(lambda r: r["outbound_sessions"]),
        "store_commits_per_message": med(lambda r: r["store_commits_per_message"]),
        "store_sync_ms_mean": med(lambda r: r["store_sync_ms_mean"]),
        "fdatasync_per_s_before": med(lambda r: r["fdatasync_per_s_before"]),
        "postlog_cpu_us_per_message": med(lambda r: r["postlog_cpu_us_per_message"]),
        "cpu_s": {k: med(lambda r: r["cpu_s"][k]) for k in runs[0]["cpu_s"]},
        "log_bytes_per_message": med(lambda r: r["log_bytes_per_message"]),
    }


def fmt_run(r):
    d, i = r["delay_ms"], r["intake_ms"]
    c = r["cpu_s"]
    return (f"accepted {r['accepted_per_s']:.0f}/s, delivered {r['delivered_per_s']:.0f}/s; "
            f"delay 250->remote 250 p50 {d['p50']:.0f} p99 {d['p99']:.0f} max {d['max']:.0f} ms "
            f"(intake p50 {i['p50']:.0f} max {i['max']:.0f} ms); drain {r['drain_after_last_accept_s']:.2f} s; "
            f"CPU s postlog {c['postlog']} sink {c['smtp_sink']} smtpload {c['smtpload']} others {c['others']}; "
            f"{r['store_commits_per_message']} commits/message, sync {r['store_sync_ms_mean']} ms each, "
            f"{r['outbound_sessions']} outbound sessions; disk {r['fdatasync_per_s_before']} fdatasync/s before; "
            f"load {r['loadavg_before_after'][0]}->{r['loadavg_before_after'][1]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 messages, one run per case, K=200")
    ap.add_argument("--json", action="store_true", help="print one JSON line of every figure on stdout")
    ap.add_argument("-n", "--messages", type=int, help="messages per throughput run (default 20000)")
    ap.add_argument("-k", "--queued", type=int, help="messages kept queued for the cost figures (default 10000)")
    ap.add_argument("--runs", type=int, help="runs per case (default 3); medians are reported")
    ap.add_argument("--size", type=int, default=4096, help="message size in bytes (4096)")
    ap.add_argument("-c", "--connections", type=int, default=16, help="smtpload sessions (16)")
    ap.add_argument("--messages-per-connection", type=int, default=0,
                    help="smtpload messages per session, each session logging in once (0: no limit, the default)")
    ap.add_argument("--dkim", nargs="?", const="rsa", choices=["rsa", "ed25519"],
                    help="also a 10-domain case with a DKIM key (rsa, the default, or ed25519) for example.test")
    ap.add_argument("--postfix", action="store_true",
                    help="also the same load through a private Postfix instance to the same sink (root)")
    ap.add_argument("--only", choices=["throughput", "cost"], help="measure one part")
    ap.add_argument("--dir", default="/var/tmp", help="where the temporary directory goes (/var/tmp)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, stores)")
    args = ap.parse_args()
    n = args.messages or (300 if args.quick else 20000)
    k = args.queued or (200 if args.quick else 10000)
    runs = args.runs or (1 if args.quick else 3)

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "postlog-server", "-p", "postlog-benches",
                        "--bin", "postlog", "--bin", "smtpload"], cwd=ROOT, check=True)
    # SIGTERM (and SIGHUP) end the run through the cleanup below, as Ctrl-C does.
    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True).stdout.strip()
    results = {"machine": f"{os.cpu_count()} cores, Linux {os.uname().release}", "commit": commit,
               "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
               "loadavg_start": [round(x, 2) for x in os.getloadavg()],
               "messages": n, "size": args.size, "connections": args.connections,
               "messages_per_connection": args.messages_per_connection, "runs": runs}
    log(f"queue_throughput: {results['machine']}, commit {commit}, load average {results['loadavg_start']}")
    workdir = tempfile.mkdtemp(prefix="postlog-queue-bench-", dir=args.dir)
    sink = None
    try:
        if args.only != "cost":
            sink = Sink(workdir, free_ports(1)[0])
            cases = [("1 domain", 1, None), ("10 domains", 10, None)]
            if args.dkim:
                cases.append((f"10 domains, DKIM {args.dkim}", 10, args.dkim))
            results["throughput"] = {}
            for name, domains, dkim in cases:
                per_run = []
                for i in range(runs):
                    r = throughput_case(workdir, sink, name.replace(" ", "-").replace(",", ""), domains, n, args, i,
                                        dkim=dkim)
                    log(f"{name}, run {i + 1}: {fmt_run(r)}")
                    per_run.append(r)
                results["throughput"][name] = {"median": summarize(per_run), "runs": per_run}
            if args.postfix:
                if os.geteuid() != 0:
                    raise RuntimeError("--postfix needs root (it starts a Postfix instance)")
                os.chmod(workdir, 0o755)  # Postfix's daemons run as `postfix`
                results["postfix"] = {}
                for name, domains, _ in cases[:2]:
                    per_run = []
                    for i in range(runs):
                        r = postfix_case(workdir, sink, name.replace(" ", "-"), domains, n, args, i)
                        c = r["cpu_s"]
                        log(f"postfix {name}, run {i + 1}: accepted {r['accepted_per_s']:.0f}/s, delivered "
                            f"{r['delivered_per_s_wall']:.0f}/s (until the sink had them all); delay p50 "
                            f"{r['delay_ms']['p50']:.0f} p99 {r['delay_ms']['p99']:.0f} ms (Postfix's delay=); CPU s "
                            f"postfix {c['postfix']} sink {c['smtp_sink']} smtpload {c['smtpload']} others "
                            f"{c['others']}; disk {r['fdatasync_per_s_before']} fdatasync/s before; load "
                            f"{r['loadavg_before_after'][0]}->{r['loadavg_before_after'][1]}")
                        per_run.append(r)
                    med = lambda f: median([f(r) for r in per_run])
                    results["postfix"][name] = {
                        "median": {"accepted_per_s": med(lambda r: r["accepted_per_s"]),
                                   "delivered_per_s_wall": med(lambda r: r["delivered_per_s_wall"]),
                                   "delay_ms": {p: med(lambda r: r["delay_ms"][p]) for p in ("p50", "p99", "max")},
                                   "postfix_cpu_us_per_message": med(lambda r: r["postfix_cpu_us_per_message"])},
                        "runs": per_run}
            sink.stop()
        if args.only != "throughput":
            c = cost_case(workdir, k, args)
            results["cost"] = c
            log(f"cost of a queued message ({k} queued, {c['raw_bytes']} bytes each as queued): "
                f"disk {c['disk_bytes_per_message']} bytes ({c['disk_per_raw_byte']} per raw byte); "
                f"VmRSS +{c['rss_bytes_per_message_fresh']} bytes fresh process, "
                f"+{c['rss_bytes_per_message_live']} bytes live (RssAnon +{c['anon_bytes_per_message_fresh']} / "
                f"+{c['anon_bytes_per_message_live']})")
            log("  on disk by record kind, per message: " + ", ".join(
                f"{name} {v['bytes_per_message']} B ({v['records_per_message']}x)"
                for name, v in c["disk_by_record_kind"].items()))
        results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        for name, t in results.get("throughput", {}).items():
            m = t["median"]
            d = m["delay_ms"]
            log(f"median {name} ({m['runs']} runs of {n}): accepted {m['accepted_per_s']:.0f}/s, delivered "
                f"{m['delivered_per_s']:.0f}/s ({m['delivered_per_s_wall']:.0f}/s until the queue was empty), delay p50 {d['p50']:.0f} p99 {d['p99']:.0f} max {d['max']:.0f} ms, "
                f"postlog {m['postlog_cpu_us_per_message']} µs CPU per message, "
                f"{m['store_commits_per_message']} store commits per message")
        for name, t in results.get("postfix", {}).items():
            m = t["median"]
            d = m["delay_ms"]
            log(f"median postfix {name}: accepted {m['accepted_per_s']:.0f}/s, delivered "
                f"{m['delivered_per_s_wall']:.0f}/s, delay p50 {d['p50']:.0f} p99 {d['p99']:.0f} ms, "
                f"{m['postfix_cpu_us_per_message']} µs CPU per message")
        if args.json:
            print(json.dumps(results), flush=True)
    except KeyboardInterrupt as e:
        log(f"queue_throughput: interrupted ({e}); cleaning up")
        return 130
    except RuntimeError as e:
        log(f"queue_throughput: failed: {e}")
        if not args.keep:
            log("queue_throughput: run again with --keep to keep the logs and stores")
        return 1
    finally:
        if sink:
            sink.stop()
        for child in list(Postlog.live) + list(Postfix.live):
            child.stop()
        if args.keep:
            log(f"queue_throughput: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
