#!/usr/bin/env python3
"""The floor of an upload over loopback: an HTTP/1.1 server that reads each
request body into one reused buffer and throws it away, answering 204. It
prints its port on the first line. Used by bench/files.sh; asserts nothing."""
import socket
import sys

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
print(srv.getsockname()[1], flush=True)
buf = bytearray(1 << 20)
view = memoryview(buf)
while True:
    conn, _ = srv.accept()
    with conn:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
        header, _, rest = head.partition(b"\r\n\r\n")
        length = 0
        for line in header.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if b"100-continue" in header.lower():
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        left = length - len(rest)
        while left > 0:
            n = conn.recv_into(view, min(left, len(buf)))
            if n == 0:
                break
            left -= n
        conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        sys.stdout.flush()
