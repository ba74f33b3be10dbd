#!/usr/bin/env python3
"""POP3: Postlog against Dovecot 2.3 (mdbox), filled with the same messages, measured in the
same run with the same client (this script's plain-socket POP3 client, which reads every
response to its end and counts the octets).

Measured on one maildrop of N messages (the test corpus repeated, LF line endings as in a
Maildir, so both servers send CRLF versions of the same bytes): login + STAT, once cold (the
first login after the import: sizes as sent are computed) and once warm; UIDL of everything;
TOP n 0 of every message (headers); RETR of every message one command at a time (a round trip
each, like a simple client); RETR of every message pipelined in batches of 100 (RFC 2449
PIPELINING, like fetchmail with many messages). RETR throughput is the octets received
(dot-stuffed data included) per second. Nothing is deleted.

Needs root: Dovecot is started as in smtp_vs_postfix.py (the system's, on loopback, its
configuration restored at the end). Run it on a quiet machine:

    sudo benches/scripts/pop3_vs_dovecot.py --messages 10000
    sudo benches/scripts/pop3_vs_dovecot.py --messages 30000 --json results.json
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
import imap_vs_dovecot as imap  # noqa: E402  (the corpus Maildir)
import smtp_vs_postfix as peers  # noqa: E402  (the peers' set-up and helpers)

ROOT = peers.ROOT


class Client:
    """A minimal POP3 client: status lines, and multi-line data read to the `.` line. It reads
    the socket in large blocks and finds line and data ends with `bytes.find`, so that the
    client is not what limits the throughput measured."""

    def __init__(self, port, user, password):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.buf = bytearray()
        self.pos = 0
        greeting = self.status()
        assert greeting.startswith(b"+OK"), greeting
        self.ok(b"USER " + user.encode())
        self.pass_line = self.ok(b"PASS " + password.encode())

    def fill(self):
        chunk = self.s.recv(1 << 20)
        if not chunk:
            raise SystemExit("connection closed")
        self.buf += chunk

    def status(self):
        # Consumed input is dropped here only, at a response boundary (data() keeps offsets).
        if self.pos > (1 << 20):
            del self.buf[:self.pos]
            self.pos = 0
        while True:
            end = self.buf.find(b"\r\n", self.pos)
            if end >= 0:
                line = bytes(self.buf[self.pos:end + 2])
                self.pos = end + 2
                return line
            self.fill()

    def ok(self, command):
        self.s.sendall(command + b"\r\n")
        line = self.status()
        assert line.startswith(b"+OK"), (command[:40], line)
        return line

    def data(self):
        """Skips the data of a multi-line response (after its status line); returns
        (lines, octets)."""
        start = self.pos
        while True:
            # The terminator is CRLF "." CRLF; the status line's CRLF may be its first half.
            end = self.buf.find(b"\r\n.\r\n", max(start - 2, self.pos - 2, 0))
            if end >= start - 2:
                stop = end + 5
                lines = self.buf.count(b"\r\n", start, stop) - 1
                self.pos = stop
                return lines, stop - start
            self.fill()

    def multi(self, command):
        self.ok(command)
        return self.data()

    def pipelined(self, commands):
        """Sends the commands at once; reads every multi-line answer; returns the octets."""
        self.s.sendall(b"".join(c + b"\r\n" for c in commands))
        total = 0
        for c in commands:
            line = self.status()
            assert line.startswith(b"+OK"), (c, line)
            total += len(line) + self.data()[1]
        return total

    def quit(self):
        self.s.sendall(b"QUIT\r\n")
        self.status()
        self.s.close()


def timed(fn):
    t0 = time.time()
    r = fn()
    return time.time() - t0, r


def measure(name, port, user, password):
    r = {}
    t, c = timed(lambda: Client(port, user, password))
    t2, stat = timed(lambda: c.ok(b"STAT"))
    n = int(stat.split()[1])
    r["messages"] = n
    r["maildrop_octets"] = int(stat.split()[2])
    r["login_stat_cold_s"] = t + t2
    c.quit()
    t, c = timed(lambda: Client(port, user, password))
    t2, _ = timed(lambda: c.ok(b"STAT"))
    r["login_stat_warm_s"] = t + t2
    t, (lines, _) = timed(lambda: c.multi(b"UIDL"))
    assert lines == n, (lines, n)
    r["uidl_s"] = t
    t, _ = timed(lambda: [c.multi(b"TOP %d 0" % i) for i in range(1, n + 1)])
    r["top0_all_s"] = t
    t, octets = timed(lambda: sum(c.multi(b"RETR %d" % i)[1] for i in range(1, n + 1)))
    r["retr_sequential_s"] = t
    r["retr_sequential_mb_per_s"] = octets / 1e6 / t
    r["retr_sequential_msgs_per_s"] = n / t
    def batches():
        total = 0
        for lo in range(1, n + 1, 100):
            total += c.pipelined([b"RETR %d" % i for i in range(lo, min(n, lo + 99) + 1)])
        return total
    t, octets = timed(batches)
    r["retr_pipelined_s"] = t
    r["retr_pipelined_mb_per_s"] = octets / 1e6 / t
    r["retr_pipelined_msgs_per_s"] = n / t
    r["retr_octets"] = octets
    c.quit()
    print(f"{name:8} " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()),
          flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--only", choices=["postlog", "dovecot"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: it starts the system's Dovecot")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "postlog-server", "--bin", "postlog"], cwd=ROOT,
                   check=True)
    work = tempfile.mkdtemp(prefix="pop3-bench-", dir="/var/tmp")
    os.chmod(work, 0o755)
    results = {"machine": f"{os.cpu_count()} cores", "messages": args.messages}
    try:
        maildir = os.path.join(work, "maildir")
        imap.maildir_of_corpus(maildir, args.messages)
        if args.only != "dovecot":
            data = os.path.join(work, "postlog-data")
            config = os.path.join(work, "postlog.toml")
            with open(config, "w") as f:
                f.write(f'hostname = "mx.example.test"\ndata_dir = "{data}"\n[listen]\nsmtp = "off"\n'
                        'submission = "off"\nsubmissions = "off"\nlmtp = "off"\nimap = "off"\n'
                        'imaps = "off"\npop3 = "127.0.0.1:2110"\npop3s = "off"\nhttp = "off"\n[log]\nlevel = "warn"\n')
            pl = lambda *a, stdin=None: subprocess.run([peers.POSTLOG, *a, "--config", config], input=stdin,
                                                      text=True, check=True, stdout=subprocess.DEVNULL)
            pl("domain", "add", "example.test")
            pl("user", "add", "testuser1@example.test", "--password-stdin", stdin="testpass")
            pl("import", "--account", "testuser1@example.test", "--maildir", maildir)
            proc = subprocess.Popen([peers.POSTLOG, "serve", "--config", config], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                peers.wait_port(2110)
                results["postlog"] = measure("postlog", 2110, "testuser1@example.test", "testpass")
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
                results["dovecot"] = measure("dovecot", 110, "testuser1@example.test", "testpass")
            finally:
                peers.peers_down()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "postlog" in results and "dovecot" in results:
        p, d = results["postlog"], results["dovecot"]
        ratios = {k: d[k] / max(p[k], 1e-6)
                  for k in ("login_stat_cold_s", "login_stat_warm_s", "uidl_s", "top0_all_s", "retr_sequential_s",
                            "retr_pipelined_s")}
        for k in ("retr_sequential_mb_per_s", "retr_pipelined_mb_per_s"):
            ratios[k] = p[k] / d[k]
        results["postlog_advantage"] = ratios
        print("Postlog advantage (x): " + ", ".join(f"{k} {v:.1f}" for k, v in ratios.items()))
        if p["maildrop_octets"] != d["maildrop_octets"]:
            print(f"note: maildrop sizes differ: postlog {p['maildrop_octets']}, dovecot {d['maildrop_octets']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
