"""A small scripted FTP server for the tests, only to provoke what real servers won't do.

It serves an in-memory tree (a file hello.txt and a few directories), shared by all its
connections, well enough to be mounted and written through a mount: MLSD/MLST/LIST, RETR (with
REST), STOR/APPE, DELE, MKD/RMD, RNFR/RNTO (files and whole directories), SIZE, MDTM, MFMT and
SITE CHMOD, with 550 replies for missing paths like a real server. Relative paths are resolved
against the session's directory (CWD/PWD). It misbehaves on purpose when a command's argument
names one of these directories:
  endless_dir   the reply is one endless line (no CR/LF ever)
  huge_dir      the reply is a multi-line reply of 100 000 lines
  silent_dir    no reply at all (the connection stays open)
  garbage_dir   a reply without a code
  close_dir     half a reply, then the connection is closed
  prelim_dir    (with --endless-preliminary) `150` replies without end, until the client closes
With --many-entries N, a directory many_dir is listed (MLSD, LIST, NLST) with N generated
files; with --fat-listing MIB, a directory fat_dir's listing is MIB MiB of lines that are no
entries at all. --escapes puts terminal control sequences (ESC, BEL, CR, a C1 CSI, DEL) into
the greeting, the SYST reply, a FEAT line and every 550 reply.
Flags: --bad-pasv (EPSV refused, PASV answers nonsense), --no-epsv (EPSV answered `500 not
understood`, PASV works), --oops-epsv N (every Nth EPSV, counted over all connections, is
answered `500 OOPS: vsf_sysutil_bind` and the connection closed, as vsftpd does when no passive
port is free), --foreign-pasv (PASV names another host: the client must ignore it), --drop-every N (the control connection is closed, without a
reply, at every Nth command other than USER and PASS, counted over all connections),
--drop-stor N (the same at every Nth STOR, counted over all connections; the data sent for it
is never read), --lose-stor-reply N (at every Nth STOR, counted over all connections, the
data is read to its end and stored, the data connection closed in order, and then the control
connection closed without the final reply: a 226 lost on the way, as behind a NAT that dropped
the idle control connection), --store-short (such a STOR stores one byte less than it read: a
server that lost the end of the file), --stale-mdtm (MDTM answers the initial tree's time, in
2024, for every file), --slow-stor N --slow-secs S (every Nth STOR is carried out only after S seconds),
--drop-login N (the connection is closed, without a reply, at each of the first N PASS commands,
counted over all connections), --silent-greeting (connections are accepted but nothing is ever
sent: no greeting; they stay open until the client closes them), --broken-mlsd (MLST
advertised, MLSD answers 500), --dos (no MLST; LIST in DOS/IIS style),
--refuse-rename-over-existing (RNTO onto an existing file or directory answers
`550 Cannot rename: target exists` and changes nothing, like IIS and some embedded servers),
--greeting TEXT (the text of the 220 greeting: clients recognize servers by it),
--log-commands FILE (every command line received is appended to FILE, PASS masked as `PASS ****`),
--digests x|hash (SHA-256 digests offered by XSHA256, or by HASH after OPTS HASH), --flip-stor N
(the Nth STOR, counted over all connections, stores its data with one byte changed),
--answer-during-stor (commands that arrive while a STOR's data is read are answered before its
226, as if during the transfer, as pyftpdlib and ProFTPD do: a SIZE counts the file before the
new data; a data connection asked for among them is answered after the 226).
Active mode: PORT and EPRT are answered, and the server then connects to the address given, from
127.0.0.1 (or ::1); --active-from IP makes it connect from IP instead (bound before connecting,
e.g. 127.0.0.2: a peer that is not the control connection's).
TLS: --tls-cert FILE --tls-key FILE offer explicit FTPS with this certificate and key (AUTH TLS,
PBSZ, PROT P/C; protected data connections are TLS and end with close_notify).
--tls-truncate (with --tls-cert) makes a RETR over a protected data connection send half of its
data, then close the TCP connection without close_notify, and still answer 226, as a network
attacker injecting a FIN would. --auth-tls-extra (with --tls-cert) sends, in the same write as
the 234 reply to AUTH TLS, one more reply line (`230 ...`), before the TLS handshake: bytes a
man in the middle could inject in clear.
"""
import argparse
import calendar
import hashlib
import posixpath
import select
import socket
import socketserver
import ssl
import threading
import time

# 2024-01-31 14:15:00 UTC: the time of everything in the initial tree.
BASE_MTIME = 1706710500
FILES = {"/hello.txt": b"hello world\n"}
DIRS = {"/", "/endless_dir", "/huge_dir", "/silent_dir", "/garbage_dir", "/close_dir", "/normal_dir"}
MTIMES = {}  # path -> seconds since the epoch (BASE_MTIME when absent)
MODES = {}  # path -> permission bits set by SITE CHMOD
LOCK = threading.Lock()
LOG_LOCK = threading.Lock()


def count(key):
    """Counts one more event of kind `key` over all connections; the new count."""
    with LOCK:
        COUNTER[key] += 1
        return COUNTER[key]
COUNTER = {"n": 0, "pass": 0, "stor": 0, "slow": 0, "oops": 0, "lose": 0, "flip": 0}
ARGS = None


def parent_of(path):
    return posixpath.dirname(path) or "/"


def under(path, top):
    """True when path is top or inside it."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def children(path):
    """Names directly inside the directory path (LOCK held)."""
    names = [d for d in DIRS if d != "/" and parent_of(d) == path]
    names += [f for f in FILES if parent_of(f) == path]
    return names


def mtime_of(path):
    return MTIMES.get(path, BASE_MTIME)


def fmt_mlsd_time(t):
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(t))


# --escapes: what a hostile server sends to drive the user's terminal (retitle the window, clear
# the screen, ring, overwrite the line, a C1 CSI, DEL).
ESCAPES = " \x1b]0;owned\x07\x1b[2J\rfake\u009b31m\x7f end"


def generated_listing(path, mlsd):
    """The listing of many_dir (--many-entries) or fat_dir (--fat-listing); None for others."""
    if ARGS.many_entries and path == "/many_dir":
        if mlsd:
            line = "type=file;size=1;modify=20240131141500; f%07d\r\n"
        else:
            line = "-rw-r--r-- 1 u g 1 Jan 31  2024 f%07d\r\n"
        return "".join(line % i for i in range(ARGS.many_entries)).encode()
    if ARGS.fat_listing and path == "/fat_dir":
        filler = b"# " + b"x" * 1021 + b"\r\n"
        return filler * (ARGS.fat_listing * 1024)
    return None


def log_command(line):
    if not ARGS.log_commands:
        return
    verb, sep, _ = line.partition(" ")
    if verb.upper() == "PASS":
        line = verb + sep + "****"
    with LOG_LOCK, open(ARGS.log_commands, "a", encoding="utf-8", errors="replace") as f:
        f.write(line + "\n")


def tls_context():
    """The server side TLS configuration of --tls-cert and --tls-key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.tls_cert, ARGS.tls_key)
    return ctx


def end_data(conn):
    """Closes a data connection; a TLS one with close_notify (and the client's in return)."""
    if isinstance(conn, ssl.SSLSocket):
        try:
            conn.unwrap()
        except (OSError, ValueError):
            pass
    conn.close()


def truncate_data(conn, payload):
    """--tls-truncate: half of payload, then end of the TCP stream without close_notify (what
    an attacker injecting a FIN does); the connection is read until the client closes it, so
    the end is a FIN, not a reset."""
    conn.sendall(payload[: len(payload) // 2])
    conn.shutdown(socket.SHUT_WR)  # on an SSLSocket: the TCP socket's, no TLS alert
    try:
        while conn.recv(65536):
            pass
    except OSError:
        pass
    conn.close()


class Handler(socketserver.StreamRequestHandler):
    def send(self, text):
        if ARGS.escapes and text[:3] in ("220", "215", "550"):
            text += ESCAPES
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def norm(self, path):
        """The absolute, normalized form of a path argument (relative to the session's directory)."""
        if not path.startswith("/"):
            path = posixpath.join(self.cwd, path)
        path = posixpath.normpath(path)
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
        return path

    def hostile(self, arg):
        """Misbehaves if the argument names a hostile directory. Returns True if it did."""
        if "endless_dir" in arg:
            self.wfile.write(b"150 ")
            chunk = b"x" * 65536
            try:
                for _ in range(2000):  # 128 MiB at most, then give up
                    self.wfile.write(chunk)
            except OSError:
                pass
            return True
        if "huge_dir" in arg:
            try:
                self.wfile.write(b"550-huge\r\n")
                for i in range(100000):
                    self.wfile.write(b" line %d of a very long reply\r\n" % i)
                self.wfile.write(b"550 end\r\n")
                self.wfile.flush()
            except OSError:
                pass
            return True
        if "silent_dir" in arg:
            time.sleep(60)
            return True
        if "garbage_dir" in arg:
            self.wfile.write(b"hello there, this is not FTP\r\n")
            self.wfile.flush()
            return True
        if ARGS.endless_preliminary and "prelim_dir" in arg:
            self.endless_preliminary()
            return True
        if "close_dir" in arg:
            self.wfile.write(b"150-partial")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            raise ConnectionAbortedError
        return False

    def open_data(self):
        self.close_data()
        self.data_listener = socket.socket()
        self.data_listener.bind(("127.0.0.1", 0))
        self.data_listener.listen(1)
        self.data_listener.settimeout(10)
        return self.data_listener.getsockname()[1]

    def close_data(self):
        listener = getattr(self, "data_listener", None)
        if listener is not None:
            listener.close()
            self.data_listener = None
        self.active_addr = None

    def with_data(self, payload, truncatable=False):
        """Sends payload over the data connection, or receives (and returns) an upload when
        payload is None. The final reply after an upload is the caller's to send. With
        `truncatable` (a RETR), --tls-truncate applies."""
        listener = getattr(self, "data_listener", None)
        if listener is None and getattr(self, "active_addr", None) is None:
            self.send("425 Use PASV first")
            return None
        self.send("150 Opening data connection")
        try:
            conn = self.accept_data(listener)
            conn.settimeout(30)
            if payload is None:
                got = b""
                while True:
                    b = conn.recv(65536)
                    if not b:
                        break
                    got += b
                end_data(conn)
                return got
            if self.protected and ARGS.tls_truncate and truncatable:
                truncate_data(conn, payload)
            else:
                conn.sendall(payload)
                end_data(conn)
        finally:
            self.close_data()
        self.send("226 Done")
        return None

    def accept_data(self, listener):
        """The data connection: accepted (passive), or opened to the PORT/EPRT address (from
        --active-from when given); TLS when PROT P is in force."""
        if self.active_addr is not None:
            host, port = self.active_addr
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            conn = socket.socket(family)
            conn.settimeout(10)
            if ARGS.active_from:
                conn.bind((ARGS.active_from, 0))
            elif family == socket.AF_INET:
                conn.bind(("127.0.0.1", 0))
            conn.connect((host, port))
        else:
            conn, _ = listener.accept()
        if self.protected:
            conn.settimeout(30)
            conn = tls_context().wrap_socket(conn, server_side=True)
        return conn

    def start_tls(self):
        """AUTH TLS: 234 (with --auth-tls-extra, an injected reply line in the same write), then
        the handshake; the control connection is TLS from then on."""
        extra = b"230 Logged in (sent before the TLS handshake)\r\n" if ARGS.auth_tls_extra else b""
        self.wfile.write(b"234 Proceed with negotiation\r\n" + extra)
        self.wfile.flush()
        self.connection = tls_context().wrap_socket(self.connection, server_side=True)
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb")

    def set_active(self, verb, arg):
        """PORT h1,h2,h3,h4,p1,p2 or EPRT |1|ip|port|: the next transfer connects there."""
        self.close_data()
        try:
            if verb == "PORT":
                n = [int(x) for x in arg.split(",")]
                addr = ("%d.%d.%d.%d" % tuple(n[:4]), n[4] * 256 + n[5])
            else:
                _, _, host, port, _ = arg.split(arg[0])
                addr = (host, int(port))
        except (ValueError, IndexError):
            self.send("501 Bad address")
            return
        self.active_addr = addr
        self.send("200 %s command successful" % verb)

    def silent(self):
        """--silent-greeting: say nothing, keep the connection until the client closes it."""
        self.connection.settimeout(600)
        try:
            while self.connection.recv(4096):
                pass
        except OSError:
            pass

    def handle(self):
        self.data_listener = None
        self.active_addr = None
        self.protected = False
        self.rest = 0
        self.rnfr = None
        self.cwd = "/"
        if ARGS.silent_greeting:
            self.silent()
            return
        self.send("220 " + ARGS.greeting)
        try:
            while True:
                line = self.rfile.readline(4096)
                if not line:
                    return
                line = line.decode(errors="replace").rstrip("\r\n")
                log_command(line)
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if ARGS.drop_every and verb not in ("USER", "PASS") and count("n") % ARGS.drop_every == 0:
                    return
                if ARGS.drop_stor and verb == "STOR" and count("stor") % ARGS.drop_stor == 0:
                    return
                if ARGS.slow_stor and verb == "STOR" and count("slow") % ARGS.slow_stor == 0:
                    time.sleep(ARGS.slow_secs)
                if ARGS.drop_login and verb == "PASS" and count("pass") <= ARGS.drop_login:
                    return
                if ARGS.oops_epsv and verb == "EPSV" and count("oops") % ARGS.oops_epsv == 0:
                    self.send("500 OOPS: vsf_sysutil_bind")
                    return
                if self.hostile(arg):
                    continue
                if not self.command(verb, arg):
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self.close_data()

    def entry_line(self, path, name, mlsd):
        """One listing line for path (LOCK held)."""
        is_dir = path in DIRS
        size = 0 if is_dir else len(FILES[path])
        t = mtime_of(path)
        if mlsd:
            return "type=%s;size=%d;modify=%s; %s" % ("dir" if is_dir else "file", size, fmt_mlsd_time(t), name)
        if ARGS.dos:
            stamp = time.strftime("%m-%d-%y  %I:%M%p", time.gmtime(t))
            return "%s  %20s %s" % (stamp, "<DIR>" if is_dir else str(size), name)
        mode = MODES.get(path, 0o755 if is_dir else 0o644)
        bits = "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
        recent = abs(time.time() - t) < 180 * 86400
        stamp = time.strftime("%b %d %H:%M" if recent else "%b %d  %Y", time.gmtime(t))
        return "%s%s 1 u g %d %s %s" % ("d" if is_dir else "-", bits, size, stamp, name)

    def endless_preliminary(self):
        """--endless-preliminary: `150` lines until the client goes away."""
        try:
            while True:
                self.wfile.write(b"150 still working on it\r\n" * 64)
                self.wfile.flush()
        except OSError:
            pass

    def listing(self, path, mlsd):
        """The listing of a directory (or, for LIST, of one file); None when it does not exist."""
        big = generated_listing(path, mlsd)
        if big is not None:
            return big
        with LOCK:
            if path in FILES and not mlsd:
                out = [self.entry_line(path, posixpath.basename(path), False)]
            elif path in DIRS:
                out = [self.entry_line(p, posixpath.basename(p), mlsd) for p in sorted(children(path))]
            else:
                return None
        return ("\r\n".join(out) + ("\r\n" if out else "")).encode()

    def rename(self, src, dst):
        """RNTO: the reply for renaming src to dst (LOCK held)."""
        if src not in FILES and src not in DIRS:
            return "550 No such file or directory"
        if src == dst:
            return "250 Renamed"
        if src == "/" or under(dst, src):
            return "550 Cannot move a directory into itself"
        if parent_of(dst) not in DIRS:
            return "550 No such directory"
        if dst in FILES or dst in DIRS:
            if ARGS.refuse_rename_over_existing:
                return "550 Cannot rename: target exists"
            if src in FILES and dst in DIRS:
                return "550 Is a directory"
            if src in DIRS and dst in FILES:
                return "550 Not a directory"
            if dst in DIRS and children(dst):
                return "550 Directory not empty"
            FILES.pop(dst, None)
            DIRS.discard(dst)
            MTIMES.pop(dst, None)
            MODES.pop(dst, None)
        for table in (FILES, MTIMES, MODES):
            for p in [p for p in table if under(p, src)]:
                table[dst + p[len(src):]] = table.pop(p)
        for p in [p for p in DIRS if under(p, src)]:
            DIRS.discard(p)
            DIRS.add(dst + p[len(src):])
        return "250 Renamed"

    def store(self, verb, path):
        """STOR/APPE (with REST for STOR). False when the session ends here (--lose-stor-reply)."""
        with LOCK:
            bad = None
            if path in DIRS:
                bad = "550 Is a directory"
            elif parent_of(path) not in DIRS:
                bad = "550 No such directory"
        if bad:
            self.close_data()
            self.send(bad)
            return True
        got = self.with_data(None)
        if got is None:
            return True
        lose = ARGS.lose_stor_reply and verb == "STOR" and count("lose") % ARGS.lose_stor_reply == 0
        if lose and ARGS.store_short:
            got = got[:-1]
        if ARGS.flip_stor and verb == "STOR" and got and count("flip") == ARGS.flip_stor:
            # A byte changed on its way (same size): only a digest can tell.
            middle = len(got) // 2
            got = got[:middle] + bytes([got[middle] ^ 0x01]) + got[middle + 1:]
        deferred = self.answer_during_transfer() if ARGS.answer_during_stor else []
        with LOCK:
            old = FILES.get(path, b"")
            if verb == "APPE":
                FILES[path] = old + got
            else:
                FILES[path] = old[: self.rest] + got if self.rest else got
            MTIMES[path] = int(time.time())
        if lose:
            return False
        self.send("226 Stored")
        for verb, arg in deferred:
            if self.command(verb, arg) is False:
                return False
        return True

    def answer_during_transfer(self):
        """--answer-during-stor: the commands sent right behind the data (within 2 s) are
        answered now, before the transfer's reply; EPSV/PASV are returned, to be answered after."""
        readable, _, _ = select.select([self.connection], [], [], 2)
        if not readable:
            return []
        time.sleep(0.05)  # the rest of the client's write
        deferred = []
        for line in self.connection.recv(65536).decode(errors="replace").split("\r\n"):
            if not line:
                continue
            log_command(line)
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb in ("EPSV", "PASV"):
                deferred.append((verb, arg))
            else:
                self.command(verb, arg)
        return deferred

    def command(self, verb, arg):
        # RNTO must follow RNFR at once: any other command forgets the pending rename.
        rnfr, self.rnfr = self.rnfr, None
        if verb == "USER":
            self.send("331 Password please")
        elif verb == "PASS":
            self.send("230 Logged in")
        elif verb == "FEAT":
            mlst = b"" if ARGS.dos else b" MLST type*;size*;modify*;\r\n"
            mlst += (" X-EVIL" + ESCAPES + "\r\n").encode() if ARGS.escapes else b""
            mlst += {"x": b" XSHA256\r\n XMD5\r\n", "hash": b" HASH SHA-256*;MD5\r\n"}.get(ARGS.digests, b"")
            self.wfile.write(b"211-Features:\r\n EPSV\r\n SIZE\r\n MDTM\r\n MFMT\r\n UTF8\r\n" + mlst + b"211 End\r\n")
            self.wfile.flush()
        elif verb in ("OPTS", "TYPE", "NOOP", "MODE", "STRU"):
            self.send("200 OK")
        elif verb == "SYST":
            self.send("215 UNIX Type: L8")
        elif verb == "PWD":
            self.send('257 "%s"' % self.cwd.replace('"', '""'))
        elif verb == "CWD":
            path = self.norm(arg or "/")
            with LOCK:
                ok = path in DIRS
            if ok:
                self.cwd = path
            self.send("250 OK" if ok else "550 No such directory")
        elif verb == "CDUP":
            self.cwd = parent_of(self.cwd)
            self.send("250 OK")
        elif verb == "QUIT":
            self.send("221 Bye")
            return False
        elif verb == "ABOR":
            self.close_data()
            self.send("225 No transfer to abort")
        elif verb == "AUTH" and ARGS.tls_cert and arg.upper() in ("TLS", "SSL"):
            self.start_tls()
        elif verb == "PBSZ" and ARGS.tls_cert:
            self.send("200 PBSZ=0")
        elif verb == "PROT" and ARGS.tls_cert and arg.upper() in ("P", "C"):
            self.protected = arg.upper() == "P"
            self.send("200 Protection level set")
        elif verb in ("PORT", "EPRT"):
            self.set_active(verb, arg)
        elif verb == "EPSV":
            if ARGS.bad_pasv or ARGS.no_epsv:
                self.send("500 EPSV not understood")
            else:
                self.send("229 Entering Extended Passive Mode (|||%d|)" % self.open_data())
        elif verb == "PASV":
            port = self.open_data()
            if ARGS.bad_pasv:
                self.send("227 Entering Passive Mode (999,1,2,3,4,5)")
            elif ARGS.foreign_pasv:
                self.send("227 Entering Passive Mode (10,255,255,1,%d,%d)" % (port >> 8, port & 255))
            else:
                self.send("227 Entering Passive Mode (127,0,0,1,%d,%d)" % (port >> 8, port & 255))
        elif verb == "MLSD" and ARGS.broken_mlsd:
            self.send("500 MLSD not understood")
        elif verb in ("MLSD", "LIST", "NLST"):
            path = arg
            if path.startswith("-a"):
                path = path[2:].lstrip()
            data = self.listing(self.norm(path or "."), verb == "MLSD")
            if data is None:
                self.close_data()
                self.send("550 No such directory")
            else:
                if verb == "NLST":
                    data = b"".join(l.rsplit(b" ", 1)[-1] + b"\r\n" for l in data.splitlines())
                self.with_data(data)
        elif verb == "MLST" and not ARGS.dos:
            path = self.norm(arg or ".")
            with LOCK:
                line = self.entry_line(path, path, True) if (path in FILES or path in DIRS) else None
            if line is None:
                self.send("550 No such file or directory")
            else:
                self.wfile.write(("250-Listing %s\r\n %s\r\n250 End\r\n" % (path, line)).encode())
                self.wfile.flush()
        elif ARGS.digests and verb in ("XSHA256", "HASH"):
            # XSHA256 (as proftpd: the digest alone on the last line) or HASH with SHA-256, the
            # only algorithm OPTS HASH may choose here.
            path = self.norm(arg)
            with LOCK:
                data = FILES.get(path)
            if data is None:
                self.send("550 No such file")
            elif verb == "XSHA256":
                self.wfile.write(("250-Computing SHA256 digest\r\n250 %s\r\n" % hashlib.sha256(data).hexdigest().upper()).encode())
                self.wfile.flush()
            else:
                self.send("213 SHA-256 0-%d %s %s" % (len(data), hashlib.sha256(data).hexdigest(), arg))
        elif verb == "SIZE":
            with LOCK:
                data = FILES.get(self.norm(arg))
            self.send("213 %d" % len(data) if data is not None else "550 No such file")
        elif verb == "MDTM":
            path = self.norm(arg)
            with LOCK:
                t = BASE_MTIME if ARGS.stale_mdtm else mtime_of(path)
                reply = "213 " + fmt_mlsd_time(t) if path in FILES else "550 No such file"
            self.send(reply)
        elif verb == "MFMT":
            stamp, _, rest = arg.partition(" ")
            path = self.norm(rest)
            try:
                t = calendar.timegm(time.strptime(stamp[:14], "%Y%m%d%H%M%S"))
            except ValueError:
                self.send("501 Bad time")
                return True
            with LOCK:
                ok = path in FILES or path in DIRS
                if ok:
                    MTIMES[path] = t
            self.send("213 Modify=%s; %s" % (fmt_mlsd_time(t), path) if ok else "550 No such file or directory")
        elif verb == "SITE":
            sub, _, rest = arg.partition(" ")
            mode, _, target = rest.partition(" ")
            if sub.upper() != "CHMOD":
                self.send("500 Unknown SITE command")
                return True
            path = self.norm(target)
            try:
                bits = int(mode, 8) & 0o7777
            except ValueError:
                self.send("501 Bad mode")
                return True
            with LOCK:
                ok = path in FILES or path in DIRS
                if ok:
                    MODES[path] = bits
            self.send("200 SITE CHMOD command ok" if ok else "550 No such file or directory")
        elif verb == "REST":
            try:
                self.rest = int(arg)
                self.send("350 Restarting at %d" % self.rest)
            except ValueError:
                self.send("501 Bad offset")
        elif verb == "RETR":
            path = self.norm(arg)
            with LOCK:
                data = FILES.get(path)
            if data is None:
                self.close_data()
                self.send("550 No such file")
            else:
                self.with_data(data[self.rest :], truncatable=True)
            self.rest = 0
        elif verb in ("STOR", "APPE"):
            kept = self.store(verb, self.norm(arg))
            self.rest = 0
            if not kept:
                return False
        elif verb == "DELE":
            path = self.norm(arg)
            with LOCK:
                if path in DIRS:
                    reply = "550 Is a directory"
                elif FILES.pop(path, None) is not None:
                    MTIMES.pop(path, None)
                    MODES.pop(path, None)
                    reply = "250 Deleted"
                else:
                    reply = "550 No such file"
            self.send(reply)
        elif verb == "MKD":
            path = self.norm(arg)
            with LOCK:
                if path in DIRS or path in FILES:
                    reply = "550 File exists"
                elif parent_of(path) not in DIRS:
                    reply = "550 No such directory"
                else:
                    DIRS.add(path)
                    MTIMES[path] = int(time.time())
                    reply = '257 "%s" created' % path.replace('"', '""')
            self.send(reply)
        elif verb == "RMD":
            path = self.norm(arg)
            with LOCK:
                if path not in DIRS or path == "/":
                    reply = "550 No such directory"
                elif children(path):
                    reply = "550 Directory not empty"
                else:
                    DIRS.discard(path)
                    MTIMES.pop(path, None)
                    MODES.pop(path, None)
                    reply = "250 Removed"
            self.send(reply)
        elif verb == "RNFR":
            path = self.norm(arg)
            with LOCK:
                ok = path in FILES or path in DIRS
            self.rnfr = path if ok else None
            self.send("350 Ready for RNTO" if ok else "550 No such file or directory")
        elif verb == "RNTO":
            if rnfr is None:
                self.send("503 Bad sequence of commands")
            else:
                with LOCK:
                    reply = self.rename(rnfr, self.norm(arg))
                self.send(reply)
        else:
            self.send("502 Not implemented")
        return True


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bad-pasv", action="store_true")
    p.add_argument("--foreign-pasv", action="store_true")
    p.add_argument("--no-epsv", action="store_true")
    p.add_argument("--oops-epsv", type=int, default=0)
    p.add_argument("--drop-every", type=int, default=0)
    p.add_argument("--drop-stor", type=int, default=0)
    p.add_argument("--lose-stor-reply", type=int, default=0)
    p.add_argument("--store-short", action="store_true")
    p.add_argument("--digests", choices=["x", "hash"], help="offer SHA-256 digests by XSHA256 or by HASH")
    p.add_argument("--flip-stor", type=int, default=0, help="flip a byte of the Nth STOR's data")
    p.add_argument("--stale-mdtm", action="store_true")
    p.add_argument("--slow-stor", type=int, default=0)
    p.add_argument("--slow-secs", type=float, default=0)
    p.add_argument("--greeting", default="fake server ready")
    p.add_argument("--drop-login", type=int, default=0)
    p.add_argument("--silent-greeting", action="store_true")
    p.add_argument("--broken-mlsd", action="store_true")
    p.add_argument("--dos", action="store_true")
    p.add_argument("--refuse-rename-over-existing", action="store_true")
    p.add_argument("--log-commands", metavar="FILE")
    p.add_argument("--active-from", metavar="IP")
    p.add_argument("--tls-cert", metavar="FILE")
    p.add_argument("--tls-key", metavar="FILE")
    p.add_argument("--tls-truncate", action="store_true")
    p.add_argument("--auth-tls-extra", action="store_true")
    p.add_argument("--endless-preliminary", action="store_true")
    p.add_argument("--many-entries", type=int, default=0)
    p.add_argument("--fat-listing", type=int, default=0)
    p.add_argument("--escapes", action="store_true")
    p.add_argument("--answer-during-stor", action="store_true")
    ARGS = p.parse_args()
    if ARGS.many_entries:
        DIRS.add("/many_dir")
    if ARGS.fat_listing:
        DIRS.add("/fat_dir")
    with Server(("127.0.0.1", ARGS.port), Handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
