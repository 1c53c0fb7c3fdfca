#!/usr/bin/env python3
"""Write a single-layer image as a docker-archive tar from a root filesystem folder.

The archive holds the layer tar, the image config JSON and manifest.json, which is what
``ctr images import`` (and ``docker load``) read. The output is reproducible: entries are
sorted, owned by root and dated at the epoch, so the same inputs give the same image ID.

Usage: mkimage.py --rootfs DIR --tag NAME:TAG --out FILE.tar [--cmd JSON] [--entrypoint JSON]
       [--env K=V ...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path


def _layer_bytes(rootfs: Path) -> bytes:
    """Tar the folder with root ownership and zero timestamps, in a stable order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = sorted(p for p in rootfs.rglob("*"))
        for path in paths:
            rel = path.relative_to(rootfs).as_posix()
            info = tar.gettarinfo(str(path), arcname=rel)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            info.pax_headers = {}
            if info.isfile():
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    return buf.getvalue()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def build(args: argparse.Namespace) -> str:
    """Write the archive and return the image ID (the config digest)."""
    layer = _layer_bytes(Path(args.rootfs))
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    container_config: dict[str, object] = {
        "Env": args.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    }
    if args.entrypoint:
        container_config["Entrypoint"] = json.loads(args.entrypoint)
    if args.cmd:
        container_config["Cmd"] = json.loads(args.cmd)
    if args.workdir:
        container_config["WorkingDir"] = args.workdir
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "podtrail mkimage.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = hashlib.sha256(config_bytes).hexdigest()
    layer_dir = diff_id.split(":", 1)[1]
    manifest = [
        {
            "Config": f"{image_id}.json",
            "RepoTags": [args.tag],
            "Layers": [f"{layer_dir}/layer.tar"],
        }
    ]
    name, _, tag = args.tag.rpartition(":")
    repositories = {name: {tag: layer_dir}}

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w") as tar:
            _add_bytes(tar, f"{layer_dir}/layer.tar", layer)
            _add_bytes(tar, f"{layer_dir}/VERSION", b"1.0")
            _add_bytes(tar, f"{image_id}.json", config_bytes)
            _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
            _add_bytes(tar, "repositories", json.dumps(repositories).encode())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise
    return "sha256:" + image_id


def main() -> None:
    """Parse the command line and write the archive."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cmd")
    parser.add_argument("--entrypoint")
    parser.add_argument("--workdir")
    parser.add_argument("--env", action="append")
    print(build(parser.parse_args()))


if __name__ == "__main__":
    main()
