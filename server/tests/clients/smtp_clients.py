#!/usr/bin/env python3
"""Real SMTP clients against a running Postlog, driven by server/tests/smtp.rs.

Usage: smtp_clients.py SCENARIO HOST PORTS_JSON
Each scenario asserts what the server answers and exits non-zero (with a traceback) on any
difference. What was stored is checked afterwards by the Rust test, from the store.
"""
import email.message
import json
import smtplib
import socket
import ssl
import sys

HOST = sys.argv[2]
PORTS = json.loads(sys.argv[3])
ALICE = ("alice@example.test", "alice-secret")


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's generated, self-signed certificate
    return ctx


def message(subject, frm="sender@remote.test", to="alice@example.test", body="Hello.\n"):
    m = email.message.EmailMessage()
    m["From"] = frm
    m["To"] = to
    m["Subject"] = subject
    m.set_content(body)
    return m


def expect_code(exc_info, code):
    assert exc_info.smtp_code == code, (exc_info.smtp_code, exc_info.smtp_error)


def mx():
    """Port 25 role: no AUTH, local recipients only, STARTTLS offered."""
    with smtplib.SMTP(HOST, PORTS["smtp"], timeout=30) as s:
        code, _ = s.ehlo("client.remote.test")
        assert code == 250
        for ext in ["pipelining", "size", "8bitmime", "smtputf8", "chunking", "binarymime", "starttls",
                    "enhancedstatuscodes", "dsn"]:
            assert s.has_extn(ext), ext
        assert not s.has_extn("auth"), "no AUTH on the MX listener"
        assert s.esmtp_features["size"] == str(50 << 20)
        refused = s.sendmail("sender@remote.test", ["alice@example.test", "nobody@example.test"],
                             message("mx plain").as_bytes())
        assert list(refused) == ["nobody@example.test"] and refused["nobody@example.test"][0] == 550, refused
        try:
            s.sendmail("sender@remote.test", ["someone@elsewhere.test"], message("relay").as_bytes())
            raise AssertionError("relaying was accepted")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["someone@elsewhere.test"]
            assert code == 554 and b"5.7.1" in text and b"Relay access denied" in text, (code, text)
        # An alias with two users: one message, one commit.
        s.sendmail("sender@remote.test", ["team@example.test"], message("to the team", to="team@example.test").as_bytes())
        # DSN parameters are accepted.
        s.sendmail("sender@remote.test", ["bob@example.test"], message("dsn", to="bob@example.test").as_bytes(),
                   mail_options=["RET=HDRS", "ENVID=abc123"], rcpt_options=["NOTIFY=SUCCESS,FAILURE",
                                                                            "ORCPT=rfc822;bob@example.test"])
        # SMTPUTF8: a UTF-8 sender and header.
        m = message("grüße", frm="jörg@remote.test")
        s.send_message(m, from_addr="jörg@remote.test", to_addrs=["alice@example.test"], mail_options=["SMTPUTF8"])
        # VRFY is off by default.
        code, _ = s.verify("alice@example.test")
        assert code == 502, code
        # SIZE above the limit is refused at MAIL.
        code, text = s.docmd("MAIL", f"FROM:<sender@remote.test> SIZE={(50 << 20) + 1}")
        assert code == 552 and text.startswith(b"5.3.4"), (code, text)
    # STARTTLS on the MX listener.
    with smtplib.SMTP(HOST, PORTS["smtp"], timeout=30) as s:
        s.starttls(context=tls_context())
        s.ehlo("client.remote.test")
        assert not s.has_extn("starttls")
        s.sendmail("sender@remote.test", ["alice@example.test"], message("mx over tls").as_bytes())
    print("mx ok")


def submission():
    """587 with STARTTLS, 465 with implicit TLS; AUTH PLAIN, LOGIN; sender ownership."""
    with smtplib.SMTP(HOST, PORTS["submission"], timeout=30) as s:
        s.ehlo("laptop")
        try:
            s.sendmail("alice@example.test", ["bob@example.test"], message("no auth", frm="alice@example.test").as_bytes())
            raise AssertionError("submission without AUTH was accepted")
        except smtplib.SMTPSenderRefused as e:
            expect_code(e, 530)
        s.starttls(context=tls_context())
        s.ehlo("laptop")
        auth = s.esmtp_features["auth"].split()
        assert auth == ["SCRAM-SHA-256", "PLAIN", "LOGIN"], auth
        try:
            s.login("alice@example.test", "wrong")
            raise AssertionError("a wrong password was accepted")
        except smtplib.SMTPAuthenticationError as e:
            assert e.smtp_code == 535, e
        s.login(*ALICE)  # smtplib picks PLAIN
        s.sendmail("alice@example.test", ["bob@example.test"],
                   message("submitted", frm="alice@example.test", to="bob@example.test").as_bytes())
        # The sender must be the user's own address (or an alias that reaches them).
        try:
            s.sendmail("bob@example.test", ["bob@example.test"], message("forged", frm="bob@example.test").as_bytes())
            raise AssertionError("a forged sender was accepted")
        except smtplib.SMTPSenderRefused as e:
            expect_code(e, 553)
        s.sendmail("team@example.test", ["bob@example.test"],
                   message("from the alias", frm="team@example.test", to="bob@example.test").as_bytes())
        # Remote recipients: taken into the outbound queue (the 250 names the queue id).
        code, _ = s.mail("alice@example.test")
        assert code == 250, code
        code, _ = s.rcpt("friend@elsewhere.test")
        assert code == 250, code
        code, msg = s.data(message("out", frm="alice@example.test").as_bytes())
        assert code == 250 and b"queued as" in msg, (code, msg)
    with smtplib.SMTP_SSL(HOST, PORTS["submissions"], timeout=30, context=tls_context()) as s:
        s.ehlo("phone")
        assert not s.has_extn("starttls")
        s.user, s.password = ALICE
        code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        assert code == 235, code
        s.sendmail("alice@example.test", ["alice@example.test"],
                   message("implicit tls", frm="alice@example.test").as_bytes())
    print("submission ok")


def has(lines, extension):
    return any(line[4:].split(" ")[0] == extension for line in lines)


class Raw:
    """A line-level client for what smtplib does not do (pipelining, BDAT, LMTP)."""

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                assert chunk, "connection closed; got %r" % lines
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return lines

    def code(self):
        return int(self.reply()[-1][:3])


def pipelined():
    """RFC 2920 groups: MAIL, RCPTs and DATA in one write; 50 messages on one connection;
    the end of one message pipelined with the next MAIL."""
    c = Raw(PORTS["smtp"])
    assert c.code() == 220
    c.send(b"EHLO pipeliner.remote.test\r\n")
    assert has(c.reply(), "PIPELINING")
    for i in range(50):
        c.send(b"MAIL FROM:<bulk@remote.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<ghost@example.test>\r\n"
               b"DATA\r\n")
        assert [c.code() for _ in range(4)] == [250, 250, 550, 354]
        c.send(b"Subject: pipelined %d\r\n\r\n..dot-stuffed line\r\n.\r\n" % i)
        assert c.code() == 250
    c.send(b"QUIT\r\n")
    assert c.code() == 221
    print("pipelined ok")


def chunking():
    """BDAT (RFC 3030), text and BINARYMIME."""
    c = Raw(PORTS["smtp"])
    assert c.code() == 220
    c.send(b"EHLO chunker\r\n")
    assert has(c.reply(), "CHUNKING")
    body = b"Subject: chunked\r\n\r\nfirst part, "
    c.send(b"MAIL FROM:<c@remote.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT %d\r\n" % len(body) + body)
    assert [c.code() for _ in range(3)] == [250, 250, 250]
    tail = b"second part\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(tail) + tail)
    assert c.code() == 250
    binary = b"Subject: binary\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\n\r\xff.\r\n"
    c.send(b"MAIL FROM:<c@remote.test> BODY=BINARYMIME\r\nRCPT TO:<alice@example.test>\r\n")
    assert [c.code() for _ in range(2)] == [250, 250]
    c.send(b"DATA\r\n")
    assert c.code() == 503
    c.send(b"BDAT %d LAST\r\n" % len(binary) + binary)
    assert c.code() == 250
    c.send(b"QUIT\r\n")
    assert c.code() == 221
    print("chunking ok")


def lmtp():
    """LMTP: LHLO, one reply per recipient after the data."""
    with smtplib.LMTP(HOST, PORTS["lmtp"], timeout=30) as s:
        code, _ = s.ehlo("mta.example.test")
        assert code == 250 and s.does_esmtp
        s.sendmail("list@remote.test", ["alice@example.test"], message("lmtp via smtplib").as_bytes())
    c = Raw(PORTS["lmtp"])
    assert c.code() == 220
    c.send(b"LHLO mta.example.test\r\n")
    assert has(c.reply(), "PIPELINING")
    c.send(b"MAIL FROM:<list@remote.test>\r\n")
    assert c.code() == 250
    c.send(b"RCPT TO:<alice@example.test>\r\n")
    assert c.code() == 250
    c.send(b"RCPT TO:<bob@example.test>\r\n")
    assert c.code() == 250
    c.send(b"RCPT TO:<someone@elsewhere.test>\r\n")
    assert c.code() == 550
    c.send(b"DATA\r\n")
    assert c.code() == 354
    c.send(b"Subject: over lmtp\r\n\r\nhi\r\n.\r\n")
    first, second = c.reply(), c.reply()
    assert first[0].startswith("250 2.0.0 <alice@example.test>"), first
    assert second[0].startswith("250 2.0.0 <bob@example.test>"), second
    c.send(b"QUIT\r\n")
    assert c.code() == 221
    print("lmtp ok")


def smuggle(expect):
    """CVE-2023-51764/5/6 shapes: only CRLF.CRLF ends DATA. The smuggled commands must never
    run as commands: the next reply after the data is the one for QUIT."""
    for shape in [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n"]:
        c = Raw(PORTS["smtp"])
        assert c.code() == 220
        c.send(b"EHLO smuggler\r\n")
        c.reply()
        c.send(b"MAIL FROM:<a@remote.test>\r\n")
        assert c.code() == 250
        c.send(b"RCPT TO:<alice@example.test>\r\n")
        assert c.code() == 250
        c.send(b"DATA\r\n")
        assert c.code() == 354
        c.send(b"Subject: carrier\r\n\r\nhello" + shape +
               b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
               b"Subject: smuggled\r\n\r\nevil\r\n.\r\n")
        lines = c.reply()
        assert lines[0].startswith(expect), (shape, lines)
        c.send(b"QUIT\r\n")
        assert c.reply()[0].startswith("221"), shape


def smuggling():
    # bare_newlines = "normalize" (the default): one message, the rest of it is content.
    smuggle("250 2.0.0")
    print("smuggling ok")


def smuggling_rejected():
    # bare_newlines = "reject": the message is refused.
    smuggle("550 5.5.2")
    print("smuggling_rejected ok")


def bare_lf_bytes():
    """smtplib given bytes sends lines ending in LF alone, dot-stuffed after each LF."""
    with smtplib.SMTP(HOST, PORTS["smtp"], timeout=30) as s:
        s.sendmail("sender@remote.test", ["bob@example.test"],
                   b"Subject: bare lf\n\nline one\n.starts with a dot\n..two dots\n")
    print("bare_lf_bytes ok")


SCENARIOS = {f.__name__: f for f in [mx, submission, pipelined, chunking, lmtp, smuggling, smuggling_rejected,
                                      bare_lf_bytes]}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
