"""A small multi-host deployment inside network namespaces, for fault tests across machines.

Each host is a network namespace with one veth link to a bridge that lives in a "switch" namespace;
hosts get loopback-range addresses (127.77.0.0/16, ``route_localnet`` on), so no traffic ever leaves
this machine. Cutting a host's link is ``ip link set DEV down`` on the switch side: the host keeps
running but can reach nobody, as when a machine drops off the network.

```python
with Cluster.create("t1") as net:
    db = net.host("db", 2)
    net.spawn(db, ["postgres", ...], user="postgres")
    net.cut(db); net.restore(db)
```

Only for tests; needs root and ``ip netns``. Every namespace, link and process it made is removed
by ``close()``, even after a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "127.77.0"


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    if shutil.which("ip") is None:
        return "needs iproute2"
    probe = f"srtprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    command = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    subprocess.run(command, check=True, capture_output=True)


@dataclass
class Host:
    name: str
    ns: str
    address: str
    switch_dev: str
    processes: list[subprocess.Popen] = field(default_factory=list)


@dataclass
class Cluster:
    tag: str
    switch: str
    hosts: dict[str, Host] = field(default_factory=dict)

    @classmethod
    @contextlib.contextmanager
    def create(cls, tag: str):
        net = cls(tag=tag, switch=f"srt{tag}sw")
        try:
            _ip("ip", "netns", "add", net.switch)
            _ip("ip", "link", "add", "br0", "type", "bridge", ns=net.switch)
            _ip("ip", "link", "set", "br0", "up", ns=net.switch)
            yield net
        finally:
            net.close()

    def host(self, name: str, last_octet: int) -> Host:
        ns = f"srt{self.tag}{name}"
        inner, outer = f"h{self.tag}{name}"[:15], f"s{self.tag}{name}"[:15]
        _ip("ip", "netns", "add", ns)
        _ip("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        _ip("ip", "link", "set", inner, "netns", ns)
        _ip("ip", "link", "set", outer, "netns", self.switch)
        _ip("ip", "link", "set", outer, "master", "br0", ns=self.switch)
        _ip("ip", "link", "set", outer, "up", ns=self.switch)
        address = f"{SUBNET}.{last_octet}"
        # 127/8 on a real interface is "martian" unless route_localnet is on.
        for key in ("all", inner):
            _ip("sysctl", "-qw", f"net.ipv4.conf.{key}.route_localnet=1", ns=ns)
        _ip("ip", "addr", "add", f"{address}/16", "dev", inner, ns=ns)
        _ip("ip", "link", "set", inner, "up", ns=ns)
        _ip("ip", "link", "set", "lo", "up", ns=ns)
        host = Host(name, ns, address, outer)
        self.hosts[name] = host
        return host

    def spawn(self, host: Host, command: list[str], *, env: dict | None = None, user: str | None = None,
              log: Path | None = None, cwd: str | None = None) -> subprocess.Popen:
        prefix = ["ip", "netns", "exec", host.ns]
        if user:
            prefix += ["runuser", "-u", user, "--"]
        out = open(log, "ab") if log else subprocess.DEVNULL
        process = subprocess.Popen(prefix + command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                   start_new_session=True)
        host.processes.append(process)
        return process

    def run(self, host: Host, command: list[str], *, env: dict | None = None, timeout: float = 600,
            cwd: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", host.ns, *command], env=env, capture_output=True,
                              text=True, timeout=timeout, cwd=cwd)

    def cut(self, host: Host) -> None:
        _ip("ip", "link", "set", host.switch_dev, "down", ns=self.switch)

    def restore(self, host: Host) -> None:
        _ip("ip", "link", "set", host.switch_dev, "up", ns=self.switch)

    def kill(self, host: Host) -> None:
        """kill -9 of every process this host runs: the machine is gone."""
        for process in host.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for process in host.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        host.processes.clear()

    def close(self) -> None:
        for host in self.hosts.values():
            for process in host.processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            for process in host.processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.1, deadline - time.monotonic()))
            self.kill(host)
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", host.ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.switch], capture_output=True)
        self.hosts.clear()
