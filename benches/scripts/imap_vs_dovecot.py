#!/usr/bin/env python3
"""IMAP: Postlog against Dovecot 2.3 (mdbox), filled with the same messages, measured in the
same run with the same client (this script's plain-socket IMAP client, which reads every
response fully, literals included).

Measured on one mailbox of N messages (the test corpus repeated): first sync
(`UID FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)`), Thunderbird's
header fetch (`BODY.PEEK[HEADER.FIELDS (...)]`), full download (`BODY.PEEK[]` in batches),
`SEARCH TEXT`, `STORE` on 10,000 messages, a QRESYNC resynchronisation after 100 flag changes
made by another session, and memory per session (PSS of the server processes with 50 more
sessions logged in and selected, divided by 50).

Needs root: Dovecot and Postfix are started as in smtp_vs_postfix.py (the system's, on
loopback, configuration restored at the end). Run it on a quiet machine:

    sudo benches/scripts/imap_vs_dovecot.py --messages 30000
    sudo benches/scripts/imap_vs_dovecot.py --messages 100000 --json results.json
    sudo benches/scripts/imap_vs_dovecot.py --messages 100000 --clients 8   # + 8 concurrent clients (imapload)
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtp_vs_postfix as peers  # noqa: E402  (the peers' set-up and helpers)

ROOT = peers.ROOT
HEADER_FIELDS = (b"From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups "
                 b"In-Reply-To Content-Type Reply-To")


class Client:
    """A minimal IMAP client that reads whole responses (literals included)."""

    def __init__(self, port, user, password):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.f = self.s.makefile("rb", buffering=1 << 20)
        self.n = 0
        self.f.readline()
        tag, lines, _ = self.cmd(b"LOGIN " + user.encode() + b" " + password.encode())
        assert b" OK" in tag, tag

    def cmd(self, command):
        """Sends a command; returns (tagged line, untagged lines, octets read)."""
        self.n += 1
        tag = b"x%d" % self.n
        self.s.sendall(tag + b" " + command + b"\r\n")
        lines, octets = [], 0
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit(f"connection closed during {command[:60]!r}")
            octets += len(line)
            while line.endswith(b"}\r\n") and b"{" in line:
                k = int(line[line.rindex(b"{") + 1:-3].rstrip(b"+"))
                data = self.f.read(k)
                octets += len(data)
                rest = self.f.readline()
                octets += len(rest)
                line = line + data + rest
            if line.startswith(tag + b" "):
                return line, lines, octets
            lines.append(line)

    def timed(self, command):
        t0 = time.time()
        tag, lines, octets = self.cmd(command)
        assert b" OK" in tag, (command[:80], tag)
        return time.time() - t0, lines, octets


def maildir_of_corpus(path, n):
    corpus = [os.path.join(d, f) for d in (os.path.join(ROOT, "testdata/corpus/ham"),
                                            os.path.join(ROOT, "testdata/corpus/spam")) for f in sorted(os.listdir(d))]
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    for i in range(n):
        with open(corpus[i % len(corpus)], "rb") as src:
            # Every message unique (as in a real mailbox): the corpus has 300 messages, and a
            # store that keeps one copy of equal bodies (and a cache of decoded ones) would
            # otherwise serve 300 bodies over and over.
            data = b"X-Bench-Seq: %d\n" % i + src.read().replace(b"\r\n", b"\n")
        with open(os.path.join(path, "cur", f"1700000000.{i}.bench:2,S"), "wb") as dst:
            dst.write(data)


IMAPLOAD = os.path.join(ROOT, "target", "release", "imapload")
CLIENTS = 0  # --clients


def measure(name, port, user, password, pids_of):
    c = Client(port, user, password)
    c.cmd(b"ENABLE QRESYNC")
    r = {}
    t, lines, _ = c.timed(b"SELECT INBOX")
    exists = [int(l.split()[1]) for l in lines if l.endswith(b" EXISTS\r\n")][0]
    r["messages"] = exists
    # Memory per session: 50 more sessions with the mailbox selected, measured first, before
    # the big answers below have grown the allocator's free lists (which made it negative).
    before = pss(pids_of())
    extra = [Client(port, user, password) for _ in range(50)]
    for e in extra:
        e.timed(b"SELECT INBOX")
    time.sleep(0.5)
    after = pss(pids_of())
    r["memory_per_session_kib"] = (after - before) / 50 / 1024
    r["memory_total_mib"] = after / 2**20
    for e in extra:
        e.cmd(b"LOGOUT")
    t, lines, octets = c.timed(b"UID FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)")
    r["first_sync_s"] = t
    r["first_sync_mb"] = octets / 1e6
    t, _, _ = c.timed(b"UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (" + HEADER_FIELDS + b")])")
    r["header_fetch_s"] = t
    total, elapsed = 0, 0.0
    for lo in range(1, exists + 1, 1000):
        t, _, octets = c.timed(b"FETCH %d:%d (BODY.PEEK[])" % (lo, min(exists, lo + 999)))
        total += octets
        elapsed += t
    r["download_mb_per_s"] = total / 1e6 / elapsed
    t, lines, _ = c.timed(b"SEARCH TEXT zwiebelkuchen")
    r["search_text_s"] = t
    t, _, _ = c.timed(b"STORE 1:%d +FLAGS.SILENT (\\Flagged)" % min(10000, exists))
    r["store_10k_s"] = t
    c.timed(b"STORE 1:%d -FLAGS.SILENT (\\Flagged)" % min(10000, exists))
    # QRESYNC: remember the state, let another session change 100 messages, resync.
    _, lines, _ = c.timed(b"SELECT INBOX")
    text = b"".join(lines)
    validity = int(text.split(b"UIDVALIDITY ")[1].split(b"]")[0])
    modseq = int(text.split(b"HIGHESTMODSEQ ")[1].split(b"]")[0])
    other = Client(port, user, password)
    other.timed(b"SELECT INBOX")
    other.timed(b"STORE 1:100 +FLAGS.SILENT (\\Answered)")
    other.cmd(b"LOGOUT")
    c.timed(b"UNSELECT")
    t, lines, _ = c.timed(b"SELECT INBOX (QRESYNC (%d %d))" % (validity, modseq))
    r["qresync_s"] = t
    r["qresync_fetches"] = sum(1 for l in lines if b" FETCH (" in l)
    c.timed(b"STORE 1:100 -FLAGS.SILENT (\\Answered)")
    c.cmd(b"LOGOUT")
    if CLIENTS:
        # Concurrent clients on the same mailbox: imapload's sync, download and search, all
        # clients starting each workload together; the server's CPU and peak PSS watched.
        base = [IMAPLOAD, "--server", f"127.0.0.1:{port}", "-c", str(CLIENTS), "--user", user, "--password",
                password, "--workload", "sync,download,search", "--batch", "1000", "--json", "-q"]
        # The server processes of the sessions just logged out (Dovecot's) may still be
        # exiting: imapload refuses a --server-pid that is gone, so look again and retry.
        for attempt in range(5):
            time.sleep(0.5)
            cmd = base + [a for pid in pids_of() for a in ("--server-pid", pid)]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode == 2 and "no such process" in run.stderr and attempt < 4:
                continue
            if run.returncode != 0:
                raise SystemExit(f"imapload failed ({run.returncode}): {run.stderr.strip()}")
            break
        out = run.stdout
        load = json.loads(out.strip().splitlines()[-1])
        r["concurrent"] = load
        for name_, w in load.get("workloads", {}).items():
            r[f"concurrent_{name_}_s"] = w["elapsed_s"]
            r[f"concurrent_{name_}_p99_ms"] = w["latency_ms"].get("p99")
            if name_ == "download":
                r["concurrent_download_mb_per_s"] = w["mb_per_s"]
        r["concurrent_errors"] = sum(load.get("errors", {}).values())
        if load.get("server"):
            r["concurrent_server_cpu_s"] = load["server"]["cpu_workloads_s"]
            r["concurrent_pss_peak_mib"] = load["server"]["pss_peak_mib"]
    print(f"{name:8} " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                                   if k != "concurrent"), flush=True)
    return r


def pss(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def pids_named(names):
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() in names:
                        out.append(pid)
            except OSError:
                pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=30000)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--only", choices=["postlog", "dovecot"])
    ap.add_argument("--clients", type=int, default=0,
                    help="also run imapload with this many concurrent clients (sync, download, search)")
    args = ap.parse_args()
    global CLIENTS
    CLIENTS = args.clients
    if os.geteuid() != 0:
        raise SystemExit("run as root: it starts the system's Dovecot")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "postlog-server", "--bin", "postlog", "-p",
                    "postlog-benches", "--bin", "imapload"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="imap-bench-", dir="/var/tmp")
    os.chmod(work, 0o755)
    results = {"machine": f"{os.cpu_count()} cores", "messages": args.messages}
    try:
        maildir = os.path.join(work, "maildir")
        maildir_of_corpus(maildir, args.messages)
        if args.only != "dovecot":
            data = os.path.join(work, "postlog-data")
            config = os.path.join(work, "postlog.toml")
            with open(config, "w") as f:
                f.write(f'hostname = "mx.example.test"\ndata_dir = "{data}"\n[listen]\nsmtp = "off"\n'
                        'submission = "off"\nsubmissions = "off"\nlmtp = "off"\nimap = "127.0.0.1:2143"\n'
                        'imaps = "off"\npop3 = "off"\npop3s = "off"\nhttp = "off"\n[log]\nlevel = "warn"\n'
                        '[limits]\nmax_connections_per_ip = 1000\n')
            pl = lambda *a, stdin=None: subprocess.run([peers.POSTLOG, *a, "--config", config], input=stdin,
                                                      text=True, check=True, stdout=subprocess.DEVNULL)
            pl("domain", "add", "example.test")
            pl("user", "add", "testuser1@example.test", "--password-stdin", stdin="testpass")
            pl("import", "--account", "testuser1@example.test", "--maildir", maildir)
            proc = subprocess.Popen([peers.POSTLOG, "serve", "--config", config], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                peers.wait_port(2143)
                results["postlog"] = measure("postlog", 2143, "testuser1@example.test", "testpass",
                                             lambda: [str(proc.pid)])
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        if args.only != "postlog":
            peers.peers_up()
            try:
                shutil.chown(work, "vmail", "vmail")
                subprocess.run(["chown", "-R", "vmail:vmail", maildir], check=True)
                subprocess.run(["doveadm", "import", "-u", "testuser1@example.test", f"maildir:{maildir}", "", "all"],
                               check=True)
                subprocess.run(["doveadm", "purge", "-u", "testuser1@example.test"], check=False)
                results["dovecot"] = measure("dovecot", 143, "testuser1@example.test", "testpass",
                                             lambda: pids_named({"dovecot", "imap", "imap-login", "auth",
                                                                 "config", "log", "anvil", "stats"}))
            finally:
                peers.peers_down()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "postlog" in results and "dovecot" in results:
        ratios = {}
        for k in ("first_sync_s", "header_fetch_s", "search_text_s", "store_10k_s", "qresync_s", "concurrent_sync_s",
                  "concurrent_search_s", "concurrent_server_cpu_s"):
            if k in results["postlog"] and k in results["dovecot"]:
                ratios[k] = results["dovecot"][k] / max(results["postlog"][k], 1e-6)
        if "concurrent_download_mb_per_s" in results["postlog"]:
            ratios["concurrent_download_mb_per_s"] = (results["postlog"]["concurrent_download_mb_per_s"]
                                                      / results["dovecot"]["concurrent_download_mb_per_s"])
        ratios["download_mb_per_s"] = results["postlog"]["download_mb_per_s"] / results["dovecot"]["download_mb_per_s"]
        ratios["memory_per_session_kib"] = (results["dovecot"]["memory_per_session_kib"]
                                            / max(results["postlog"]["memory_per_session_kib"], 1e-6))
        results["postlog_advantage"] = ratios
        print("Postlog advantage (x): " + ", ".join(f"{k} {v:.1f}" for k, v in ratios.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
