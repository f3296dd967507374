#!/bin/busybox sh
# PID 1 of the realkernel VM (packed into the initramfs by vm.py; @OUT@ is replaced there).
# Root = the host's / over 9p, read-only, with a tmpfs upper layer; the guest's own proc, sys
# and dev are moved over the shared ones. Runs @OUT@/cmd with @OUT@/env, writes its exit
# code to @OUT@/rc (the writable share) and powers off.
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
for m in netfs 9pnet 9pnet_virtio 9p overlay; do insmod /lib/modules/$m.ko || echo "insmod $m failed"; done
fail() { echo "TIERENV-VM-ERROR $*"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /hostroot || fail 9p
mount -t tmpfs -o size=40% rw /rw; mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/hostroot,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail overlay
for d in proc sys dev; do mount --move /$d /newroot/$d || fail "move $d"; done
mount -t tmpfs run /newroot/run
mkdir -p /newroot/tmp && mount -t tmpfs -o size=25% tmp /newroot/tmp
# The checkout gets its own read-only share at its own path: a clone under /tmp (as CI makes)
# would otherwise be hidden by the tmpfs above.
for w in $(cat /newroot/proc/cmdline); do case $w in tierenv_repo=*) REPO=${w#tierenv_repo=};; esac; done
if [ -n "$REPO" ]; then
  mkdir -p /newroot$REPO && mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 repo /newroot$REPO || fail repo
fi
mkdir -p /newroot@OUT@ && mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /newroot@OUT@ || fail out
echo; echo "TIERENV-VM-ROOT-READY uptime=$(cut -d' ' -f1 /newroot/proc/uptime)"
chroot /newroot /bin/sh -c '. @OUT@/env; cd "$TIERENV_VM_CWD" || exit 125; sh @OUT@/cmd; echo $? > @OUT@/rc'
sync; poweroff -f
