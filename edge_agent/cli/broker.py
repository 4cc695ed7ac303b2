"""`edge-agent broker`: host the fabric's broker on this node."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import tempfile
from pathlib import Path

import click

from broker.limits import DEFAULT_MESSAGE_SIZE_LIMIT, ConnectionLimits
from edge_agent.cli.common import run_async
from shared.errors import ConfigError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=1883, show_default=True, type=int, help="TCP port (0 picks a free one).")
@click.option("--password-file", type=click.Path(path_type=Path), help="Password file (required off loopback).")
@click.option("--acl-file", type=click.Path(path_type=Path), help="Topic ACL (YAML for amqtt, mosquitto format).")
@click.option("--allow-anonymous", is_flag=True, help="Allow clients without credentials on a non-loopback bind.")
@click.option("--tls-cert", type=click.Path(path_type=Path), help="Serve MQTT over TLS with this certificate (PEM).")
@click.option("--tls-key", type=click.Path(path_type=Path), help="The certificate's private key (with --tls-cert).")
@click.option("--tls-ca", type=click.Path(path_type=Path), help="Require client certificates signed by this CA.")
@click.option(
    "--message-size-limit",
    default=DEFAULT_MESSAGE_SIZE_LIMIT,
    show_default=True,
    type=click.IntRange(min=1024),
    help="Largest message payload relayed (bytes); a larger packet closes the sender's connection.",
)
@click.option(
    "--connect-timeout",
    default=ConnectionLimits.connect_timeout_s,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a new connection has to send its CONNECT (embedded broker).",
)
@click.option(
    "--max-unauthenticated",
    default=ConnectionLimits.unauthenticated_per_address,
    show_default=True,
    type=click.IntRange(min=1),
    help="Connections one source address may hold before authenticating (embedded broker).",
)
@click.option("--mosquitto", "use_mosquitto", is_flag=True, help="Run mosquitto with a rendered config instead.")
@click.option("--render-only", type=click.Path(path_type=Path), help="With --mosquitto: write the config and exit.")
def broker(
    host: str,
    port: int,
    password_file: Path | None,
    acl_file: Path | None,
    allow_anonymous: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_ca: Path | None,
    message_size_limit: int,
    connect_timeout: float,
    max_unauthenticated: int,
    use_mosquitto: bool,
    render_only: Path | None,
) -> None:
    """Host an MQTT broker: embedded amqtt by default, mosquitto with --mosquitto.

    Anonymous clients are accepted only on a loopback bind; any other bind needs --password-file unless
    --allow-anonymous is given. With --tls-cert/--tls-key the embedded broker accepts only TLS connections (and
    with --tls-ca only clients with a certificate from that CA). Both brokers refuse messages above
    --message-size-limit; the embedded one also closes connections that send no CONNECT within --connect-timeout
    and caps the connections one address holds before authenticating. SIGINT/SIGTERM stop the broker cleanly.
    """
    if use_mosquitto:
        if tls_cert or tls_key or tls_ca:
            raise click.UsageError("--tls-* are for the embedded broker; mosquitto takes TLS from its rendered config")
        _run_mosquitto(host, port, password_file, acl_file, allow_anonymous, render_only, message_size_limit)
        return
    from broker.embedded import BrokerTLS, EmbeddedBrokerConfig, TopicACL, serve_until_signalled

    if (tls_cert is None) != (tls_key is None) or (tls_ca is not None and tls_cert is None):
        raise click.UsageError("--tls-cert and --tls-key go together (and --tls-ca needs them)")
    tls = BrokerTLS(tls_cert, tls_key, tls_ca) if tls_cert is not None and tls_key is not None else None
    acl = TopicACL.load(acl_file) if acl_file else None
    limits = ConnectionLimits(message_size_limit, connect_timeout, max_unauthenticated)
    config = EmbeddedBrokerConfig(host, port, password_file, acl, allow_anonymous, tls, limits)
    run_async(serve_until_signalled(config))


def _run_mosquitto(
    host: str,
    port: int,
    password_file: Path | None,
    acl_file: Path | None,
    allow_anonymous: bool,
    render_only: Path | None,
    message_size_limit: int,
) -> None:
    from broker.mosquitto import (
        MosquittoConfig,
        file_owner,
        find_mosquitto,
        render_config,
        start_mosquitto,
        stop_process,
    )

    # As root mosquitto drops to the user "mosquitto", which cannot open a rendered (0600) password file: run it
    # as the owner of that file instead.
    user = file_owner(password_file) if password_file and password_file.exists() and os.geteuid() == 0 else None
    try:
        config = MosquittoConfig(host, port, password_file, acl_file, allow_anonymous, user=user)
        text = render_config(dataclasses.replace(config, message_size_limit=message_size_limit))
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    if render_only is not None:
        render_only.write_text(text)
        click.echo(f"wrote {render_only}")
        return
    if find_mosquitto() is None:
        from broker.mosquitto import INSTALL_HINT

        raise click.ClickException(INSTALL_HINT)
    config_file = Path(tempfile.mkdtemp(prefix="symphony-mosquitto-")) / "mosquitto.conf"
    config_file.write_text(text)
    process = start_mosquitto(config_file)
    click.echo(f"mosquitto (pid {process.pid}) on {host}:{port}, config {config_file} (Ctrl+C to stop)")
    signal.signal(signal.SIGTERM, lambda *_: stop_process(process))
    try:
        code = process.wait()
    except KeyboardInterrupt:
        code = stop_process(process)
    sys.exit(0 if code in (0, -signal.SIGTERM) else code)
