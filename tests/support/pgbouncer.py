"""A real pgbouncer (Debian's package) in transaction mode in front of a test database."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.support import free_port, stop_process, unavailable, wait_for

# The user the embedded PostgreSQL runs as when the tests run as root; pgbouncer refuses to run as root
# and must reach the server's socket directory, so it runs as that user too.
EMBEDDED_USER = "embedded_postgres"


@contextmanager
def pgbouncer(database_url: str) -> Iterator[str]:
    """Yield a URL for the same database through pgbouncer (pool_mode transaction, auth_type any)."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if binary is None:
        unavailable("pgbouncer is not installed (bash scripts/system-deps.sh installs Debian's package)")
    server = conninfo_to_dict(database_url)
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="phoenix-pgbouncer-"))
    work.chmod(0o755)
    (work / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.get('host') or '127.0.0.1'} port={server.get('port') or 5432} "
        f"user={server.get('user') or 'postgres'}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 8\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {work}/pgbouncer.log\n"
    )
    command = [binary, str(work / "pgbouncer.ini")]
    if os.geteuid() == 0:
        user = pwd.getpwnam(EMBEDDED_USER)
        os.chown(work, user.pw_uid, user.pw_gid)
        command = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *command]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"postgresql://{server.get('user') or 'postgres'}@127.0.0.1:{port}/{server['dbname']}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"pgbouncer exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with psycopg.connect(url, connect_timeout=2, prepare_threshold=None) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    try:
        wait_for(answers, timeout=30, what="pgbouncer to accept connections")
        yield url
    finally:
        stop_process(proc)
        shutil.rmtree(work, ignore_errors=True)
