"""The floor: a bare kubernetes_asyncio list + watch of every pod, as plain JSON dicts.

Run as its own process (`python -m bench.rawwatch --kubeconfig K --log FILE`) so its CPU and
memory are measured apart. It keeps the latest object of every pod (what any consumer that
answers questions about pods must hold) and writes one line per watch event to FILE:
`<type> <namespace>/<name> <resourceVersion> <monotonic seconds>`, which the harness reads to
time it against the writes that caused each change (first line: `SYNCED <pods> <CPU seconds of
the initial list> <monotonic seconds>`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from typing import Any

from kubernetes_asyncio import client, config


async def _list(core: client.CoreV1Api, store: dict[str, Any]) -> str:
    store.clear()
    token = None
    while True:
        response = await core.list_pod_for_all_namespaces(
            limit=500, _continue=token, _preload_content=False
        )
        page = json.loads(await response.read())
        for pod in page.get("items") or []:
            store[pod["metadata"]["uid"]] = pod
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return str(page["metadata"]["resourceVersion"])


async def run(kubeconfig: str, log_path: str) -> None:
    """List every pod, then watch them until cancelled, logging each event."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    api = client.ApiClient(configuration)
    core = client.CoreV1Api(api)
    store: dict[str, Any] = {}
    with open(log_path, "w", buffering=1 << 16) as log:

        async def flush() -> None:  # so the harness can read the log while this runs
            while True:
                await asyncio.sleep(1.0)
                log.flush()

        flusher = asyncio.create_task(flush())
        assert flusher is not None
        cpu = time.process_time()
        rv = await _list(core, store)
        cpu = time.process_time() - cpu  # what the initial list cost, alone
        log.write(f"SYNCED {len(store)} {cpu:.4f} {time.monotonic():.6f}\n")
        log.flush()
        while True:
            try:
                response = await core.list_pod_for_all_namespaces(
                    watch=True,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=240,
                    _preload_content=False,
                    _request_timeout=300,
                )
                async for line in response.content:
                    seen = time.monotonic()
                    event = json.loads(line)
                    kind = event["type"]
                    obj = event["object"]
                    if kind == "ERROR":
                        raise LookupError(obj)
                    meta = obj["metadata"]
                    rv = meta["resourceVersion"]
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        store.pop(meta["uid"], None)
                    else:
                        store[meta["uid"]] = obj
                    log.write(f"{kind} {meta['namespace']}/{meta['name']} {rv} {seen:.6f}\n")
                response.release()
            except LookupError:
                rv = await _list(core, store)  # 410 Gone: list again
            except (TimeoutError, OSError, client.exceptions.ApiException):
                await asyncio.sleep(0.5)


def main() -> None:
    """Command line entry point; SIGTERM ends it cleanly (the log is flushed)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()

    async def until_terminated() -> None:
        task = asyncio.create_task(run(args.kubeconfig, args.log))
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(until_terminated())


if __name__ == "__main__":
    main()
