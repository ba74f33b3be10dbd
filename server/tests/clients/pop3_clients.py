#!/usr/bin/env python3
"""Python's poplib (and raw sockets for PIPELINING and SASL) against a running Postlog.

Usage: pop3_clients.py SCENARIO HOST PORTS_JSON
Each scenario prints "<scenario> ok" at the end; any failed check raises.
"""
import base64
import hashlib
import hmac
import imaplib
import json
import os
import poplib
import smtplib
import socket
import ssl
import sys
import time
import urllib.request

HOST = sys.argv[2]
PORTS = json.loads(sys.argv[3])
USER, PASS = "alice@example.test", "alice-secret"


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's generated self-signed certificate
    return ctx


def deliver(subject, to=USER, body="Hello there.\r\n"):
    with smtplib.SMTP(HOST, PORTS["smtp"], timeout=30) as s:
        s.sendmail("sender@remote.test", [to],
                   f"From: Sender <sender@remote.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\n{body}".encode())


def login(user=USER, password=PASS):
    p = poplib.POP3(HOST, PORTS["pop3"], timeout=30)
    p.user(user)
    p.pass_(password)
    return p


def expect_error(fn, *needles):
    try:
        r = fn()
    except poplib.error_proto as e:
        text = e.args[0].decode()
        for n in needles:
            assert n in text, (text, n)
        return text
    raise AssertionError(f"no -ERR, got {r!r}")


class Raw:
    """A POP3 connection read line by line (for pipelining and AUTH, which poplib lacks)."""

    def __init__(self, port=None, sock=None):
        self.sock = sock or socket.create_connection((HOST, port or PORTS["pop3"]), timeout=30)
        self.f = self.sock.makefile("rb")

    def line(self):
        line = self.f.readline()
        assert line.endswith(b"\r\n"), line
        return line[:-2].decode()

    def multi(self):
        lines = []
        while True:
            line = self.line()
            if line == ".":
                return lines
            lines.append(line[1:] if line.startswith("..") else line)

    def send(self, *lines):
        self.sock.sendall(b"".join(l.encode() + b"\r\n" for l in lines))

    def cmd(self, line):
        self.send(line)
        return self.line()


def commands():
    """Every RFC 1939 command through poplib, and what a second session sees."""
    deliver("first", body="Line one.\r\n.A line that starts with a dot.\r\n..two dots\r\nlast\r\n")
    deliver("second")
    deliver("third", body="x\r\n" * 50)
    p = poplib.POP3(HOST, PORTS["pop3"], timeout=30)
    assert p.getwelcome().startswith(b"+OK mail.example.test Postlog POP3 server ready"), p.getwelcome()
    caps = p.capa()
    for c in ["TOP", "UIDL", "USER", "SASL", "STLS", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UTF8"]:
        assert c in caps, caps
    assert "PLAIN" in caps["SASL"] and "SCRAM-SHA-256" in caps["SASL"], caps
    expect_error(p.stat, "Log in first")
    p.user(USER)
    expect_error(lambda: p.pass_("wrong"), "[AUTH]", "Authentication failed")
    expect_error(lambda: p._shortcmd(f"APOP {USER} c4c9334bac560ecc979e58001b3e22fb"), "APOP is not supported")
    p.user(USER)
    welcome = p.pass_(PASS)
    count, octets = p.stat()
    assert welcome == b"+OK maildrop has 3 messages (%d octets)" % octets, welcome
    assert count == 3, count
    resp, listing, _ = p.list()
    sizes = [int(l.split()[1]) for l in listing]
    assert resp == b"+OK 3 messages (%d octets)" % octets and sum(sizes) == octets, (resp, listing)
    assert p.list(2) == b"+OK 2 %d" % sizes[1]
    resp, uidls, _ = p.uidl()
    uidls = [u.split()[1] for u in uidls]
    assert len(set(uidls)) == 3 and all(len(u) == 16 for u in uidls), uidls
    assert p.uidl(3) == b"+OK 3 " + uidls[2]
    resp, lines, got = p.retr(1)
    assert resp == b"+OK %d octets" % sizes[0], resp
    # poplib removes the stuffing: the lines are the message's.
    body = lines[lines.index(b"") + 1:]
    assert body == [b"Line one.", b".A line that starts with a dot.", b"..two dots", b"last"], body
    # What was sent, less the stuffed dots, is the size LIST gave (CRLF line endings).
    assert sum(len(l) + 2 for l in lines) == sizes[0], (lines, sizes[0])
    resp, lines, _ = p.top(3, 2)
    assert lines[lines.index(b"") + 1:] == [b"x", b"x"], lines
    assert b"Subject: third" in lines
    expect_error(lambda: p.retr(4), "no such message, only 3 messages in maildrop")
    expect_error(lambda: p.retr(0), "no such message")
    expect_error(lambda: p._shortcmd("RETR x"), "Invalid message number: x")
    expect_error(lambda: p._shortcmd("XYZZY"), "Unknown command: XYZZY")
    assert p.dele(1) == b"+OK message 1 deleted"
    expect_error(lambda: p.dele(1), "message 1 already deleted")
    expect_error(lambda: p.retr(1), "message 1 is deleted")
    assert p.stat() == (2, octets - sizes[0])
    assert [l.split()[0] for l in p.list()[1]] == [b"2", b"3"]
    assert p.noop() == b"+OK"
    assert p.rset().startswith(b"+OK maildrop has 3 messages")
    assert p.stat() == (3, octets)
    p.dele(2)
    assert p.quit() == b"+OK mail.example.test POP3 server signing off (2 messages left)"
    # A new session: message 2 is gone, the others keep their unique ids; new mail is there.
    deliver("fourth")
    p = login()
    resp, now, _ = p.uidl()
    now = [u.split()[1] for u in now]
    assert now[:2] == [uidls[0], uidls[2]] and len(now) == 3, (now, uidls)
    # QUIT never sent: nothing is deleted.
    p.dele(1)
    p.dele(2)
    p.close()
    time.sleep(0.3)
    p = login()
    assert p.stat()[0] == 3
    for i in range(1, 4):
        p.dele(i)
    assert p.quit().endswith(b"(maildrop empty)")
    p = login()
    assert p.stat() == (0, 0) and p.list()[1] == [] and p.uidl()[1] == []
    p.quit()
    print("commands ok")


def pipelining():
    """Many commands in one write; replies in order; then QUIT in the same batch."""
    for i in range(5):
        deliver(f"pipelined {i}", body=f"body {i}\r\n")
    r = Raw()
    assert r.line().startswith("+OK")
    r.send("CAPA", f"USER {USER}", f"PASS {PASS}", "STAT", "LIST", "UIDL 1", "RETR 2", "TOP 3 0", "DELE 1", "DELE 9",
           "NOOP", "RSET", "DELE 5", "QUIT")
    assert r.line() == "+OK Capability list follows" and "PIPELINING" in r.multi()
    assert r.line() == "+OK Send PASS"
    assert r.line().startswith("+OK maildrop has 5 messages")
    assert r.line().startswith("+OK 5 ")
    assert r.line().startswith("+OK 5 messages") and len(r.multi()) == 5
    assert r.line().startswith("+OK 1 ")
    assert r.line().endswith(" octets") and r.multi()[-1] == "body 1"
    assert r.line() == "+OK" and r.multi()[-1] == ""
    assert r.line() == "+OK message 1 deleted"
    assert r.line() == "-ERR no such message, only 5 messages in maildrop"
    assert r.line() == "+OK"
    assert r.line().startswith("+OK maildrop has 5 messages")
    assert r.line() == "+OK message 5 deleted"
    assert r.line().endswith("signing off (4 messages left)")
    assert r.f.read() == b""
    p = login()
    assert p.stat()[0] == 4
    p.quit()
    print("pipelining ok")


def stls():
    p = poplib.POP3(HOST, PORTS["pop3"], timeout=30)
    assert "STLS" in p.capa()
    p.stls(context=tls_context())
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps, caps
    expect_error(lambda: p._shortcmd("STLS"), "Already using TLS")
    p.user(USER)
    p.pass_(PASS)
    assert p.stat()[0] >= 0
    p.quit()
    # Commands pipelined with STLS are dropped, not run over TLS.
    r = Raw()
    r.line()
    r.send("STLS", f"USER {USER}")
    assert r.line() == "+OK Begin TLS negotiation"
    tls = tls_context().wrap_socket(r.sock, server_hostname="mail.example.test")
    t = Raw(sock=tls)
    assert t.cmd(f"PASS {PASS}") == "-ERR Send USER first"
    t.cmd("QUIT")
    print("stls ok")


def pop3s():
    p = poplib.POP3_SSL(HOST, PORTS["pop3s"], context=tls_context(), timeout=30)
    caps = p.capa()
    assert "STLS" not in caps and "USER" in caps, caps
    p.user(USER)
    p.pass_(PASS)
    count, _ = p.stat()
    if count:
        resp, lines, _ = p.retr(1)
        assert resp.endswith(b" octets"), resp
    p.quit()
    print("pop3s ok")


def scram_client(r, user, password):
    """RFC 5802 SCRAM-SHA-256 over POP3 AUTH (RFC 5034)."""
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = f"n={user},r={nonce}"
    challenge = r.cmd("AUTH SCRAM-SHA-256 " + base64.b64encode(("n,," + first_bare).encode()).decode())
    assert challenge.startswith("+ "), challenge
    server_first = base64.b64decode(challenge[2:]).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(nonce)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored = hashlib.sha256(client_key).digest()
    final_bare = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.new(stored, auth_message, "sha256").digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    reply = r.cmd(base64.b64encode(f"{final_bare},p={proof}".encode()).decode())
    assert reply.startswith("+ "), reply
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    expected = base64.b64encode(hmac.new(server_key, auth_message, "sha256").digest()).decode()
    assert base64.b64decode(reply[2:]).decode() == f"v={expected}", reply
    return r.cmd("")


def sasl():
    b64 = lambda s: base64.b64encode(s.encode()).decode()
    r = Raw()
    r.line()
    assert r.cmd("AUTH") == "+OK Supported SASL mechanisms follow" and "PLAIN" in r.multi()
    # PLAIN with an initial response, then with a challenge; a cancel; a wrong password.
    assert r.cmd("AUTH PLAIN " + b64(f"\0{USER}\0wrong")) == "-ERR [AUTH] Authentication failed"
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd("*") == "-ERR Authentication cancelled"
    assert r.cmd("AUTH CRAM-MD5").startswith("-ERR Unsupported mechanism")
    assert r.cmd("AUTH PLAIN") == "+ "
    assert r.cmd(b64(f"\0{USER}\0{PASS}")).startswith("+OK maildrop has")
    assert r.cmd("STAT").startswith("+OK ")
    assert r.cmd("AUTH PLAIN") == "-ERR Already logged in"
    r.cmd("QUIT")
    # LOGIN.
    r = Raw()
    r.line()
    assert base64.b64decode(r.cmd("AUTH LOGIN")[2:]) == b"Username:"
    assert base64.b64decode(r.cmd(b64(USER))[2:]) == b"Password:"
    assert r.cmd(b64(PASS)).startswith("+OK maildrop has")
    r.cmd("QUIT")
    # Authorization as someone else is refused.
    r = Raw()
    r.line()
    assert r.cmd("AUTH PLAIN " + b64(f"bob@example.test\0{USER}\0{PASS}")) == \
        "-ERR [AUTH] Not authorized to act as that user"
    # SCRAM-SHA-256.
    assert scram_client(r, USER, PASS).startswith("+OK maildrop has")
    r.cmd("QUIT")
    print("sasl ok")


def imap_concurrency():
    """POP3 and IMAP on one INBOX: the POP3 snapshot, an IMAP expunge, POP3 deletions seen by IMAP."""
    p = login()
    for i in range(p.stat()[0]):
        p.dele(i + 1)
    p.quit()
    for i in range(4):
        deliver(f"shared {i}")
    m = imaplib.IMAP4(HOST, PORTS["imap"])
    m.login(USER, PASS)
    n = int(m.select("INBOX")[1][0])
    assert n == 4, n
    p = login()  # an IMAP session does not lock POP3 out
    assert p.stat()[0] == 4
    # IMAP expunges message 2 after the POP3 snapshot; POP3 still lists it, RETR says so.
    m.store("2", "+FLAGS", "\\Deleted")
    m.expunge()
    assert p.stat()[0] == 4
    expect_error(lambda: p.retr(2), "message 2 was expunged by another session")
    assert p.retr(1)[0].endswith(b" octets")  # the session goes on
    # Mail delivered now waits for the next POP3 session.
    deliver("late")
    assert p.stat()[0] == 4
    # DELE at QUIT goes through the store: IMAP sees the expunges.
    p.dele(1)
    p.dele(2)
    p.dele(3)
    assert p.quit().endswith(b"(1 message left)")
    m.noop()
    typ, data = m.response("EXPUNGE")
    assert len(data) == 2, (typ, data)  # POP3 deleted 1, 2 (already gone) and 3: two expunges
    m.select("INBOX")
    typ, data = m.search(None, "ALL")
    assert len(data[0].split()) == 2, data  # "shared 3" and "late"
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = sorted(d[1].strip() for d in data if isinstance(d, tuple))
    assert subjects == [b"Subject: late", b"Subject: shared 3"], subjects
    # RETR 1 was sent whole but deleted: nothing is marked read.
    assert m.search(None, "SEEN") == ("OK", [b""]), m.search(None, "SEEN")
    # RETR (not TOP) marks \Seen at QUIT; a session without QUIT marks nothing.
    p = login()
    assert p.stat()[0] == 2
    p.top(1, 0)
    p.retr(2)
    p.close()
    time.sleep(0.3)
    assert m.search(None, "SEEN") == ("OK", [b""])
    p = login()
    p.top(1, 0)
    p.retr(2)
    p.quit()
    m.noop()
    assert m.search(None, "SEEN") == ("OK", [b"2"]), m.search(None, "SEEN")
    m.logout()
    print("imap_concurrency ok")


def locking():
    p = login()
    expect_error(lambda: login(), "[IN-USE]", "locked by another POP3 session")
    p.quit()
    login().quit()  # released at QUIT
    p = login()
    p.close()  # and when the connection drops
    time.sleep(0.3)
    login().quit()
    print("locking ok")


def utf8():
    p = poplib.POP3(HOST, PORTS["pop3"], timeout=30)
    assert p.capa()["UTF8"] == ["USER"]
    assert p.utf8() == b"+OK UTF8 enabled"
    p.user(USER)
    p.pass_(PASS)
    expect_error(p.utf8, "UTF8 is valid only before logging in")
    p.quit()
    print("utf8 ok")


# ----- scenarios for a server with plaintext_on_loopback = false, a small limiter and a short
# ----- idle timeout; and one with a login delay


def plaintext_refused():
    p = poplib.POP3(HOST, PORTS["pop3"], timeout=30)
    caps = p.capa()
    assert "USER" not in caps and caps["SASL"] == ["SCRAM-SHA-256"] and "STLS" in caps, caps
    expect_error(lambda: p.user(USER), "[AUTH]", "needs TLS")
    r = Raw()
    r.line()
    assert r.cmd("AUTH PLAIN " + base64.b64encode(f"\0{USER}\0{PASS}".encode()).decode()) == \
        "-ERR [AUTH] Plain-text authentication needs TLS; send STLS first"
    # SCRAM never sends the password: allowed without TLS.
    assert scram_client(r, USER, PASS).startswith("+OK maildrop has")
    r.cmd("QUIT")
    p.stls(context=tls_context())
    assert "USER" in p.capa()
    p.user("bob@example.test")
    p.pass_("bob-secret")
    p.quit()
    print("plaintext_refused ok")


def login_delay():
    ctx = tls_context()
    p = poplib.POP3_SSL(HOST, PORTS["pop3s"], context=ctx, timeout=30)
    assert p.capa()["LOGIN-DELAY"] == ["60"]
    p.user("carol@example.test")
    p.pass_("carol-secret")
    p.quit()
    p = poplib.POP3_SSL(HOST, PORTS["pop3s"], context=ctx, timeout=30)
    p.user("carol@example.test")
    expect_error(lambda: p.pass_("carol-secret"), "[LOGIN-DELAY]")
    metrics = urllib.request.urlopen(f"http://{HOST}:{PORTS['http']}/metrics", timeout=30).read().decode()
    assert 'postlog_pop3_refused_total{listener="pop3s",code="LOGIN-DELAY"} 1' in metrics, metrics
    assert 'postlog_pop3_logins_total{listener="pop3s"} 1' in metrics, metrics
    print("login_delay ok")


def brute_force():
    """Failures go through the shared limiter: after 3, even the right password is refused."""
    ctx = tls_context()
    for _ in range(3):
        p = poplib.POP3_SSL(HOST, PORTS["pop3s"], context=ctx, timeout=30)
        p.user("bob@example.test")
        expect_error(lambda: p.pass_("wrong"), "[AUTH]")
        p.quit()
    p = poplib.POP3_SSL(HOST, PORTS["pop3s"], context=ctx, timeout=30)
    p.user("bob@example.test")
    expect_error(lambda: p.pass_("bob-secret"), "[SYS/TEMP]", "Too many failed logins")
    metrics = urllib.request.urlopen(f"http://{HOST}:{PORTS['http']}/metrics", timeout=30).read().decode()
    assert 'postlog_auth_failures_total{mechanism="USER"} 4' in metrics, metrics
    print("brute_force ok")


def idle_timeout():
    """timeouts.pop3 = 2: an idle session is cut and deletes nothing."""
    deliver("to dave", to="dave@example.test")
    deliver("to dave again", to="dave@example.test")
    ctx = tls_context()
    p = poplib.POP3_SSL(HOST, PORTS["pop3s"], context=ctx, timeout=30)
    p.user("dave@example.test")
    p.pass_("dave-secret")
    count = p.stat()[0]
    assert count > 0
    p.dele(1)
    time.sleep(3)
    line = p.file.readline()
    assert line.startswith(b"-ERR Disconnected for inactivity"), line
    p = poplib.POP3_SSL(HOST, PORTS["pop3s"], context=ctx, timeout=30)
    p.user("dave@example.test")
    p.pass_("dave-secret")
    assert p.stat()[0] == count
    p.quit()
    print("idle_timeout ok")


if __name__ == "__main__":
    globals()[sys.argv[1]]()
