#!/usr/bin/env python3
"""imapclient (from PyPI, pinned in scripts/test.sh) against a running Postlog.

Usage: imapclient_clients.py SCENARIO HOST PORTS_JSON

imapclient has no COMPRESS, and its xlist_folders speaks Gmail's XLIST, which Postlog does
not offer (SPECIAL-USE replaces it): find_special_folder is the way to the special folders.
"""
import json
import smtplib
import ssl
import sys
import threading
from datetime import datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.message import EmailMessage

import imapclient
from imapclient import IMAPClient
from imapclient.imapclient import ARCHIVE, DRAFTS, JUNK, SENT, TRASH
from imapclient.exceptions import IMAPClientError

HOST = sys.argv[2]
PORTS = json.loads(sys.argv[3])
USER, PASSWORD = "erin@example.test", "erin-secret"


def deliver(subject, body="Hello there.\r\n", headers=""):
    with smtplib.SMTP(HOST, PORTS["smtp"], timeout=30) as s:
        s.sendmail("sender@remote.test", [USER],
                   f"From: Sender <sender@remote.test>\r\nTo: {USER}\r\nSubject: {subject}\r\n{headers}\r\n{body}"
                   .encode())


def connect():
    c = IMAPClient(HOST, port=PORTS["imap"], ssl=False, timeout=30)
    c.normalise_times = False
    return c


def appended_message():
    m = EmailMessage()
    m["From"] = "Jörg Müller <joerg@example.test>"
    m["To"] = USER
    m["Subject"] = "Grüße aus Köln"
    m["Message-ID"] = "<thread-root@example.test>"
    m["Date"] = "Fri, 05 Jan 2024 10:11:12 +0000"
    m.set_content("Zwiebelkuchen für alle.\n")
    m.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream", filename="data.bin")
    return m.as_bytes().replace(b"\n", b"\r\n")


def everything():
    c = connect()
    before = c.capabilities()
    assert b"IMAP4REV1" in before and b"AUTH=PLAIN" in before, before
    try:
        c.login(USER, "wrong")
        raise AssertionError("a wrong password was accepted")
    except IMAPClientError as e:
        assert "AUTHENTICATIONFAILED" in str(e), e
    c.login(USER, PASSWORD)
    for cap in ["IMAP4REV1", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "CONDSTORE", "SORT", "THREAD=REFERENCES",
                "QUOTA", "NAMESPACE", "ID", "ENABLE", "UNSELECT", "LIST-EXTENDED", "LIST-STATUS", "ESEARCH"]:
        assert c.has_capability(cap), (cap, c.capabilities())

    # ID, NAMESPACE.
    (fields,) = c.id_({"name": "imapclient", "version": imapclient.__version__})
    assert dict(zip(fields[::2], fields[1::2]))[b"name"] == b"Postlog", fields
    ns = c.namespace()
    assert ns.personal == (("", "/"),) and ns.other is None and ns.shared is None, ns

    # Folders and their special uses.
    folders = {name: flags for flags, _, name in c.list_folders()}
    assert set(folders) == {"INBOX", "Drafts", "Sent", "Junk", "Trash", "Archive"}, folders
    for flag, name in [(SENT, "Sent"), (TRASH, "Trash"), (JUNK, "Junk"), (DRAFTS, "Drafts"), (ARCHIVE, "Archive")]:
        assert flag in folders[name], (name, folders[name])
        assert c.find_special_folder(flag) == name, flag
    c.create_folder("Projects/2026")
    assert (b"\\HasChildren",) == tuple(f for f in c.list_folders(pattern="Projects")[0][0]), c.list_folders()
    assert c.folder_status("Archive", ["MESSAGES", "UIDNEXT"])[b"MESSAGES"] == 0

    # ENABLE CONDSTORE, SELECT.
    assert c.enable("CONDSTORE") == [b"CONDSTORE"]
    selected = c.select_folder("INBOX")
    assert selected[b"EXISTS"] == 0 and selected[b"READ-WRITE"], selected
    start_modseq = selected[b"HIGHESTMODSEQ"]

    # APPEND, and delivered mail forming a thread.
    raw = appended_message()
    when = datetime(2024, 1, 5, 10, 11, 12, tzinfo=timezone(timedelta(hours=1)))
    response = c.append("INBOX", raw, flags=[b"\\Flagged", b"$Label"], msg_time=when)
    assert b"APPENDUID" in response, response
    deliver("Re: Grüße aus Köln", headers="Message-ID: <reply-1@remote.test>\r\n"
            "In-Reply-To: <thread-root@example.test>\r\nReferences: <thread-root@example.test>\r\n")
    deliver("Another topic", headers="Message-ID: <other@remote.test>\r\n")
    deliver("Re: Re: Grüße aus Köln", headers="Message-ID: <reply-2@remote.test>\r\n"
            "In-Reply-To: <reply-1@remote.test>\r\nReferences: <thread-root@example.test> <reply-1@remote.test>\r\n")
    c.noop()
    uids = c.search()
    assert len(uids) == 4, uids
    root, reply1, other, reply2 = uids

    # FETCH: ENVELOPE, BODYSTRUCTURE, BODY.PEEK[], MODSEQ.
    data = c.fetch(uids, ["ENVELOPE", "BODYSTRUCTURE", "BODY.PEEK[]", "MODSEQ", "FLAGS", "INTERNALDATE",
                          "RFC822.SIZE"])
    first = data[root]
    env = first[b"ENVELOPE"]
    assert env.message_id == b"<thread-root@example.test>", env
    assert env.from_[0].mailbox == b"joerg" and env.from_[0].host == b"example.test", env.from_
    assert env.date == datetime(2024, 1, 5, 10, 11, 12, tzinfo=timezone.utc), env.date
    assert str(make_header(decode_header(env.subject.decode()))) == "Grüße aus Köln", env.subject
    body = first[b"BODYSTRUCTURE"]
    assert body.is_multipart, body
    parts, subtype = body[0], body[1]
    assert subtype == b"mixed" and parts[0][0] == b"text" and parts[1][0] == b"application", body
    assert first[b"BODY[]"] == raw and first[b"RFC822.SIZE"] == len(raw)
    assert first[b"INTERNALDATE"] == when, first[b"INTERNALDATE"]
    assert set(first[b"FLAGS"]) == {b"\\Flagged", b"$Label"}, first[b"FLAGS"]
    modseq = max(d[b"MODSEQ"][0] for d in data.values())
    assert all(d[b"MODSEQ"][0] > start_modseq for d in data.values()), data
    assert b"\\Seen" not in c.get_flags([reply1])[reply1]
    # CHANGEDSINCE: only what changed after the MODSEQ the client knows.
    c.add_flags([reply1], [b"\\Seen"])
    changed = c.fetch(uids, ["FLAGS"], modifiers=[f"CHANGEDSINCE {modseq}"])
    assert list(changed) == [reply1] and b"\\Seen" in changed[reply1][b"FLAGS"], changed

    # SEARCH, with CHARSET UTF-8 (sent as a literal).
    assert c.search(["SUBJECT", "Grüße"], charset="UTF-8") == [root, reply1, reply2]
    assert c.search(["BODY", "Zwiebelkuchen"]) == [root]
    assert c.search(["FLAGGED"]) == [root] and c.search(["KEYWORD", "$Label"]) == [root]
    assert c.search(["SEEN"]) == [reply1] and c.search(["NOT", "SEEN"]) == [root, other, reply2]
    assert c.search(["OR", "SUBJECT", "Another", "FLAGGED"]) == [root, other]

    # SORT, THREAD.
    assert c.sort(["SUBJECT"]) == [other, root, reply1, reply2], c.sort(["SUBJECT"])
    # The appended message is from 2024; the deliveries share a second or are in order, and
    # ties keep the mailbox order (RFC 5256), so REVERSE ARRIVAL puts the appended one last.
    assert c.sort(["REVERSE ARRIVAL"])[-1] == root, c.sort(["REVERSE ARRIVAL"])
    assert c.sort(["ARRIVAL"], ["NOT", "FLAGGED"]) == [reply1, other, reply2]
    assert c.sort(["REVERSE SUBJECT"], ["ALL"]) == [root, reply1, reply2, other], c.sort(["REVERSE SUBJECT"])
    threads = c.thread("REFERENCES")
    assert sorted(threads) == sorted([(root, reply1, reply2), (other,)]), threads
    # ORDEREDSUBJECT: the first of a subject is the parent of the others, siblings (RFC 5256).
    ordered = c.thread("ORDEREDSUBJECT")
    assert sorted(ordered) == sorted([(root, (reply1,), (reply2,)), (other,)]), ordered

    # IDLE, woken by a delivery made while idling.
    c.idle()
    threading.Timer(0.5, deliver, args=("while idling",)).start()
    got = []
    for _ in range(10):
        got += c.idle_check(timeout=5)
        if any(r[1] == b"EXISTS" for r in got if len(r) > 1):
            break
    c.idle_done()
    assert (5, b"EXISTS") in got, got
    idled = c.search(["SUBJECT", "idling"])
    assert len(idled) == 1, idled

    # COPY, MOVE, UID EXPUNGE.
    # (imaplib, under imapclient, keeps COPYUID in the tagged line it does not return.)
    c.copy([other], "Archive")
    c.move(idled, "Trash")
    assert c.search() == [root, reply1, other, reply2]
    c.add_flags([other, reply2], [b"\\Deleted"])
    c.uid_expunge([other])
    assert c.search() == [root, reply1, reply2], "UID EXPUNGE removes only the UIDs named"
    assert c.search(["DELETED"]) == [reply2]
    assert c.folder_status("Trash", ["MESSAGES"])[b"MESSAGES"] == 1
    assert c.folder_status("Archive", ["MESSAGES"])[b"MESSAGES"] == 1

    # QUOTA: one root, "", over the whole account.
    roots, quotas = c.get_quota_root("INBOX")
    assert roots.mailbox == "INBOX" and roots.quota_roots == [""], roots
    assert len(quotas) == 1 and quotas[0].resource == "STORAGE" and quotas[0].limit == 10 * 1024, quotas
    assert 0 < quotas[0].usage < quotas[0].limit, quotas
    assert c.get_quota() == quotas

    # MULTIAPPEND (RFC 3502): both messages in one command, in order.
    response = c.multiappend("Drafts", [
        {"msg": b"Subject: draft 1\r\n\r\none\r\n", "flags": [b"\\Draft"]},
        {"msg": b"Subject: draft 2\r\n\r\ntwo\r\n", "date": when},
    ])
    typ, (text,) = response
    assert typ == "OK" and text.startswith(b"[APPENDUID ") and b" 1:2]" in text, response
    c.select_folder("Drafts")
    drafts = c.fetch(c.search(), ["FLAGS", "INTERNALDATE", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    assert [d[b"BODY[HEADER.FIELDS (SUBJECT)]"] for d in drafts.values()] == \
        [b"Subject: draft 1\r\n\r\n", b"Subject: draft 2\r\n\r\n"], drafts
    first, second = drafts.values()
    assert b"\\Draft" in first[b"FLAGS"] and second[b"INTERNALDATE"] == when, drafts
    # Flags replaced and removed; CLOSE expunges the \Deleted ones silently.
    ids = list(drafts)
    c.set_flags(ids, [b"\\Seen", b"$Done"])
    c.remove_flags([ids[0]], [b"$Done"])
    assert c.get_flags(ids) == {ids[0]: (b"\\Seen",), ids[1]: (b"\\Seen", b"$Done")}, c.get_flags(ids)
    c.add_flags([ids[0]], [b"\\Deleted"])
    c.close_folder()
    assert c.folder_status("Drafts", ["MESSAGES"])[b"MESSAGES"] == 1

    # Folder management and subscriptions.
    c.rename_folder("Projects", "Work")
    assert c.folder_exists("Work/2026") and not c.folder_exists("Projects")
    c.subscribe_folder("Work/2026")
    assert [name for _, _, name in c.list_sub_folders(pattern="Work/*")] == ["Work/2026"]
    c.unsubscribe_folder("Work/2026")
    c.delete_folder("Work/2026")
    assert not c.folder_exists("Work/2026")
    # XLIST (Gmail's) is not offered: SPECIAL-USE replaces it.
    try:
        c.xlist_folders()
        raise AssertionError("XLIST answered")
    except IMAPClientError as e:
        assert "XLIST" in str(e) or "unknown" in str(e).lower(), e

    # UNSELECT keeps the \Deleted message; LOGOUT.
    c.select_folder("INBOX")
    c.unselect_folder()
    c.select_folder("INBOX", readonly=True)
    assert c.search(["DELETED"]) == [reply2]
    bye = c.logout()
    assert bye == b"Logging out", bye

    # STARTTLS on the plain port (the server's own certificate), then a login over TLS.
    t = connect()
    assert t.has_capability("STARTTLS")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    t.starttls(context)
    assert not t.has_capability("STARTTLS"), t.capabilities()
    t.login(USER, PASSWORD)
    assert t.select_folder("INBOX", readonly=True)[b"EXISTS"] == 3
    t.logout()
    print("everything ok")


SCENARIOS = {f.__name__: f for f in [everything]}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
