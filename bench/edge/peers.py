"""The peers' configurations: nginx with proxy_cache and Varnish, each a cache in front
of the benchmark origin on its own loopback address, started in the foreground."""

from __future__ import annotations

import os
from pathlib import Path


def nginx_conf(
    directory: Path,
    listen: str,
    port: int,
    origin: str,
    workers: int,
    tls: tuple[Path, Path, int] | None = None,
    sndbuf: int = 0,
) -> Path:
    """nginx.conf for `workers` worker processes (reuseport), a proxy_cache zone in
    `directory`, no access log, with `tls` (certificate chain, key, port) an HTTPS listener
    too (TLS 1.2/1.3, OpenSSL's defaults as akacdn's edge has them), sendfile without tcp_nopush (with it, 100 KiB hits
    stalled ~40 ms each on loopback: 1.4k requests/s at 0.1 core). proxy_cache_lock is on: concurrent misses for one key
    wait for the first fetch (nginx's own request coalescing, off by default). `sndbuf`:
    the listeners' `sndbuf=` (the connections' SO_SNDBUF; 0: the kernel sizes it)."""
    directory.mkdir(parents=True, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    tls_listen = ""
    buf = f" sndbuf={sndbuf}" if sndbuf else ""
    if tls is not None:
        cert, key, tls_port = tls
        tls_listen = (
            f"        listen {listen}:{tls_port} ssl reuseport backlog=4096{buf};\n"
            f"        ssl_certificate {cert};\n        ssl_certificate_key {key};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        )
    conf.write_text(
        f"""# written by akacdn bench/edge
{user}worker_processes {workers};
daemon off;
master_process on;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{
    worker_connections 4096;
    multi_accept off;
}}
http {{
    access_log off;
    sendfile on;
    # tcp_nopush (TCP_CORK) with sendfile stalled 100 KiB hits ~40 ms each on loopback here
    tcp_nopush off;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy_temp;
    fastcgi_temp_path {directory}/fastcgi_temp;
    uwsgi_temp_path {directory}/uwsgi_temp;
    scgi_temp_path {directory}/scgi_temp;
    proxy_cache_path {directory}/cache levels=1:2 keys_zone=bench:16m max_size=256m inactive=1h use_temp_path=off;
    upstream origin {{
        server {origin};
        keepalive 32;
    }}
    server {{
        listen {listen}:{port} reuseport backlog=4096{buf};
{tls_listen}        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_cache bench;
            proxy_cache_key $host$request_uri;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""
    )
    return conf


def nginx_argv(conf: Path) -> list[str]:
    return ["nginx", "-p", str(conf.parent), "-c", str(conf), "-e", str(conf.parent / "error.log")]


def varnish_vcl(directory: Path, origin_addr: str, origin_port: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    vcl = directory / "bench.vcl"
    vcl.write_text(
        f"""vcl 4.1;
# written by akacdn bench/edge: the origin as the only backend; Varnish's built-in VCL
# caches by the origin's Cache-Control and coalesces concurrent misses (waiting list)
backend origin {{
    .host = "{origin_addr}";
    .port = "{origin_port}";
}}

sub vcl_deliver {{
    if (obj.hits > 0) {{
        set resp.http.X-Cache = "HIT";
    }} else {{
        set resp.http.X-Cache = "MISS";
    }}
}}
"""
    )
    return vcl


def varnish_argv(directory: Path, listen: str, port: int, vcl: Path, workers: int) -> list[str]:
    """varnishd in the foreground (-F) with its own working dir (-n: its own shm log, no
    contention with any other varnishd), malloc storage, one thread pool per core of the
    round (`workers`), no jail (runs as the invoking user, reading the temp dir)."""
    return [
        "varnishd",
        "-F",
        "-n",
        str(directory / "work"),
        "-a",
        f"{listen}:{port}",
        "-f",
        str(vcl),
        "-s",
        "malloc,256m",
        "-j",
        "none",
        "-p",
        f"thread_pools={workers}",
        "-p",
        "thread_pool_min=50",
        "-p",
        "thread_pool_max=1000",
    ]
