"""A small scripted FTP server for the tests, only to provoke what real servers won't do.

It serves an in-memory tree (a file hello.txt and a few directories) well enough to be mounted,
and misbehaves on purpose when a command's argument names one of these directories:
  endless_dir   the reply is one endless line (no CR/LF ever)
  huge_dir      the reply is a multi-line reply of 100 000 lines
  silent_dir    no reply at all (the connection stays open)
  garbage_dir   a reply without a code
  close_dir     half a reply, then the connection is closed
Flags: --bad-pasv (EPSV refused, PASV answers nonsense), --foreign-pasv (PASV names another
host: the client must ignore it), --drop-every N (the control connection is closed, without a
reply, at every Nth command other than USER and PASS, counted over all connections),
--broken-mlsd (MLST advertised, MLSD answers 500), --dos (no MLST; LIST in DOS/IIS style).
"""
import argparse
import socket
import socketserver
import threading
import time

FILES = {"/hello.txt": b"hello world\n"}
DIRS = {"/", "/endless_dir", "/huge_dir", "/silent_dir", "/garbage_dir", "/close_dir", "/normal_dir"}
LOCK = threading.Lock()
COUNTER = {"n": 0}
ARGS = None


def norm(path):
    if not path.startswith("/"):
        path = "/" + path
    return path.rstrip("/") or "/"


class Handler(socketserver.StreamRequestHandler):
    def send(self, text):
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

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
        if "close_dir" in arg:
            self.wfile.write(b"150-partial")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            raise ConnectionAbortedError
        return False

    def open_data(self):
        self.data_listener = socket.socket()
        self.data_listener.bind(("127.0.0.1", 0))
        self.data_listener.listen(1)
        self.data_listener.settimeout(10)
        return self.data_listener.getsockname()[1]

    def with_data(self, payload):
        listener = getattr(self, "data_listener", None)
        if listener is None:
            self.send("425 Use PASV first")
            return
        self.send("150 Opening data connection")
        try:
            conn, _ = listener.accept()
            if payload is None:
                got = b""
                while True:
                    b = conn.recv(65536)
                    if not b:
                        break
                    got += b
                conn.close()
                return got
            conn.sendall(payload)
            conn.close()
        finally:
            listener.close()
            self.data_listener = None
        self.send("226 Done")

    def handle(self):
        self.data_listener = None
        self.rest = 0
        self.rnfr = None
        self.send("220 fake server ready")
        try:
            while True:
                line = self.rfile.readline(4096)
                if not line:
                    return
                line = line.decode(errors="replace").rstrip("\r\n")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if ARGS.drop_every and verb not in ("USER", "PASS"):
                    with LOCK:
                        COUNTER["n"] += 1
                        n = COUNTER["n"]
                    if n % ARGS.drop_every == 0:
                        return
                if self.hostile(arg):
                    continue
                if not self.command(verb, arg):
                    return
        except (ConnectionError, OSError):
            return

    def listing(self, path, mlsd):
        entries = []
        prefix = "" if path == "/" else path
        for d in sorted(DIRS):
            if d != "/" and d.rsplit("/", 1)[0] == prefix:
                entries.append((d.rsplit("/", 1)[1], True, 0))
        for f, data in sorted(FILES.items()):
            if f.rsplit("/", 1)[0] == prefix:
                entries.append((f.rsplit("/", 1)[1], False, len(data)))
        out = []
        for name, is_dir, size in entries:
            if mlsd:
                out.append("type=%s;size=%d;modify=20240101000000; %s" % ("dir" if is_dir else "file", size, name))
            elif ARGS.dos:
                out.append("01-31-24  02:15PM  %20s %s" % ("<DIR>" if is_dir else str(size), name))
            else:
                out.append("%s 1 u g %d Jan 01 2024 %s" % ("drwxr-xr-x" if is_dir else "-rw-r--r--", size, name))
        return ("\r\n".join(out) + ("\r\n" if out else "")).encode()

    def command(self, verb, arg):
        if verb == "USER":
            self.send("331 Password please")
        elif verb == "PASS":
            self.send("230 Logged in")
        elif verb == "FEAT":
            mlst = b"" if ARGS.dos else b" MLST type*;size*;modify*;\r\n"
            self.wfile.write(b"211-Features:\r\n EPSV\r\n SIZE\r\n MDTM\r\n UTF8\r\n" + mlst + b"211 End\r\n")
            self.wfile.flush()
        elif verb in ("OPTS", "TYPE", "NOOP", "MODE", "STRU"):
            self.send("200 OK")
        elif verb == "SYST":
            self.send("215 UNIX Type: L8")
        elif verb == "PWD":
            self.send('257 "/"')
        elif verb == "CWD":
            self.send("250 OK" if norm(arg) in DIRS else "550 No such directory")
        elif verb == "QUIT":
            self.send("221 Bye")
            return False
        elif verb == "EPSV":
            if ARGS.bad_pasv:
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
        elif verb in ("MLSD", "LIST"):
            path = arg
            if path.startswith("-a "):
                path = path[3:]
            path = norm(path or "/")
            if path not in DIRS:
                self.send("550 No such directory")
            else:
                self.with_data(self.listing(path, verb == "MLSD"))
        elif verb == "SIZE":
            data = FILES.get(norm(arg))
            self.send("213 %d" % len(data) if data is not None else "550 No such file")
        elif verb == "MDTM":
            self.send("213 20240101000000" if norm(arg) in FILES else "550 No such file")
        elif verb == "REST":
            self.rest = int(arg)
            self.send("350 Restarting")
        elif verb == "RETR":
            data = FILES.get(norm(arg))
            if data is None:
                self.send("550 No such file")
            else:
                self.with_data(data[self.rest:])
            self.rest = 0
        elif verb in ("STOR", "APPE"):
            got = self.with_data(None)
            with LOCK:
                old = FILES.get(norm(arg), b"") if verb == "APPE" else b""
                FILES[norm(arg)] = old + (got or b"")
            self.send("226 Stored")
        elif verb == "DELE":
            with LOCK:
                ok = FILES.pop(norm(arg), None) is not None
            self.send("250 Deleted" if ok else "550 No such file")
        elif verb == "MKD":
            with LOCK:
                DIRS.add(norm(arg))
            self.send('257 "%s" created' % norm(arg))
        elif verb == "RMD":
            with LOCK:
                DIRS.discard(norm(arg))
            self.send("250 Removed")
        elif verb == "RNFR":
            self.rnfr = norm(arg)
            self.send("350 Ready")
        elif verb == "RNTO":
            with LOCK:
                if self.rnfr in FILES:
                    FILES[norm(arg)] = FILES.pop(self.rnfr)
            self.send("250 Renamed")
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
    p.add_argument("--drop-every", type=int, default=0)
    p.add_argument("--broken-mlsd", action="store_true")
    p.add_argument("--dos", action="store_true")
    ARGS = p.parse_args()
    with Server(("127.0.0.1", ARGS.port), Handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
