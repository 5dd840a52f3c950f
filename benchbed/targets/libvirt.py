"""`libvirt`: a fresh transient VM per instance, booted from a copy-on-write overlay of a base image.

This module is the kind: its spec model, the sweep of dead runs' domains and overlays and its registry entry. The
libvirt code lives in `libvirtvm` (domains, devices, boot) and `vmspec` (overlays, domain XML: no libvirt
needed), imported only when a VM is provisioned or swept. The guest is reached with the ssh kind's session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from benchbed import boundary
from benchbed.targets.base import Kind, distinct
from benchbed.targets.spec import Strict, TargetBase


class VmSsh(Strict):
    """How benchbed reaches a guest: the same paramiko session as `ssh`, pointed at the VM."""

    user: str = "root"
    key: str | None = Field(None, description="Private key for the guest; the SSH agent and ~/.ssh/id_* if absent")
    host_key: str | None = Field(
        None, description="The guest's public host key file: pinned for the forwarded port (build-vm-image makes one)"
    )
    accept_new_host_key: bool = Field(
        False, description="Without host_key: trust the key a fresh guest offers (kept in a per-instance file)"
    )
    reach: Literal["port_forward", "lease"] = Field(
        "port_forward",
        description="port_forward: QEMU user-mode hostfwd on 127.0.0.1; lease: the guest's address on `network`",
    )
    host_port: int | None = Field(None, ge=1, le=65535, description="Forwarded port; a free one if absent")
    serve_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="A second guest port forwarded from 127.0.0.1 (a free host port) next to SSH's, for "
        "serve.latency's across path through the VM's own network (reach: port_forward); without it that path "
        "goes through an SSH tunnel",
    )
    network: str = Field("default", description="libvirt network for reach: lease")
    port: int = Field(22, ge=1, le=65535, description="sshd port inside the guest")
    workdir: str | None = None
    sudo: bool = False
    connect_timeout_s: float = Field(10.0, gt=0)
    command_timeout_s: float = Field(120.0, gt=0)


class LibvirtTarget(TargetBase):
    """A fresh transient VM per instance, booted from a copy-on-write overlay of `image` (never written)."""

    kind: Literal["libvirt"]
    uri: str = Field("qemu:///system", description="libvirt connection URI (qemu+ssh://host/system for a remote one)")
    image: str | None = Field(
        None, min_length=1, description="Base disk (raw or qcow2); each instance gets its own overlay"
    )
    stack: str | None = Field(
        None,
        description="An image (name or id in the Docker engine) whose userland the guest runs: its rootfs plus a "
        "guest layer (kernel, sshd, dhcp), built once per image id; gives image, kernel, initrd and keys. "
        "See docs/stacks.md",
    )
    kernel: str | None = Field(None, description="Direct kernel boot (with initrd and cmdline)")
    initrd: str | None = None
    cmdline: str | None = None
    vcpus: int = Field(2, ge=1)
    memory: int = Field(2048, ge=64, description="MiB")
    cpu_mode: Literal["host-passthrough", "host-model", "maximum", "custom"] = "host-passthrough"
    hugepages: bool = Field(
        False, description="Back guest memory with host hugepages (reserve them first); recommended with a GPU"
    )
    numa: Literal["auto", "off"] | int = Field(
        "auto",
        description="auto: with a GPU, memory (<numatune> strict) and vCPUs on the GPU's host NUMA node; "
        "a number: that node; off: no binding",
    )
    vcpu_pinning: list[str] | None = Field(None, description="Host cpuset per vCPU, e.g. ['2', '3'] or ['2-3', '6']")
    virt_type: Literal["kvm", "qemu"] = Field("kvm", description="qemu = software emulation: never representative")
    machine: str = "q35"
    template: str | None = Field(None, description="Jinja2 domain XML; the shipped targets/vm/domain.xml.j2 if absent")
    gpus: list[Annotated[str, Field(pattern=r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")]] = Field(
        default_factory=list, description="PCI addresses passed through (VFIO); the IOMMU group's other functions too"
    )
    mdevs: list[Annotated[str, Field(pattern=r"^[0-9a-fA-F-]{36}$")]] = Field(
        default_factory=list, description="mdev UUIDs (vGPU slices)"
    )
    overlay_dir: str | None = Field(None, description="Where overlays go; /var/lib/benchbed/overlays as root")
    ssh: VmSsh = Field(default_factory=lambda: VmSsh())
    boot_timeout_s: float = Field(300.0, gt=0, description="From start until the guest's sshd answers")
    start: Literal["boot", "restore", "restore!"] = Field(
        "boot",
        description="boot: every instance boots; restore: boot once per run, save the running guest, restore each "
        "instance from that save on its own overlay (booting where it cannot: passthrough devices); restore!: "
        "the same, but refuse instead of booting",
    )

    @model_validator(mode="after")
    def _image_or_stack(self) -> LibvirtTarget:
        """A stack's VM image brings its own disk, kernel and initrd: naming those too would be two guests."""
        if self.stack:
            given = [k for k in ("image", "kernel", "initrd") if getattr(self, k)]
            if given:
                raise ValueError(f"stack {self.stack!r} builds the guest's image, kernel and initrd: drop {given}")
        elif not self.image:
            raise ValueError("give `image` (a base disk) or `stack` (an image to build the guest from)")
        return self


class LibvirtKind(Kind):
    name = "libvirt"
    boundary_class = boundary.VM
    spec = LibvirtTarget
    extra = "libvirt"
    system_needs = "apt-get install libvirt-dev pkg-config gcc python3-dev"  # libvirt-python is an sdist
    impl = "benchbed.targets.libvirtvm:LibvirtProvisioner"

    def sweep(self, specs: Sequence[Any], *, everything: bool) -> list[str]:
        from benchbed.targets.vmspec import overlay_dir, sweep_overlays

        hosts = distinct((spec.uri, overlay_dir(spec)) for spec in specs)
        try:
            from benchbed.targets.libvirtsweep import sweep
        except ImportError as err:
            for _, overlays in hosts:  # the files, at least
                sweep_overlays(overlays, everything=everything)
            raise self.missing(err, "cleanup") from err
        from benchbed.stacks.vmimage import sweep as sweep_builds

        removed = sweep_builds()  # stack guest builds a killed harness left half done, on this host
        for uri, overlays in hosts:
            removed += sweep(uri, overlays, everything=everything)
        return removed

    def transport_errors(self) -> tuple[type[BaseException], ...]:
        import libvirt

        return (libvirt.libvirtError,)

    def cleanup_spec(self, endpoint: str | None, *, targets_given: bool) -> Any | None:
        """--libvirt-uri, or (without a targets file) the system libvirt if a libvirt target was used here."""
        from benchbed.targets.vmspec import default_overlay_dir

        if endpoint or (not targets_given and default_overlay_dir().is_dir()):
            return LibvirtTarget(kind="libvirt", image="-", uri=endpoint or "qemu:///system")
        return None
