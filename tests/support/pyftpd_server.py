"""A pyftpdlib server for the ftpfs test suite: one user with a password, a root directory,
a passive port range, listening on the given address until killed."""
import argparse
import logging

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--pasv", required=True, help="LO-HI passive port range")
    p.add_argument("--max-cons", type=int, default=64)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--certfile", help="serve FTPS (explicit, AUTH TLS required) with this certificate")
    p.add_argument("--keyfile")
    p.add_argument("--encoding", default="utf8", help="character set of names on the wire")
    a = p.parse_args()

    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING)
    auth = DummyAuthorizer()
    # All permissions, including MFMT (T) and SITE CHMOD (M).
    auth.add_user(a.user, a.password, a.root, perm="elradfmwMT")
    handler = FTPHandler
    if a.certfile:
        from pyftpdlib.handlers import TLS_FTPHandler

        handler = TLS_FTPHandler
        handler.certfile = a.certfile
        handler.keyfile = a.keyfile
        handler.tls_control_required = True
        handler.tls_data_required = True
    handler.authorizer = auth
    handler.encoding = a.encoding
    lo, hi = (int(x) for x in a.pasv.split("-"))
    handler.passive_ports = range(lo, hi + 1)
    handler.permit_foreign_addresses = False
    handler.use_sendfile = True
    server = FTPServer((a.host, a.port), handler)
    server.max_cons = a.max_cons
    server.max_cons_per_ip = a.max_cons
    server.serve_forever()


if __name__ == "__main__":
    main()
