"""The imperative shell: Kopf handlers, the Kubernetes client, the status writer, logs, metrics."""
