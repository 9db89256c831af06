"""A bundle as a Module and a Host: `read_bundle`'s program, arguments, environment and
preopens, with the memory limit the bundle's resources give."""

from __future__ import annotations

from pathlib import Path

from ..host import Host, Limits, Preopen
from ..module import Module
from ..oci.bundle import read_bundle
from .spec import Spec


def guest(directory: Path, spec: Spec) -> tuple[Module, Host]:
    bundle = read_bundle(directory)
    host = Host(
        args=bundle.args[1:],
        env=bundle.env,
        preopens=[Preopen(m.guest, m.host, m.read_only) for m in bundle.mounts],
        limits=Limits(memory=spec.resources.memory),
    )
    return Module(bundle.module, name=bundle.args[0]), host
