#!/usr/bin/env python3
"""Python's imaplib (and a raw socket for IDLE) against a running Postlog.

Usage: imap_clients.py SCENARIO HOST PORTS_JSON
"""
import imaplib
import json
import re
import smtplib
import socket
import ssl
import sys
import time

HOST = sys.argv[2]
PORTS = json.loads(sys.argv[3])


def ok(resp):
    typ, data = resp
    assert typ == "OK", resp
    return data


def deliver(subject, to="alice@example.test", body="Hello there.\r\n"):
    with smtplib.SMTP(HOST, PORTS["smtp"], timeout=30) as s:
        s.sendmail("sender@remote.test", [to],
                   f"From: Sender <sender@remote.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\n{body}".encode())


def basics():
    for i in range(3):
        deliver(f"hello {i}")
    m = imaplib.IMAP4(HOST, PORTS["imap"])
    caps = m.capabilities
    for c in ["IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE", "NAMESPACE", "AUTH=PLAIN"]:
        assert c in caps, caps
    try:
        m.login("alice@example.test", "wrong")
        raise AssertionError("wrong password accepted")
    except imaplib.IMAP4.error as e:
        assert "AUTHENTICATIONFAILED" in str(e), e
    ok(m.login("alice@example.test", "alice-secret"))
    # New accounts have the special-use folders.
    listing = b"\n".join(ok(m.list()))
    for name, attr in [(b"Drafts", b"\\Drafts"), (b"Sent", b"\\Sent"), (b"Junk", b"\\Junk"), (b"Trash", b"\\Trash")]:
        assert re.search(rb"\(.*" + re.escape(attr) + rb".*\) \"/\" \"?" + name, listing), listing
    data = ok(m.select("INBOX"))
    assert data == [b"3"], data
    typ, data = m.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE)")
    assert typ == "OK" and len(data) == 3, data
    assert b"ENVELOPE (" in data[0] and b"\"hello 0\"" in data[0] and b"BODYSTRUCTURE (\"text\" \"plain\"" in data[0], data[0]
    typ, data = m.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])")
    assert typ == "OK" and data[0][1] == b"From: Sender <sender@remote.test>\r\nSubject: hello 1\r\n\r\n", data
    # \Seen is set by a non-peek fetch, not by a peek.
    typ, data = m.fetch("2", "(FLAGS)")
    assert b"\\Seen" not in data[0], data
    typ, data = m.fetch("2", "(BODY[])")
    assert data[0][1].endswith(b"Hello there.\r\n") and b"Received: from" in data[0][1], data
    typ, data = m.fetch("2", "(FLAGS)")
    assert b"\\Seen" in data[0], data
    # STORE, SEARCH.
    typ, data = m.store("1", "+FLAGS", "(\\Flagged $Important)")
    assert typ == "OK" and b"\\Flagged" in data[0] and b"$Important" in data[0], data
    assert ok(m.search(None, "FLAGGED")) == [b"1"]
    assert ok(m.search(None, "UNSEEN")) == [b"1 3"]
    assert ok(m.search(None, "SUBJECT", "\"hello 2\"")) == [b"3"]
    assert ok(m.search(None, "FROM", "sender@remote.test")) == [b"1 2 3"]
    assert ok(m.search(None, "OR", "FLAGGED", "SEEN")) == [b"1 2"]
    assert ok(m.search(None, "BODY", "there")) == [b"1 2 3"]
    assert ok(m.search(None, "KEYWORD", "$Important")) == [b"1"]
    typ, data = m.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    assert len(uids) == 3, data
    # COPY with COPYUID, MOVE, EXPUNGE.
    typ, data = m.copy("1", "Archive")
    assert typ == "OK", data
    typ, data = m.uid("MOVE", uids[2].decode(), "Trash")
    assert typ == "OK", (typ, data)
    assert ok(m.status("Trash", "(MESSAGES UNSEEN)"))[0].endswith(b"(MESSAGES 1 UNSEEN 1)"), "trash"
    ok(m.store("1", "+FLAGS", "\\Deleted"))
    typ, data = m.expunge()
    # The MOVE's own EXPUNGE (message 3) was pending in imaplib; then the one for message 1.
    assert typ == "OK" and data == [b"3", b"1"], data
    ok(m.select("INBOX"))
    assert ok(m.search(None, "ALL")) == [b"1"]
    # APPEND with APPENDUID, CREATE / RENAME / DELETE.
    typ, data = m.append("Drafts", "(\\Draft)", None, b"Subject: draft\r\n\r\nunfinished\r\n")
    assert typ == "OK" and b"APPENDUID" in data[0], data
    # LIST selection and return options; EMAILID is the stored message's, the same after COPY.
    r = Raw()
    r.cmd("LOGIN alice@example.test alice-secret")
    untagged, done = r.cmd('LIST (SPECIAL-USE) "" "*"')
    assert done.startswith(b"t2 OK") and len(untagged) == 5 and all(b"INBOX" not in l for l in untagged), untagged
    untagged, done = r.cmd('LIST "" "INBOX" RETURN (STATUS (MESSAGES UIDNEXT))')
    assert untagged[0].startswith(b"* LIST (") and untagged[1].startswith(b"* STATUS INBOX (MESSAGES 1 UIDNEXT "), untagged
    r.cmd("SELECT INBOX")
    first, _ = r.cmd("FETCH 1 (EMAILID UID)")
    r.cmd("COPY 1 Archive")
    r.cmd("SELECT Archive")
    copies, _ = r.cmd("FETCH 1:* (EMAILID)")
    emailid = re.search(rb"EMAILID \((\w+)\)", first[0]).group(1)
    assert any(emailid in l for l in copies), (first, copies)
    untagged, done = r.cmd("GETQUOTAROOT INBOX")
    assert untagged == [b'* QUOTAROOT INBOX ""\r\n', b'* QUOTA "" (STORAGE 1 1024)\r\n'] or \
        (untagged[0] == b'* QUOTAROOT INBOX ""\r\n' and untagged[1].startswith(b'* QUOTA "" (STORAGE ')), untagged
    assert untagged[1].endswith(b" 1024)\r\n"), untagged
    # Searches look at decoded text: an RFC 2047 subject, a base64 body.
    with smtplib.SMTP(HOST, PORTS["smtp"], timeout=30) as smtp:
        smtp.sendmail("sender@remote.test", ["alice@example.test"],
                      b"Subject: =?utf-8?q?gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\nMIME-Version: 1.0\r\n"
                      b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                      b"SGllciBpc3QgZGFzIEdlaGVpbXdvcnQ6IFp3aWViZWxrdWNoZW4uCg==\r\n")
    r.cmd("SELECT INBOX")
    needle = "grüße".encode()
    r.n += 1
    r.s.sendall(b"t%d SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n" % (r.n, len(needle)) + needle + b"\r\n")
    found = r.f.readline()
    assert re.match(rb"\* SEARCH \d+\r\n", found), found
    assert r.f.readline().startswith(b"t%d OK" % r.n)
    untagged, _ = r.cmd("SEARCH BODY zwiebelkuchen")
    assert untagged[0] == found, (untagged, found)
    untagged, _ = r.cmd("SEARCH TEXT Gehimwort")
    assert untagged[0] == b"* SEARCH\r\n", untagged
    r.cmd("LOGOUT")
    ok(m.create("Projects/2026"))
    ok(m.rename("Projects", "Work"))
    listing = b"\n".join(ok(m.list('""', "Work/*")))
    assert b"Work/2026" in listing, listing
    ok(m.delete("Work/2026"))
    assert m.logout()[0] == "BYE"
    print("basics ok")


def authorization():
    """Nobody reads a mailbox that is not theirs: bob's mail cannot be named from alice's session."""
    deliver("for bob only", to="bob@example.test")
    m = imaplib.IMAP4(HOST, PORTS["imap"])
    ok(m.login("alice@example.test", "alice-secret"))
    for name in ["bob@example.test/INBOX", "../bob@example.test/INBOX", "#shared/bob/INBOX", "Other Users/bob/INBOX"]:
        typ, _ = m.select(f'"{name}"')
        assert typ == "NO", (name, typ)
    listing = b"\n".join(ok(m.list('""', "*")))
    assert b"bob" not in listing, listing
    # Path tricks, wildcards, odd UTF-7 and very long names reach nothing of bob's.
    tricks = ['"bob@example.test/INBOX"', '"../bob@example.test/INBOX"', '"/bob@example.test/INBOX"',
              '"INBOX/../../bob@example.test/INBOX"', '"%"', '"*"', '"&AGI-&AGI-"', '"&Jjo"',
              '"' + "x" * 2000 + '"', '"#shared/bob/INBOX"', '"~bob/INBOX"']
    for name in tricks:
        for cmd in ["SELECT", "EXAMINE", "STATUS", "DELETE"]:
            args = (name, "(MESSAGES)") if cmd == "STATUS" else (name,)
            typ, data = m._simple_command(cmd, *args)
            assert typ in ("NO", "BAD"), (cmd, name, typ, data)
        typ, data = m.append(name, None, None, b"Subject: planted\r\n\r\nx\r\n")
        assert typ in ("NO", "BAD"), ("APPEND", name, typ, data)
        typ, data = m.rename(name, '"stolen"')
        assert typ in ("NO", "BAD"), ("RENAME", name, typ, data)
    for pattern in ['"*"', '"%"', '"../*"', '"/*"', '"~bob/*"', '"#shared/*"', '"bob*"']:
        listing = b"\n".join(x for x in ok(m.list('""', pattern)) if x)
        assert b"bob" not in listing, (pattern, listing)
    ok(m.select("INBOX"))
    assert ok(m.search(None, "SUBJECT", "\"for bob only\"")) == [b""]
    assert m.logout()[0] == "BYE"
    b = imaplib.IMAP4_SSL(HOST, PORTS["imaps"], ssl_context=_insecure())
    ok(b.login("bob@example.test", "bob-secret"))
    ok(b.select("INBOX"))
    assert ok(b.search(None, "SUBJECT", "\"for bob only\"")) != [b""]
    assert ok(b.search(None, "SUBJECT", "planted")) == [b""]
    listing = b"\n".join(ok(b.list('""', "*")))
    assert b"stolen" not in listing, listing
    assert b.logout()[0] == "BYE"
    print("authorization ok")


def _insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def idle():
    """A message delivered over SMTP reaches a client in IDLE: the EXISTS arrives at once."""
    s = socket.create_connection((HOST, PORTS["imap"]), timeout=30)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"a LOGIN alice@example.test alice-secret\r\n")
    while not f.readline().startswith(b"a OK"):
        pass
    s.sendall(b"b SELECT INBOX\r\n")
    exists = 0
    while True:
        line = f.readline()
        m = re.match(rb"\* (\d+) EXISTS", line)
        if m:
            exists = int(m.group(1))
        if line.startswith(b"b OK"):
            break
    s.sendall(b"c IDLE\r\n")
    assert f.readline().startswith(b"+ "), "idling"
    started = time.time()
    deliver("while idling")
    line = f.readline()
    waited = time.time() - started
    assert line == b"* %d EXISTS\r\n" % (exists + 1), line
    s.sendall(b"DONE\r\n")
    assert f.readline().startswith(b"c OK"), "idle done"
    s.sendall(b"d LOGOUT\r\n")
    print(f"idle ok ({waited * 1000:.0f} ms from SMTP send to EXISTS)")


class Raw:
    def __init__(self, port=None):
        self.s = socket.create_connection((HOST, port or PORTS["imap"]), timeout=30)
        self.f = self.s.makefile("rb")
        self.n = 0
        assert self.f.readline().startswith(b"* OK")

    def cmd(self, text):
        """Sends a command; returns (untagged lines, tagged line)."""
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            line = self.f.readline()
            assert line, "closed"
            if line.startswith(tag + b" "):
                return lines, line
            lines.append(line)


def qresync():
    """CONDSTORE/QRESYNC: a client reconnecting gets exactly what changed since its MODSEQ."""
    for i in range(4):
        deliver(f"sync {i}", to="bob@example.test")
    a = Raw()
    assert a.cmd("LOGIN bob@example.test bob-secret")[1].startswith(b"t1 OK")
    untagged, done = a.cmd("ENABLE QRESYNC")
    assert b"* ENABLED QRESYNC\r\n" in untagged, untagged
    untagged, done = a.cmd("SELECT INBOX")
    text = b"".join(untagged)
    validity = int(re.search(rb"UIDVALIDITY (\d+)", text).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", text).group(1))
    untagged, _ = a.cmd("UID SEARCH ALL")
    uids = [int(x) for x in untagged[-1].split()[2:]]
    a.cmd("LOGOUT")
    # Meanwhile another device flags one, deletes one, and mail arrives.
    b = Raw()
    b.cmd("LOGIN bob@example.test bob-secret")
    b.cmd("SELECT INBOX")
    b.cmd(f"UID STORE {uids[0]} +FLAGS (\\Flagged)")
    b.cmd(f"UID STORE {uids[1]} +FLAGS (\\Deleted)")
    b.cmd("EXPUNGE")
    b.cmd("LOGOUT")
    deliver("sync new", to="bob@example.test")
    # Reconnect with QRESYNC.
    c = Raw()
    c.cmd("LOGIN bob@example.test bob-secret")
    c.cmd("ENABLE QRESYNC")
    untagged, done = c.cmd(f"SELECT INBOX (QRESYNC ({validity} {modseq}))")
    assert done.startswith(b"t3 OK"), done
    text = b"".join(untagged)
    assert b"* VANISHED (EARLIER) %d\r\n" % uids[1] in text, text
    fetches = [l for l in untagged if b" FETCH (" in l]
    assert len(fetches) == 2, fetches  # the flagged one, the new one
    assert any(b"UID %d " % uids[0] in l and b"\\Flagged" in l and b"MODSEQ (" in l for l in fetches), fetches
    # CHANGEDSINCE with VANISHED on UID FETCH.
    untagged, done = c.cmd(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
    text = b"".join(untagged)
    assert b"* VANISHED (EARLIER) %d\r\n" % uids[1] in text and len([l for l in untagged if b"FETCH" in l]) == 2, text
    # An expunge in this session is reported as VANISHED.
    c.cmd(f"UID STORE {uids[2]} +FLAGS.SILENT (\\Deleted)")
    untagged, done = c.cmd("EXPUNGE")
    assert untagged == [b"* VANISHED %d\r\n" % uids[2]], untagged
    # SEARCHRES: a saved result used as "$".
    untagged, done = c.cmd("SEARCH RETURN (SAVE) FLAGGED")
    assert untagged == [] and b"OK" in done, (untagged, done)
    untagged, _ = c.cmd("UID FETCH $ (FLAGS)")
    assert len(untagged) == 1 and b"UID %d " % uids[0] in untagged[0], untagged
    untagged, _ = c.cmd("UID SEARCH UID $")
    assert untagged == [b"* SEARCH %d\r\n" % uids[0]], untagged
    # OBJECTID: a stable MAILBOXID.
    untagged, _ = c.cmd("STATUS INBOX (MAILBOXID)")
    assert re.match(rb"\* STATUS INBOX \(MAILBOXID \(F\d+\)\)", untagged[0]), untagged
    # A STORE shows each changed message once; .SILENT shows nothing; numbers beyond the
    # mailbox are a BAD.
    untagged, _ = c.cmd("STORE 1 +FLAGS (\\Answered)")
    assert len(untagged) == 1 and b"\\Answered" in untagged[0], untagged
    untagged, _ = c.cmd("STORE 1 -FLAGS.SILENT (\\Answered)")
    assert untagged == [], untagged
    untagged, done = c.cmd("FETCH 999 (FLAGS)")
    assert done.startswith(b"t") and b" BAD " in done, done
    # Anything but DONE ends an IDLE with a BAD.
    c.n += 1
    c.s.sendall(b"t%d IDLE\r\n" % c.n)
    assert c.f.readline().startswith(b"+ ")
    c.s.sendall(b"NOOP\r\n")
    line = c.f.readline()
    assert line.startswith(b"t%d BAD" % c.n), line
    untagged, done = c.cmd("NOOP")
    assert done.startswith(b"t%d OK" % c.n), done
    # IMAP4rev2 sessions get ESEARCH for SEARCH.
    c.cmd("ENABLE IMAP4rev2")
    untagged, _ = c.cmd("SEARCH FLAGGED")
    assert untagged[0].startswith(b'* ESEARCH (TAG "t') and b" ALL " in untagged[0], untagged
    c.cmd("LOGOUT")
    print("qresync ok")


def mbsync_server_changes():
    """The server side of the mbsync test: flag 10 messages, expunge 5, deliver 5 new."""
    m = imaplib.IMAP4(HOST, PORTS["imap"])
    ok(m.login("alice@example.test", "alice-secret"))
    ok(m.select("INBOX"))
    ok(m.store("1:10", "+FLAGS", "(\\Flagged)"))
    ok(m.store("11:15", "+FLAGS", "(\\Deleted)"))
    ok(m.expunge())
    m.logout()
    for i in range(5):
        deliver(f"new for mbsync {i}")
    print("mbsync_server_changes ok")


def mbsync_server_state():
    """Prints the server's INBOX as JSON: count, and how many are \\Seen and \\Flagged."""
    m = imaplib.IMAP4(HOST, PORTS["imap"])
    ok(m.login("alice@example.test", "alice-secret"))
    count = int(ok(m.select("INBOX"))[0])
    seen = len(ok(m.search(None, "SEEN"))[0].split())
    flagged = len(ok(m.search(None, "FLAGGED"))[0].split())
    m.logout()
    print(json.dumps({"count": count, "seen": seen, "flagged": flagged}))
    print("mbsync_server_state ok")


def sort_thread():
    """SORT and THREAD on a fresh user's mailbox."""
    def send(subject, mid, refs=""):
        with smtplib.SMTP(HOST, PORTS["smtp"], timeout=30) as smtp:
            extra = f"References: {refs}\r\n" if refs else ""
            smtp.sendmail("x@remote.test", ["carol@example.test"],
                          f"Subject: {subject}\r\nMessage-ID: {mid}\r\n{extra}From: {subject[-1]}@remote.test\r\n\r\nx\r\n".encode())
    send("Lunch b", "<1@x>")
    send("Re: Lunch b", "<2@x>", "<1@x>")
    send("Agenda a", "<3@x>")
    send("Re: Lunch b", "<4@x>", "<1@x> <2@x>")
    c = Raw()
    c.cmd("LOGIN carol@example.test carol-secret")
    c.cmd("SELECT INBOX")
    untagged, done = c.cmd("SORT (SUBJECT) UTF-8 ALL")
    assert untagged == [b"* SORT 3 1 2 4\r\n"], untagged
    # Arrived in the same second: equal keys keep sequence order, REVERSE or not (RFC 5256).
    untagged, _ = c.cmd("SORT (REVERSE ARRIVAL) UTF-8 ALL")
    assert untagged == [b"* SORT 1 2 3 4\r\n"], untagged
    untagged, _ = c.cmd("THREAD REFERENCES UTF-8 ALL")
    assert untagged == [b"* THREAD (1 2 4)(3)\r\n"], untagged
    untagged, _ = c.cmd("THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert untagged == [b"* THREAD (1 (2)(4))(3)\r\n"], untagged
    untagged, done = c.cmd("UID SORT (FROM) UTF-8 NOT SUBJECT agenda")
    assert len(untagged) == 1 and untagged[0].startswith(b"* SORT ") and len(untagged[0].split()) == 5, untagged
    c.cmd("LOGOUT")
    print("sort_thread ok")


def big_fetch():
    """A FETCH whose answer (about 2 MB) is written in pieces while it is rendered, its bodies
    decoded ahead (chunks of up to 64 messages or about 1 MiB; one message here is
    bigger than that alone): every message comes back whole and in order, and a non-peek
    FETCH shows \\Seen on all of them."""
    m = imaplib.IMAP4(HOST, PORTS["imap"])
    ok(m.login("bob@example.test", "bob-secret"))
    ok(m.create("Big"))
    sent = []
    for i in range(80):
        lines = 15000 if i == 40 else 100
        body = "".join(f"message {i} line {j} " + "x" * 60 + "\r\n" for j in range(lines))
        raw = f"From: big@remote.test\r\nSubject: big {i}\r\n\r\n{body}".encode()
        ok(m.append("Big", None, None, raw))
        sent.append(raw)
    assert sum(map(len, sent)) > 1_800_000
    ok(m.select("Big"))
    typ, data = m.fetch("1:*", "(BODY.PEEK[])")
    assert typ == "OK", data
    got = [d[1] for d in data if isinstance(d, tuple)]
    assert got == sent, [len(g) for g in got]
    typ, data = m.uid("FETCH", "1:*", "(BODY[])")
    assert typ == "OK", data
    # FLAGS follows each literal: imaplib gives it as the bytes after the (head, literal) pair.
    tails = [d for d in data if isinstance(d, bytes)]
    assert len(tails) == 80 and all(b"FLAGS (\\Seen)" in t for t in tails), tails[:3]
    assert [d[1] for d in data if isinstance(d, tuple)] == sent
    m.logout()
    print("big_fetch ok")


def threadid():
    """OBJECTID (RFC 8474): THREADID from the store's threads; SEARCH THREADID and EMAILID."""
    m = imaplib.IMAP4(HOST, PORTS["imap"])
    assert "OBJECTID" in m.capabilities, m.capabilities
    ok(m.login("bob@example.test", "bob-secret"))
    ok(m.create("Threads"))
    plans = b"From: Ann <ann@remote.test>\r\nSubject: plans\r\nMessage-ID: <p1@remote.test>\r\n\r\nShall we?\r\n"
    reply = (b"From: Ben <ben@remote.test>\r\nSubject: Re: plans\r\nMessage-ID: <p2@remote.test>\r\n"
             b"In-Reply-To: <p1@remote.test>\r\nReferences: <p1@remote.test>\r\n\r\nYes.\r\n")
    other = b"From: Cid <cid@remote.test>\r\nSubject: unrelated\r\nMessage-ID: <u1@remote.test>\r\n\r\nOther.\r\n"
    again = (b"From: Ann <ann@remote.test>\r\nSubject: Re: Re: plans\r\nMessage-ID: <p3@remote.test>\r\n"
             b"In-Reply-To: <p2@remote.test>\r\nReferences: <p1@remote.test>\r\n <p2@remote.test>\r\n\r\nGood.\r\n")
    for raw in [plans, reply, other, again]:
        typ, data = m.append("Threads", None, None, raw)
        assert typ == "OK" and b"APPENDUID" in data[0], data
    ok(m.select("Threads"))
    data = ok(m.fetch("1:4", "(UID EMAILID THREADID)"))
    assert len(data) == 4, data
    emails, threads = [], []
    for line in data:
        e = re.search(rb"EMAILID \((M[0-9a-f]+)\)", line)
        t = re.search(rb"THREADID \((T[0-9a-f]+)\)", line)
        assert e and t, line
        emails.append(e.group(1).decode())
        threads.append(t.group(1).decode())
    assert threads[0] == threads[1] == threads[3] != threads[2], threads
    assert len(set(emails)) == 4, emails
    # SEARCH by thread and by message, UID SEARCH too, and inside other keys.
    assert ok(m.search(None, "THREADID", threads[0])) == [b"1 2 4"]
    assert ok(m.search(None, "THREADID", threads[2])) == [b"3"]
    assert ok(m.search(None, "EMAILID", emails[1])) == [b"2"]
    assert ok(m.search(None, "OR", "EMAILID", emails[2], "EMAILID", emails[3])) == [b"3 4"]
    assert ok(m.search(None, "NOT", "THREADID", threads[0])) == [b"3"]
    uids = ok(m.uid("SEARCH", None, "ALL"))[0].split()
    assert ok(m.uid("SEARCH", None, "THREADID", threads[0])) == [b" ".join([uids[0], uids[1], uids[3]])]
    # An id that names nothing here, another spelling of one, or the other kind matches nothing.
    for key, value in [("THREADID", "Tfffff"), ("THREADID", "T0" + threads[0][1:]), ("THREADID", "T0"),
                       ("THREADID", emails[0]), ("EMAILID", threads[0]), ("EMAILID", "x_y-z")]:
        assert ok(m.search(None, key, value)) == [b""], (key, value)
    # Not an objectid at all: BAD.
    try:
        m.search(None, "THREADID", "a.b")
        raise AssertionError("SEARCH THREADID a.b accepted")
    except imaplib.IMAP4.error as e:
        assert "BAD" in str(e) or "objectid" in str(e).lower(), e
    # COPY and MOVE keep both ids.
    ok(m.copy("2", "INBOX"))
    typ, data = m.uid("MOVE", uids[3].decode(), "Archive")
    assert typ == "OK", (typ, data)
    ok(m.select("Archive"))
    assert ok(m.search(None, "THREADID", threads[0])) == [b"1"]
    assert ok(m.search(None, "EMAILID", emails[3])) == [b"1"]
    # A reply delivered later over SMTP joins the thread in INBOX, beside the copy.
    with smtplib.SMTP(HOST, PORTS["smtp"], timeout=30) as smtp:
        smtp.sendmail("dan@remote.test", ["bob@example.test"],
                      b"From: Dan <dan@remote.test>\r\nSubject: Re: plans\r\nMessage-ID: <p4@remote.test>\r\n"
                      b"In-Reply-To: <p3@remote.test>\r\n\r\nMe too.\r\n")
    ok(m.select("INBOX"))
    assert ok(m.search(None, "THREADID", threads[0])) == [b"1 2"]
    data = ok(m.fetch("1:2", "(EMAILID THREADID)"))
    assert ("EMAILID (%s)" % emails[1]).encode() in data[0], data
    assert all(("THREADID (%s)" % threads[0]).encode() in line for line in data), data
    assert m.logout()[0] == "BYE"
    print("threadid ok")


def compress():
    """COMPRESS=DEFLATE (RFC 4978): after the OK, both directions are raw deflate."""
    import zlib
    s = socket.create_connection((HOST, PORTS["imap"]), timeout=30)
    f = s.makefile("rb")
    assert b"COMPRESS=DEFLATE" in f.readline()
    s.sendall(b"a LOGIN alice@example.test alice-secret\r\n")
    while not f.readline().startswith(b"a OK"):
        pass
    s.sendall(b"b COMPRESS DEFLATE\r\n")
    assert f.readline() == b"b OK DEFLATE active\r\n"
    out = zlib.compressobj(6, zlib.DEFLATED, -15)
    inflate = zlib.decompressobj(-15)
    def send(line):
        s.sendall(out.compress(line) + out.flush(zlib.Z_SYNC_FLUSH))
    def read_until(tag):
        text = b""
        while not re.search(rb"(^|\r\n)" + tag + rb" ", text):
            chunk = s.recv(65536)
            assert chunk, text
            text += inflate.decompress(chunk)
        return text
    send(b"c SELECT INBOX\r\n")
    text = read_until(b"c")
    assert b"c OK [READ-WRITE]" in text, text
    send(b"d FETCH 1:* (BODY.PEEK[])\r\n")
    text = read_until(b"d")
    assert b"d OK" in text and b"Received: from" in text, text[:500]
    send(b"e COMPRESS DEFLATE\r\n")
    assert b"e NO [COMPRESSIONACTIVE]" in read_until(b"e")
    send(b"f LOGOUT\r\n")
    assert b"f OK" in read_until(b"f")
    print("compress ok")


class Model:
    """What one session has been told: the UID at each sequence number (None: not yet known)."""

    def __init__(self, conn):
        self.c = conn
        self.uids = []

    def apply(self, untagged, command):
        for line in untagged:
            m = re.match(rb"\* (\d+) EXPUNGE", line)
            if m:
                assert not command.startswith(("FETCH", "STORE", "SEARCH")), (command, line)
                del self.uids[int(m.group(1)) - 1]
                continue
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                n = int(m.group(1))
                assert n >= len(self.uids), (command, line, len(self.uids))
                self.uids.extend([None] * (n - len(self.uids)))
                continue
            m = re.match(rb"\* (\d+) FETCH \(.*UID (\d+)", line)
            if m:
                seq, uid = int(m.group(1)), int(m.group(2))
                assert 1 <= seq <= len(self.uids), (command, line, len(self.uids))
                assert self.uids[seq - 1] in (None, uid), (command, line, self.uids[seq - 1])
                self.uids[seq - 1] = uid

    def run(self, command):
        untagged, done = self.c.cmd(command)
        assert b" OK" in done or b" NO" in done, (command, done)
        self.apply(untagged, command)
        return untagged

    def check(self):
        """Every sequence number the session was told of has its UID known after FETCH 1:*."""
        self.run("NOOP")
        for _ in range(5):
            if not self.uids:
                return
            untagged = self.run("FETCH 1:* (UID)")
            # (Updates may follow the FETCH: a new message's EXISTS, another session's flags.)
            if all(u is not None for u in self.uids):
                break
        assert all(u is not None for u in self.uids), self.uids
        assert self.uids == sorted(self.uids) and len(set(self.uids)) == len(self.uids), self.uids


def model():
    """Several sessions on one mailbox, random commands, SMTP deliveries meanwhile: each
    session's sequence numbers stay consistent with what it was told (a model per session)."""
    for seed in range(1, 6):
        model_run(seed)
    print("model ok")


def model_run(seed):
    import random
    rng = random.Random(seed)
    sessions = []
    for _ in range(3):
        c = Raw()
        c.cmd("LOGIN carol@example.test carol-secret")
        m = Model(c)
        m.run("SELECT INBOX")
        sessions.append(m)
    for step in range(300):
        m = rng.choice(sessions)
        n = len(m.uids)
        action = rng.choice(["append", "deliver", "store", "delete", "expunge", "noop", "fetch", "search", "check"])
        if action == "append":
            m.c.n += 1
            body = b"Subject: model %d\r\n\r\nx\r\n" % step
            m.c.s.sendall(b"t%d APPEND INBOX {%d+}\r\n" % (m.c.n, len(body)) + body + b"\r\n")
            lines = []
            while True:
                line = m.c.f.readline()
                if line.startswith(b"t%d " % m.c.n):
                    break
                lines.append(line)
            m.apply(lines, "APPEND")
        elif action == "deliver":
            deliver(f"model delivery {step}", to="carol@example.test")
        elif action == "store" and n:
            m.run(f"STORE {rng.randint(1, n)} +FLAGS (\\Flagged)")
        elif action == "delete" and n:
            m.run(f"STORE {rng.randint(1, n)} +FLAGS.SILENT (\\Deleted)")
        elif action == "expunge":
            m.run("EXPUNGE")
        elif action == "fetch" and n:
            m.run(f"FETCH {rng.randint(1, n)} (UID FLAGS)")
        elif action == "search":
            untagged = m.run("SEARCH ALL")
            found = [l for l in untagged if l.startswith(b"* SEARCH")][0].split()[2:]
            assert all(1 <= int(x) <= len(m.uids) for x in found), (found, len(m.uids))
        elif action == "check":
            m.check()
        else:
            m.run("NOOP")
    for m in sessions:
        m.run("NOOP")
        m.check()
    final = [tuple(m.uids) for m in sessions]
    assert final[0] == final[1] == final[2], final
    for m in sessions:
        m.c.cmd("LOGOUT")


def list_extended():
    """LIST-EXTENDED (RFC 5258 section 5), LIST-STATUS (RFC 5819) and LSUB (RFC 3501 section
    6.3.9): the exact untagged lines for the examples on the examples' hierarchies."""
    r = Raw()
    assert r.cmd("LOGIN dave@example.test dave-secret")[1].startswith(b"t1 OK")

    def run(command):
        untagged, done = r.cmd(command)
        assert done.startswith(b"t%d OK" % r.n), (command, done)
        return [l.decode().rstrip("\r\n") for l in untagged]

    def expect(command, lines):
        got = run(command)
        assert got == lines, (command, got, lines)

    def reset(mailboxes, subscriptions):
        """INBOX and `mailboxes` exist, exactly `subscriptions` are subscribed."""
        for l in run('LSUB "" "*"'):
            run("UNSUBSCRIBE " + l.split(' "/" ', 1)[1])
        for l in reversed(run('LIST "" "*"')):
            name = l.split(' "/" ', 1)[1]
            if name != "INBOX":
                run("DELETE " + name)
        for m in mailboxes:
            run("CREATE " + m)
        for m in subscriptions:
            run("SUBSCRIBE " + m)

    # RFC 5258 examples 5.1 to 5.7 (those without remote mailboxes).
    reset(["Fruit", "Fruit/Apple", "Fruit/Banana", "Tofu", "Vegetable", "Vegetable/Broccoli", "Vegetable/Corn"],
          ["Fruit/Banana", "Fruit/Peach", "Vegetable", "Vegetable/Broccoli"])
    everything = ["Fruit", "Fruit/Apple", "Fruit/Banana", "INBOX", "Tofu", "Vegetable", "Vegetable/Broccoli",
                  "Vegetable/Corn"]
    # 5.1, plain: what IMAP4rev1 clients expect (children, no \Subscribed).
    expect('LIST "" "*"', [
        '* LIST (\\HasChildren) "/" Fruit',
        '* LIST (\\HasNoChildren) "/" Fruit/Apple',
        '* LIST (\\HasNoChildren) "/" Fruit/Banana',
        '* LIST (\\HasNoChildren) "/" INBOX',
        '* LIST (\\HasNoChildren) "/" Tofu',
        '* LIST (\\HasChildren) "/" Vegetable',
        '* LIST (\\HasNoChildren) "/" Vegetable/Broccoli',
        '* LIST (\\HasNoChildren) "/" Vegetable/Corn',
    ])
    # 5.1, extended with nothing asked: nothing but the names.
    expect('LIST () "" "*" RETURN ()', ['* LIST () "/" ' + n for n in everything])
    # 5.2: the subscribed names, one of which does not exist.
    expect('LIST (SUBSCRIBED) "" "*"', [
        '* LIST (\\Subscribed) "/" Fruit/Banana',
        '* LIST (\\NonExistent \\Subscribed) "/" Fruit/Peach',
        '* LIST (\\Subscribed) "/" Vegetable',
        '* LIST (\\Subscribed) "/" Vegetable/Broccoli',
    ])
    # 5.3: children, and only children.
    expect('LIST () "" "%" RETURN (CHILDREN)', [
        '* LIST (\\HasChildren) "/" Fruit',
        '* LIST (\\HasNoChildren) "/" INBOX',
        '* LIST (\\HasNoChildren) "/" Tofu',
        '* LIST (\\HasChildren) "/" Vegetable',
    ])
    # 5.6: every mailbox with its subscription state (not the subscribed name that does not exist).
    expect('LIST "" "*" RETURN (SUBSCRIBED)', [
        '* LIST () "/" Fruit',
        '* LIST () "/" Fruit/Apple',
        '* LIST (\\Subscribed) "/" Fruit/Banana',
        '* LIST () "/" INBOX',
        '* LIST () "/" Tofu',
        '* LIST (\\Subscribed) "/" Vegetable',
        '* LIST (\\Subscribed) "/" Vegetable/Broccoli',
        '* LIST () "/" Vegetable/Corn',
    ])
    # 5.7: several patterns, each name once.
    expect('LIST "" ("INBOX" "Vegetable" "Fruit/%" "Fruit/*")', [
        '* LIST () "/" Fruit/Apple',
        '* LIST () "/" Fruit/Banana',
        '* LIST () "/" INBOX',
        '* LIST () "/" Vegetable',
    ])
    # LIST-STATUS: no STATUS for the subscribed name that does not exist.
    expect('LIST (SUBSCRIBED) "" "Fruit/*" RETURN (STATUS (MESSAGES UNSEEN))', [
        '* LIST (\\Subscribed) "/" Fruit/Banana',
        '* STATUS Fruit/Banana (MESSAGES 0 UNSEEN 0)',
        '* LIST (\\NonExistent \\Subscribed) "/" Fruit/Peach',
    ])
    # LSUB keeps subscriptions to names that do not exist.
    expect('LSUB "" "Fruit/*"', ['* LSUB (\\HasNoChildren) "/" Fruit/Banana', '* LSUB () "/" Fruit/Peach'])

    # 5.8: RECURSIVEMATCH.
    reset(["Foo", "Foo/Bar", "Foo/Baz", "Moo"], [])
    expect('LIST "" "*"', [
        '* LIST (\\HasChildren) "/" Foo',
        '* LIST (\\HasNoChildren) "/" Foo/Bar',
        '* LIST (\\HasNoChildren) "/" Foo/Baz',
        '* LIST (\\HasNoChildren) "/" INBOX',
        '* LIST (\\HasNoChildren) "/" Moo',
    ])
    expect('LIST "" "%" RETURN (CHILDREN)', [
        '* LIST (\\HasChildren) "/" Foo',
        '* LIST (\\HasNoChildren) "/" INBOX',
        '* LIST (\\HasNoChildren) "/" Moo',
    ])
    run("SUBSCRIBE Foo/Baz")
    expect('LIST (SUBSCRIBED) "" "*"', ['* LIST (\\Subscribed) "/" Foo/Baz'])
    expect('LIST (SUBSCRIBED) "" "%"', [])
    expect('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', ['* LIST () "/" Foo ("CHILDINFO" ("SUBSCRIBED"))'])
    run("SUBSCRIBE Foo")
    expect('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', ['* LIST (\\Subscribed) "/" Foo ("CHILDINFO" ("SUBSCRIBED"))'])
    # 5.8 A2: the parent does not exist.
    run("UNSUBSCRIBE Foo")
    run("UNSUBSCRIBE Foo/Baz")
    run("SUBSCRIBE Xyzzy/Plugh")
    expect('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', ['* LIST (\\NonExistent) "/" Xyzzy ("CHILDINFO" ("SUBSCRIBED"))'])
    run("UNSUBSCRIBE Xyzzy/Plugh")
    expect('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"', [])
    run("SUBSCRIBE Foo")
    run("SUBSCRIBE Moo")
    expect('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)', [
        '* LIST (\\HasChildren \\Subscribed) "/" Foo',
        '* LIST (\\HasNoChildren \\Subscribed) "/" Moo',
    ])

    # 5.9: CHILDINFO only where a subscribed descendant is not listed itself.
    reset(["foo2", "foo2/bar1", "foo2/bar2", "baz2", "baz2/bar2", "baz2/bar22", "baz2/bar222", "eps2", "eps2/mamba",
           "qux2/bar2"],
          ["foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22", "baz2/bar222", "eps2", "eps2/mamba", "qux2/bar2"])
    run("DELETE qux2")
    expect('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*2"', [
        '* LIST (\\Subscribed) "/" baz2/bar2',
        '* LIST (\\Subscribed) "/" baz2/bar22',
        '* LIST (\\Subscribed) "/" baz2/bar222',
        '* LIST (\\Subscribed) "/" eps2 ("CHILDINFO" ("SUBSCRIBED"))',
        '* LIST () "/" foo2 ("CHILDINFO" ("SUBSCRIBED"))',
        '* LIST (\\Subscribed) "/" foo2/bar2',
        '* LIST (\\Subscribed) "/" qux2/bar2',
    ])
    # A deleted parent (qux2) is a level of hierarchy for "%".
    expect('LIST "" "%"', [
        '* LIST (\\HasNoChildren) "/" INBOX',
        '* LIST (\\HasChildren) "/" baz2',
        '* LIST (\\HasChildren) "/" eps2',
        '* LIST (\\HasChildren) "/" foo2',
        '* LIST (\\Noselect \\HasChildren) "/" qux2',
    ])
    expect('LIST () "" "qux2" RETURN (CHILDREN)', ['* LIST (\\NonExistent \\HasChildren) "/" qux2'])
    expect('LIST "" "qux2" RETURN (STATUS (MESSAGES))', ['* LIST (\\NonExistent) "/" qux2'])

    # RFC 3501 section 6.3.9's LSUB example ("/" for "."): a parent shown \Noselect for "%".
    reset(["news/comp/mail/misc", "news/comp/mail/mime", "news/comp/mail/sanity"],
          ["news/comp/mail/misc", "news/comp/mail/mime"])
    expect('LSUB "news/" "comp/mail/*"', [
        '* LSUB (\\HasNoChildren) "/" news/comp/mail/mime',
        '* LSUB (\\HasNoChildren) "/" news/comp/mail/misc',
    ])
    expect('LSUB "news/" "comp/%"', ['* LSUB (\\Noselect) "/" news/comp/mail'])
    expect('LIST (SUBSCRIBED RECURSIVEMATCH) "news/" "comp/%"',
           ['* LIST () "/" news/comp/mail ("CHILDINFO" ("SUBSCRIBED"))'])

    # SPECIAL-USE (RFC 6154) as a selection and as a return option.
    reset([], [])
    run("CREATE Bin (USE (\\Trash))")
    run("CREATE Old/Sent (USE (\\Sent))")
    expect('LIST (SPECIAL-USE) "" "*"', ['* LIST (\\Trash) "/" Bin', '* LIST (\\Sent) "/" Old/Sent'])
    expect('LIST "" "%" RETURN (SPECIAL-USE)', ['* LIST (\\Trash) "/" Bin', '* LIST () "/" INBOX', '* LIST () "/" Old'])
    expect('LIST (SPECIAL-USE RECURSIVEMATCH) "" "%" RETURN (CHILDREN)', [
        '* LIST (\\HasNoChildren \\Trash) "/" Bin',
        '* LIST (\\HasChildren) "/" Old ("CHILDINFO" ("SPECIAL-USE"))',
    ])
    # The root and the delimiter; RECURSIVEMATCH alone is refused.
    expect('LIST "" ""', ['* LIST (\\Noselect) "/" ""'])
    _, done = r.cmd('LIST (RECURSIVEMATCH) "" "*"')
    assert done.startswith(b"t%d BAD" % r.n), done
    r.cmd("LOGOUT")
    print("list_extended ok")


SCENARIOS = {f.__name__: f for f in [basics, authorization, idle, qresync, sort_thread, threadid, big_fetch, compress, model,
                                      mbsync_server_changes, mbsync_server_state, list_extended]}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
