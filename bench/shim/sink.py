"""A stand-in collector for the shim benchmarks: a Unix socket that accepts
every connection and reads and discards what arrives, so the shim really
sends (its sender thread's work counts) without a collector's cost."""
import os
import socket
import tempfile
import threading


def start_discarding_sink(prefix):
    """Listens on a new socket in a new temporary folder; returns its path."""
    path = os.path.join(tempfile.mkdtemp(prefix=prefix), "hw.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)

    def drain(conn):
        while conn.recv(1 << 20):
            pass

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return path
