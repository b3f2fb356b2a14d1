"""The load balancer setup of docs/scaling.md, run: the nginx example from that page (only its
addresses changed), unprivileged (its own prefix, pid, temp and log paths, a free port), in
front of two ``alertpipe run`` processes on one PostgreSQL schema. POSTs through nginx land on
both instances, every order is delivered, the client's address reaches the engine, a
``Prefer: wait`` answer comes back through the proxy, and the dashboard is served through it.

nginx comes from ``make nginx`` (a prerequisite of ``make test``); without it this test is
skipped, saying so, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from e2e_support import ON_CALL, REPO, Stack, stack

from alertpipe import jsoncodec
from cluster_support import Instance, free_port, start_instances
from pg_support import Schema, pg_schema, pg_url

pytestmark = pytest.mark.e2e
__all__ = ["pg_schema", "pg_url"]
DOC = REPO / "docs" / "scaling.md"
CLIENT_ADDRESS = "127.0.0.2"  # a loopback address of its own, so the proxy's is not mistaken
UPSTREAM = re.compile(r"^([ \t]*server[ \t]+)[\w.-]+:\d+", re.M)  # an upstream server


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        reason = "nginx is not installed (`make nginx`, or apt-get install -y nginx)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs the nginx test: {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def documented_config() -> str:
    """The ```nginx block of docs/scaling.md."""
    m = re.search(r"```nginx\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert m, f"no nginx example in {DOC}"
    return m.group(1)


def local_config(doc: str, instances: list[Instance], port: int) -> str:
    """The documented config with the instances' addresses and a free local port."""
    ports = iter(i.port for i in instances)
    servers = UPSTREAM.sub(lambda m: f"{m.group(1)}127.0.0.1:{next(ports)}", doc)
    assert next(ports, None) is None, "the example should list one server per instance"
    listen, n = re.subn(r"^([ \t]*)listen[ \t]+80;", rf"\g<1>listen 127.0.0.1:{port};", servers,
                        flags=re.M)
    assert n == 1
    return listen


class Nginx:
    """nginx in the foreground under ``prefix``; ready once it wrote its pid file (it binds its
    sockets before that)."""

    def __init__(self, binary: str, prefix: Path, site: str, port: int) -> None:
        self.prefix, self.port = prefix, port
        self.url = f"http://127.0.0.1:{port}"
        self.access_log = prefix / "access.log"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (prefix / d).mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format upstreams '$request_method $uri $status $upstream_addr';
    access_log {self.access_log} upstreams;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{site}
}}
""", encoding="utf-8")
        argv = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"),
                "-g", "daemon off;"]
        checked = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        pid = prefix / "nginx.pid"
        deadline = time.monotonic() + 15
        while not pid.exists():  # bounded wait for the file nginx writes once it listens
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nginx did not start: {self.error_log()}")
            time.sleep(0.02)

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def upstreams(self, method: str, path: str) -> Counter[str]:
        """Which instance answered each logged request of ``method path``."""
        out: Counter[str] = Counter()
        for line in self.access_log.read_text().splitlines():
            parts = line.split()
            if parts[:2] == [method, path]:
                out[parts[3]] += 1
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: nginx's fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def st(tmp_path: Path) -> Iterator[Stack]:
    with stack(tmp_path) as s:
        yield s


def test_two_instances_behind_the_documented_nginx(st: Stack, pg_schema: Schema,
                                                   tmp_path: Path) -> None:
    binary = nginx_binary()
    engines = start_instances(["lb-a", "lb-b"], REPO / "alertpipe.yaml", st.env, pg_schema.url)
    proxy = None
    try:
        port = free_port()
        proxy = Nginx(binary, tmp_path / "nginx", local_config(documented_config(), engines,
                                                               port), port)
        orders = [{"order_id": f"LB-{i:03d}", "amount": "450.00" if i % 8 == 0 else "15.00",
                   "customer_name": "Ada L."} for i in range(40)]
        transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
        with httpx.Client(transport=transport, base_url=proxy.url, timeout=30) as client:
            answers = [client.post("/orders", json=o) for o in orders]
            assert [a.status_code for a in answers] == [202] * len(orders), answers[-1].text
            waited = client.post("/orders", json={"order_id": "LB-WAIT", "amount": "10"},
                                 headers={"Prefer": "wait=20"})
            login = client.get("/ui/login")
            ready = client.get("/readyz")
        # a client waiting through the proxy gets the outcome, whichever instance sent it
        assert waited.status_code == 200 and waited.json()["status"] == "delivered", waited.text
        assert login.status_code == 200 and "<form" in login.text
        assert ready.status_code == 200 and ready.json()["instance"] in {"lb-a", "lb-b"}

        ids = {o["order_id"] for o in orders} | {"LB-WAIT"}
        high = sum(1 for o in orders if o["amount"] == "450.00")
        try:  # woken by the emulator at each row and text it receives
            st.emu.state.wait_until(st.arrived(ids, high * len(ON_CALL)), timeout=60)
        except TimeoutError:
            pass  # the assertions below say what is missing
        rows = Counter(str(r[2]) for r in st.rows())
        assert set(rows) == ids and max(rows.values()) == 1, rows
        assert len(st.sms()) == high * len(ON_CALL)

        # both instances took POSTs, round-robin
        answered = proxy.upstreams("POST", "/orders")
        assert set(answered) == {f"127.0.0.1:{e.port}" for e in engines}, answered
        assert min(answered.values()) >= len(orders) // 3, answered
        # the client's own address, passed by nginx (X-Forwarded-For), is what the engine kept
        with psycopg.connect(pg_schema.dsn, autocommit=True) as conn:
            metas = [jsoncodec.loads(str(m)) for (m,) in conn.execute("SELECT meta FROM messages")]
        assert {m.get("remote_addr") for m in metas} == {CLIENT_ADDRESS}
    finally:
        if proxy is not None:
            proxy.stop()
        for e in engines:
            e.kill()
