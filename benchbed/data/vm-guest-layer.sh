#!/usr/bin/env bash
# The guest layer that turns a root filesystem into a bootable libvirt guest, without mounting an image:
#   [--install] kernel, initramfs, systemd, sshd, ifupdown + dhcp on eth0, udev, from the rootfs's OWN apt sources
#               (apt-get install --no-install-recommends, chrooted in a private mount namespace: only what is
#               missing is added, nothing already there is upgraded; the caller checks that with the stack digest)
#   then        a root SSH key pair and a pinned ed25519 host key of our own, sshd config, interfaces, hostname,
#               fstab, masked units that wait for a network or a clock, kernel + initrd out, `mkfs.ext4 -d`.
# Shared by scripts/build-vm-image (debootstrap) and benchbed.stacks.vmimage (an image's rootfs: a stack).
# The rootfs is consumed (removed). OUT receives image.raw, vmlinuz, initrd.img, id_ed25519,
# ssh_host_ed25519_key.pub; the caller marks it complete.
#   usage: vm-guest-layer.sh [--install] ROOTFS OUT HEADROOM_MB
set -euo pipefail

GUEST_PACKAGES="linux-image-amd64 systemd-sysv openssh-server ifupdown isc-dhcp-client iproute2 udev"
install=0
if [ "${1:-}" = "--install" ]; then install=1; shift; fi
R=$1 OUT=$2 HEADROOM_MB=$3
say() { echo "vm-guest-layer: $*" >&2; }

if [ "$install" = 1 ]; then
  # /proc, a read-only /sys and a private /dev (a tmpfs with the few nodes maintainer scripts use) for the
  # maintainer scripts; the host's resolver for the download. Never the host's /dev itself: udev's and systemd's
  # scripts chgrp device nodes by the IMAGE's group ids (seen: the host's /dev/kvm regrouped to the image's
  # "kvm" gid, which made libvirtd re-probe QEMU on every domain start). The mounts live in a private namespace,
  # so they vanish with it even if this script is killed; resolv.conf is put back after.
  say "apt-get install $GUEST_PACKAGES (the rootfs's own sources; a few minutes)"
  had_resolv=0
  if [ -e "$R/etc/resolv.conf" ] || [ -L "$R/etc/resolv.conf" ]; then
    had_resolv=1
    mv "$R/etc/resolv.conf" "$R/etc/resolv.conf.benchbed-orig"
  fi
  cp -L /etc/resolv.conf "$R/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d" # no service starts inside the build chroot
  chmod 755 "$R/usr/sbin/policy-rc.d"
  rc=0
  unshare --mount --propagation private -- bash -euo pipefail -c '
    R=$1; shift
    mount --rbind /proc "$R/proc"; mount --rbind /sys "$R/sys"; mount -o remount,bind,ro "$R/sys"
    mount -t tmpfs -o mode=755,nosuid benchbed-dev "$R/dev"
    for n in null zero full random urandom tty; do : >"$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
    mkdir "$R/dev/pts" "$R/dev/shm"; ln -s /proc/self/fd "$R/dev/fd"
    export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
    chroot "$R" apt-get -q update
    chroot "$R" apt-get -q -y -o Dpkg::Options::=--force-confold install --no-install-recommends "$@"
  ' guest-layer "$R" $GUEST_PACKAGES >&2 || rc=$?
  rm -f "$R/usr/sbin/policy-rc.d" "$R/etc/resolv.conf"
  if [ "$had_resolv" = 1 ]; then mv "$R/etc/resolv.conf.benchbed-orig" "$R/etc/resolv.conf"; fi
  [ "$rc" = 0 ] || { say "apt-get in the rootfs failed (exit $rc): are the image's apt sources reachable?"; exit 1; }
  rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/lib/apt/lists/"*
fi

for f in "$R"/boot/vmlinuz-* "$R"/sbin/init "$R"/usr/sbin/sshd; do
  [ -e "$f" ] || { say "$f missing in the rootfs: the guest cannot boot or be reached (install the guest layer)"; exit 1; }
done

# root login with a key of our own (and no password); the guest's host key is ours too, so it can be pinned.
ssh-keygen -q -t ed25519 -N '' -C benchbed-vm -f "$OUT/id_ed25519"
install -d -m 700 "$R/root/.ssh"
install -m 600 "$OUT/id_ed25519.pub" "$R/root/.ssh/authorized_keys"
rm -f "$R"/etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C benchbed-vm-host -f "$R/etc/ssh/ssh_host_ed25519_key"
cp "$R/etc/ssh/ssh_host_ed25519_key.pub" "$OUT/ssh_host_ed25519_key.pub"
mkdir -p "$R/etc/ssh/sshd_config.d"
cat >"$R/etc/ssh/sshd_config.d/benchbed.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
EOF
mkdir -p "$R/etc/network"
cat >"$R/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback
auto eth0
iface eth0 inet dhcp
EOF
echo benchbed-vm >"$R/etc/hostname"
echo "/dev/vda / ext4 rw,relatime 0 1" >"$R/etc/fstab"
# a container image's /etc/hosts is empty (the engine bind-mounts one); the guest needs its own
grep -q localhost "$R/etc/hosts" 2>/dev/null || printf '127.0.0.1 localhost\n127.0.1.1 benchbed-vm\n' >"$R/etc/hosts"
# nothing in the guest should wait for a network that is not there, or for a clock sync
chroot "$R" systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer man-db.timer >/dev/null 2>&1 || true
rm -f "$R/.dockerenv"

cp "$(ls "$R"/boot/vmlinuz-* | sort -V | tail -1)" "$OUT/vmlinuz"
cp "$(ls "$R"/boot/initrd.img-* | sort -V | tail -1)" "$OUT/initrd.img"
SIZE_MB=$(($(du -sm "$R" | cut -f1) + HEADROOM_MB))
truncate -s "${SIZE_MB}M" "$OUT/image.raw"
mkfs.ext4 -q -F -L benchbed-root -d "$R" "$OUT/image.raw"
rm -rf "$R"
chmod 644 "$OUT/image.raw" "$OUT/vmlinuz" "$OUT/initrd.img" "$OUT/ssh_host_ed25519_key.pub"
chmod 600 "$OUT/id_ed25519"
rm -f "$OUT/id_ed25519.pub"
say "image.raw ${SIZE_MB} MiB"
