#!/usr/bin/env python3
"""End-to-end SMTP delivery: Postlog against Postfix delivering into Dovecot over LMTP (mdbox).

Same machine, same run, same clients (Postfix's smtp-source, and smtpload for latency and the
corpus). For each case the mailbox starts empty (a fresh recipient). Reported per case:
accepted and delivered messages per second (Postlog answers 250 only once the message is
durable in the store, so for it the two are the same), server CPU seconds per 1,000 messages
(system-wide busy time minus the client's), peak memory (PSS) of the server processes, and
with smtpload the latency from the final "." to the 250 (p50/p99/max).

Needs root: it installs (apt) and starts the system's Postfix and Dovecot on 127.0.0.1
(ports 25, 24), replacing /etc/postfix/main.cf, master.cf and /etc/dovecot/dovecot.conf for the
run and putting the originals back at the end. Run it on a quiet machine:

    sudo benches/scripts/smtp_vs_postfix.py            # full run (a few minutes)
    sudo benches/scripts/smtp_vs_postfix.py --quick    # smaller counts
    ... --json results.json                            # also write the figures as JSON
    ... --ceiling                                      # also smtp-source against smtp-sink
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
POSTLOG = os.path.join(ROOT, "target", "release", "postlog")
SMTPLOAD = os.path.join(ROOT, "target", "release", "smtpload")
CORPUS = os.path.join(ROOT, "testdata", "corpus")
USERS = 100
PACKAGES = ["postfix", "dovecot-core", "dovecot-imapd", "dovecot-pop3d", "dovecot-lmtpd"]
SAVED = ["/etc/postfix/main.cf", "/etc/postfix/master.cf", "/etc/dovecot/dovecot.conf"]

MAIN_CF = """compatibility_level = 3.6
myhostname = mx.example.test
mydomain = example.test
myorigin = $myhostname
mydestination = localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP
biff = no
append_dot_mydomain = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
message_size_limit = 52428800
smtpd_peername_lookup = no
virtual_mailbox_domains = example.test
virtual_mailbox_maps = texthash:/etc/postfix/bench-vmailbox
virtual_transport = lmtp:inet:127.0.0.1:24
default_transport = error:outbound delivery disabled on the benchmark rig
relay_transport = error:outbound delivery disabled on the benchmark rig
maillog_file = /var/log/postlog-bench/postfix.log
"""

DOVECOT_CONF = """protocols = imap pop3 lmtp
listen = 127.0.0.1
base_dir = /run/dovecot
log_path = /var/log/postlog-bench/dovecot.log
info_log_path = /var/log/postlog-bench/dovecot-info.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u /etc/dovecot/bench-users
}
userdb {
  driver = passwd-file
  args = username_format=%u /etc/dovecot/bench-users
  default_fields = uid=vmail gid=vmail home=/var/vmail/%d/%n
}
mail_location = mdbox:~/mdbox
mail_fsync = optimized
mdbox_rotate_size = 10M
mail_uid = vmail
mail_gid = vmail
first_valid_uid = 100
namespace inbox {
  inbox = yes
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = 143
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = 110
  }
  inet_listener pop3s {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = 24
  }
}
protocol imap {
  mail_max_userip_connections = 1000
}
protocol lmtp {
  postmaster_address = postmaster@example.test
}
"""

SERVER_PROCESSES = {
    "postfix": {"master", "pickup", "qmgr", "smtpd", "cleanup", "trivial-rewrite", "lmtp", "anvil", "tlsmgr",
                "proxymap", "postlogd", "dovecot", "auth", "log", "config", "stats", "lmtp"},
    "postlog": {"postlog"},
}


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def busy_jiffies():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]


def children_cpu():
    """CPU of the clients (children) and of this script (its polling), not the servers'."""
    r = os.times()
    return r.children_user + r.children_system + r.user + r.system


class RssSampler(threading.Thread):
    """Peak of the summed proportional set size (PSS: shared pages split between the processes
    that map them, so many smtpd processes are not counted many times) of the server's
    processes, sampled every 100 ms."""

    def __init__(self, names):
        super().__init__(daemon=True)
        self.names, self.peak, self.stop = names, 0, False

    def run(self):
        while not self.stop:
            total = 0
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/status") as f:
                        status = f.read()
                except OSError:
                    continue
                name = status.split("\n", 1)[0].split(":", 1)[1].strip()
                if name in self.names:
                    try:
                        with open(f"/proc/{pid}/smaps_rollup") as f:
                            for line in f:
                                if line.startswith("Pss:"):
                                    total += int(line.split()[1]) * 1024
                    except OSError:
                        pass
            self.peak = max(self.peak, total)
            time.sleep(0.1)


# ---- the peers --------------------------------------------------------------------------

def peers_up():
    missing = [p for p in PACKAGES if sh("dpkg-query", "-W", "-f=${Status}", p, check=False).stdout.find("ok installed") < 0]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)
    peers_down(restore=False)
    for path in SAVED:
        if os.path.exists(path) and not os.path.exists(path + ".postlog-bench-orig"):
            shutil.copy2(path, path + ".postlog-bench-orig")
    os.makedirs("/var/log/postlog-bench", exist_ok=True)
    if sh("getent", "group", "vmail", check=False).returncode:
        sh("groupadd", "-r", "vmail")
    if sh("getent", "passwd", "vmail", check=False).returncode:
        sh("useradd", "-r", "-g", "vmail", "-d", "/var/vmail", "-s", "/usr/sbin/nologin", "vmail")
    os.makedirs("/var/vmail", exist_ok=True)
    shutil.chown("/var/vmail", "vmail", "vmail")
    shutil.rmtree("/var/vmail/example.test", ignore_errors=True)
    with open("/etc/dovecot/dovecot.conf", "w") as f:
        f.write(DOVECOT_CONF)
    users = [f"testuser{i}@example.test" for i in range(1, USERS + 1)] + ["postmaster@example.test"]
    with open("/etc/dovecot/bench-users", "w") as f:
        f.writelines(f"{u}:{{PLAIN}}testpass::::::\n" for u in users)
    shutil.chown("/etc/dovecot/bench-users", "root", "dovecot")
    os.chmod("/etc/dovecot/bench-users", 0o640)
    with open("/etc/postfix/bench-vmailbox", "w") as f:
        f.writelines(f"{u} OK\n" for u in users)
    with open("/etc/postfix/main.cf", "w") as f:
        f.write(MAIN_CF)
    shutil.copy2("/etc/postfix/master.cf.postlog-bench-orig", "/etc/postfix/master.cf")
    sh("postconf", "-F", "*/*/chroot = n")
    sh("postsuper", "-d", "ALL", check=False)
    if os.path.exists("/var/log/postlog-bench/postfix.log"):
        os.remove("/var/log/postlog-bench/postfix.log")
    sh("postfix", "check")
    subprocess.run(["postfix", "start"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["dovecot"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wait_port(25)
    wait_port(24)


def peers_down(restore=True):
    sh("postfix", "stop", check=False)
    if os.path.exists("/run/dovecot/master.pid"):
        sh("doveadm", "stop", check=False)
    for _ in range(50):
        if not any(sh("pgrep", "-x", n, check=False).stdout for n in ["master", "dovecot"]):
            break
        time.sleep(0.2)
    if restore:
        for path in SAVED:
            if os.path.exists(path + ".postlog-bench-orig"):
                shutil.copy2(path + ".postlog-bench-orig", path)


class DeliveredLog:
    """Messages Postfix handed to Dovecot (LMTP 250: Dovecot has stored them), counted per
    recipient from Postfix's log, read incrementally. Polling doveadm instead would cost CPU
    that would be counted against the peers."""

    PATH = "/var/log/postlog-bench/postfix.log"

    def __init__(self):
        self.offset, self.rest, self.counts = 0, "", {}

    def count(self, user):
        try:
            with open(self.PATH, errors="replace") as f:
                f.seek(self.offset)
                chunk = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            chunk = ""
        lines = (self.rest + chunk).split("\n")
        self.rest = lines.pop()
        for line in lines:
            if "status=sent" in line and " to=<" in line:
                to = line.split(" to=<", 1)[1].split(">", 1)[0]
                self.counts[to] = self.counts.get(to, 0) + 1
        return self.counts.get(user, 0)


# ---- Postlog ----------------------------------------------------------------------------

class Postlog:
    def __init__(self, workdir):
        self.data = os.path.join(workdir, "postlog-data")
        self.config = os.path.join(workdir, "postlog.toml")
        with open(self.config, "w") as f:
            f.write(f'hostname = "mx.example.test"\ndata_dir = "{self.data}"\n'
                    '[listen]\nsmtp = "127.0.0.1:2525"\nsubmission = "off"\nsubmissions = "off"\n'
                    'lmtp = "127.0.0.1:2424"\nimap = "off"\nimaps = "off"\npop3 = "off"\npop3s = "off"\n'
                    'http = "127.0.0.1:2580"\n[log]\nlevel = "warn"\n[limits]\nmax_connections_per_ip = 1000\n')
        run = lambda *a, stdin=None: subprocess.run([POSTLOG, *a, "--config", self.config], input=stdin, text=True,
                                                      check=True, stdout=subprocess.DEVNULL)
        run("domain", "add", "example.test")
        for i in range(1, USERS + 1):
            run("user", "add", f"testuser{i}@example.test", "--password-stdin", stdin="testpass")
        self.proc = subprocess.Popen([POSTLOG, "serve", "--config", self.config], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(2525)

    def delivered(self):
        with socket.create_connection(("127.0.0.1", 2580)) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            page = b""
            while chunk := s.recv(65536):
                page += chunk
        for line in page.decode().splitlines():
            if line.startswith('postlog_smtp_messages_total{listener="smtp",result="delivered"}'):
                return int(float(line.split()[-1]))
        return 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


# ---- one case ---------------------------------------------------------------------------

def measure(kind, port, client, expected, count_now, rss_names):
    """Runs `client` (argv) against a server; returns the figures. `count_now()` gives the
    delivered count; `expected` is what it must reach."""
    sampler = RssSampler(rss_names)
    sampler.start()
    cpu0, busy0, t0 = children_cpu(), busy_jiffies(), time.time()
    out = subprocess.run(client, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t_accepted = time.time()
    if out.returncode != 0:
        raise SystemExit(f"{client[0]} failed: {out.stdout}{out.stderr}")
    deadline = t_accepted + 1800
    while count_now() < expected:
        if time.time() > deadline:
            raise SystemExit(f"{kind}: delivered {count_now()} of {expected} after 30 minutes")
        time.sleep(0.1)
    t_delivered = time.time()
    busy1, cpu1 = busy_jiffies(), children_cpu()
    sampler.stop = True
    sampler.join()
    hz = os.sysconf("SC_CLK_TCK")
    server_cpu = max(0.0, (busy1 - busy0) / hz - (cpu1 - cpu0))
    result = {
        "accepted_per_s": expected_msgs(client) / (t_accepted - t0),
        "delivered_per_s": expected_msgs(client) / (t_delivered - t0),
        "server_cpu_s_per_1000": server_cpu / expected_msgs(client) * 1000,
        "server_pss_peak_mib": sampler.peak / 2**20,
    }
    if client[0] == SMTPLOAD:
        j = json.loads(out.stdout.strip().splitlines()[-1])
        result["latency_ms"] = j["latency_ms"]
    return result


def expected_msgs(client):
    for flag in ("-m", "-n"):
        if flag in client:
            return int(client[client.index(flag) + 1])
    raise ValueError(client)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller counts")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--only", choices=["postlog", "postfix"], help="measure one side")
    ap.add_argument("--ceiling", action="store_true",
                    help="also run the smtp-source cases against Postfix's smtp-sink (accepts and discards, "
                         "no disk): what the client reaches on this machine with a server that does nothing")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it starts the system's Postfix and Dovecot")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "postlog-server", "-p", "postlog-benches",
                    "--bin", "postlog", "--bin", "smtpload"], cwd=ROOT, check=True)
    n4k, n64k, ncorpus = (2000, 500, 1000) if args.quick else (10000, 2000, 3000)
    cases = [
        ("smtp-source 16 sessions 4 KiB", lambda port, rcpt: ["smtp-source", "-s", "16", "-m", str(n4k), "-l", "4096",
                                                               "-f", "bench@loadgen.test", "-t", rcpt, f"127.0.0.1:{port}"]),
        ("smtp-source 64 sessions 4 KiB", lambda port, rcpt: ["smtp-source", "-s", "64", "-m", str(n4k), "-l", "4096",
                                                               "-f", "bench@loadgen.test", "-t", rcpt, f"127.0.0.1:{port}"]),
        ("smtp-source 16 sessions 64 KiB", lambda port, rcpt: ["smtp-source", "-s", "16", "-m", str(n64k), "-l", "65536",
                                                                "-f", "bench@loadgen.test", "-t", rcpt, f"127.0.0.1:{port}"]),
        ("smtp-source 64 sessions 64 KiB", lambda port, rcpt: ["smtp-source", "-s", "64", "-m", str(n64k), "-l", "65536",
                                                                "-f", "bench@loadgen.test", "-t", rcpt, f"127.0.0.1:{port}"]),
        ("smtpload 16 sessions 4 KiB (latency)", lambda port, rcpt: [SMTPLOAD, "--server", f"127.0.0.1:{port}", "-c", "16",
                                                                      "-n", str(n4k), "--size", "4096", "--to", rcpt, "--json"]),
        ("smtpload 16 sessions corpus", lambda port, rcpt: [SMTPLOAD, "--server", f"127.0.0.1:{port}", "-c", "16", "-n",
                                                             str(ncorpus), "--eml-dir", CORPUS, "--to", rcpt, "--json"]),
    ]
    results = {"machine": f"{os.cpu_count()} cores, {os.uname().release}", "cases": {}}
    workdir = tempfile.mkdtemp(prefix="postlog-bench-", dir="/var/tmp")
    try:
        if args.ceiling:
            results["smtp_sink_ceiling"] = sink_ceiling(cases)
        if args.only != "postfix":
            pl = Postlog(workdir)
            try:
                for i, (name, client) in enumerate(cases, start=1):
                    rcpt = f"testuser{i}@example.test"
                    before = pl.delivered()
                    n = expected_msgs(client(2525, rcpt))
                    r = measure("postlog", 2525, client(2525, rcpt), before + n, pl.delivered, SERVER_PROCESSES["postlog"])
                    results["cases"].setdefault(name, {})["postlog"] = r
                    print(f"postlog  {name}: {fmt(r)}", flush=True)
                # The same mailbox growing: five rounds into one recipient.
                growth = []
                for _ in range(5):
                    client = cases[0][1](2525, "testuser50@example.test")
                    before = pl.delivered()
                    r = measure("postlog", 2525, client, before + n4k, pl.delivered, SERVER_PROCESSES["postlog"])
                    growth.append(round(r["delivered_per_s"]))
                results["postlog_growth_per_round"] = growth
                print(f"postlog  one mailbox growing by {n4k} per round: {growth} msgs/s", flush=True)
            finally:
                pl.stop()
        if args.only != "postlog":
            peers_up()
            log = DeliveredLog()
            try:
                for i, (name, client) in enumerate(cases, start=1):
                    rcpt = f"testuser{i}@example.test"
                    n = expected_msgs(client(25, rcpt))
                    r = measure("postfix", 25, client(25, rcpt), log.count(rcpt) + n,
                                lambda: log.count(rcpt), SERVER_PROCESSES["postfix"])
                    results["cases"].setdefault(name, {})["postfix_dovecot"] = r
                    print(f"postfix  {name}: {fmt(r)}", flush=True)
            finally:
                peers_down()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for name, r in results["cases"].items():
        if "postlog" in r and "postfix_dovecot" in r:
            r["ratio_delivered"] = r["postlog"]["delivered_per_s"] / r["postfix_dovecot"]["delivered_per_s"]
            print(f"ratio    {name}: {r['ratio_delivered']:.1f}x delivered messages/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


def sink_ceiling(cases):
    """The smtp-source cases against smtp-sink (Postfix's test server: it answers every
    command at once and discards the data; one process, no disk), three runs each: the rate
    the client and the kernel's loopback TCP allow on these cores, with nothing stored."""
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", "127.0.0.1:2526", "1000"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    try:
        wait_port(2526)
        for name, client in cases:
            argv = client(2526, "sink@example.test")
            if argv[0] != "smtp-source":
                continue
            rates, client_cpu = [], []
            for _ in range(3):
                cpu0, t0 = children_cpu(), time.time()
                subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                elapsed = time.time() - t0
                rates.append(expected_msgs(argv) / elapsed)
                client_cpu.append((children_cpu() - cpu0) / expected_msgs(argv) * 1000)
            out[name] = {"accepted_per_s": sorted(rates), "client_cpu_s_per_1000": sorted(client_cpu)}
            print(f"sink     {name}: {', '.join(f'{r:.0f}' for r in sorted(rates))} msgs/s; "
                  f"client CPU {min(client_cpu):.2f}-{max(client_cpu):.2f} s/1000 msgs", flush=True)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    return out


def fmt(r):
    s = (f"accepted {r['accepted_per_s']:.0f}/s, delivered {r['delivered_per_s']:.0f}/s, "
         f"CPU {r['server_cpu_s_per_1000']:.2f} s/1000 msgs, memory (PSS) peak {r['server_pss_peak_mib']:.0f} MiB")
    if "latency_ms" in r:
        lat = r["latency_ms"]
        s += f", latency p50 {lat['p50']:.1f} p99 {lat['p99']:.1f} max {lat['max']:.1f} ms"
    return s


if __name__ == "__main__":
    main()
