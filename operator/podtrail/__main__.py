"""`python -m podtrail` / `podtrail`: run the operator against a kubeconfig or in-cluster."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence

import kopf

from podtrail.shell.handlers import build_registry
from podtrail.shell.leader import ElectionConfig, default_identity
from podtrail.shell.logs import configure_logging
from podtrail.shell.metrics import Metrics
from podtrail.shell.settings import parse_settings


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, set up logging, and run Kopf until SIGTERM/SIGINT."""
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # Kopf's own login reads it
    configure_logging(settings.log_format, settings.log_level)
    election = (
        ElectionConfig(
            identity=default_identity(),
            lease_name=settings.lease_name,
            lease_namespace=settings.lease_namespace,
        )
        if settings.leader_election
        else None
    )
    metrics = Metrics(namespace_label=settings.metrics_namespace_label)
    registry = build_registry(settings, metrics, election)
    kopf.run(
        registry=registry,
        standalone=True,
        # Kopf's default identity asks the OS for a user name, which a bare UID does not have.
        identity=f"podtrail@{socket.gethostname()}",  # type: ignore[arg-type]  # a str NewType
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=(
            f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
        ),
    )


if __name__ == "__main__":
    main()
