"""`benchbed stack …`: build what a stack needs ahead of a run (the run builds it too, on first use)."""

from __future__ import annotations

from typing import Annotated

import typer

from benchbed.console import err_console, fail, out
from benchbed.errors import BenchbedError

stack_app = typer.Typer(no_args_is_help=True, help="Stacks: one userland through every boundary (docs/stacks.md).")


@stack_app.command("vm-image")
def vm_image(
    image: Annotated[str, typer.Argument(help="Image name or id in the Docker engine")],
    print_dir: Annotated[bool, typer.Option("--print-dir", help="Only the cache directory; build nothing")] = False,
) -> None:
    """Build (or reuse) the libvirt guest of IMAGE: its rootfs + kernel, initramfs, sshd, dhcp. Prints the
    image=, kernel=, initrd=, key=, host_key= lines a `libvirt` target takes (`stack: IMAGE` needs none)."""
    from benchbed.stacks import vmimage

    try:
        if print_dir:
            from benchbed.stacks.rootfs import image_id

            out.print(str(vmimage.image_dir(image_id(image))), markup=False, soft_wrap=True)
            return
        vm = vmimage.ensure_vm_image(image)
    except BenchbedError as err:
        fail(err)
    state = f"built in {vm.build_s:.0f} s" if vm.build_s else "cached"
    err_console.print(f"stack vm-image: {vm.dir} ({state})", markup=False)
    for line in vm.lines():
        out.print(line, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")
