"""A throw-away two-node QEMU VM with a real Debian kernel, for the ``realkernel`` tests.

    python -m tests.realkernel.vm prepare     # once: ~140 MB of .debs, ~150 MB cached, ~6 s
    python -m tests.realkernel.vm check       # exit 0 if usable, 77 (with the reason) if not
    python -m tests.realkernel.vm run 'CMD'   # boot, run CMD as root in the guest, power off

``prepare`` exits 3 when the Debian mirror cannot be reached (CI then skips the VM tests).

Adapted from an earlier feasibility-study script (numa-vm.sh). Why it looks like this:

* QEMU TCG, never KVM by default: ``/dev/kvm`` on this machine kind is nested PVM and stock
  kernels die under it (TIERENV_VM_ACCEL=kvm is an opt-in for machines with VT-x/AMD-V).
* Nothing is installed system-wide: apt runs with a private config and lists under the cache,
  packages are unpacked with ``dpkg -x``.
* The guest's root is the host's ``/`` shared read-only over virtio-9p (QEMU enforces
  ``readonly=on``) with a tmpfs overlay, so the guest runs this checkout, this Python and its
  packages at the same paths. The guest's own proc/sys/dev are moved over the shared ones, so
  tests write the guest's /sys, never the host's. Results come back through a separate,
  writable 9p share of a fresh temporary directory.
* Node 0 has the CPUs and 1 GiB ("DDR"), node 1 is memory only ("CXL", 1 GiB); HMAT gives
  node 1 half the bandwidth and three times the latency, so ``auto`` weights are 2:1-ish.
* Kernel command line: ``transparent_hugepage=never`` (exact interleave ratios),
  ``numa_balancing=disable`` (nothing but our kdamond moves pages), ``damon_stat.enabled=N``
  (DAMON_STAT would hold DAMON, EBUSY), and ``tierenv_vm=<nonce>``: guest code lets the project
  touch the real /sys only when /proc/cmdline carries the nonce it was given (see guest/).

Environment: TIERENV_VM_CACHE (default ~/.cache/tierenv/numa-vm), TIERENV_VM_KERNEL_SUITE
(trixie-backports), TIERENV_VM_KERNEL (pin a version such as 7.3.4+deb13-amd64),
TIERENV_VM_MIRROR (default: the mirror this machine's apt uses), TIERENV_VM_ACCEL,
TIERENV_VM_TIMEOUT (seconds, default 1200).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PREPARE_COMMAND = "python -m tests.realkernel.vm prepare"
CHECK_UNUSABLE = 77  # the "skipped" exit code of automake-style test drivers
KERNEL_OPTIONS = ("DAMON", "DAMON_SYSFS", "DAMON_VADDR", "DAMON_PADDR", "NUMA", "MIGRATION",
                  "ACPI_HMAT")  # fmt: skip
# 9p root with an overlay: netfs -> 9pnet -> 9pnet_virtio -> 9p, then overlay.
MODULES = ("fs/netfs/netfs", "net/9p/9pnet", "net/9p/9pnet_virtio", "fs/9p/9p",
           "fs/overlayfs/overlay")  # fmt: skip
REPO = Path(__file__).resolve().parents[2]  # this checkout, shared with the guest
GUEST_OUT = "/run/tierenv-vm-out"  # where the guest sees the writable results share
TOKEN_PARAM = "tierenv_vm"


class VmError(RuntimeError):
    """Preparing or running the VM failed; the message says where and why."""


class VmNetworkError(VmError):
    """The package mirror could not be reached (prepare needs it once)."""


def cache_dir() -> Path:
    return Path(
        os.environ.get("TIERENV_VM_CACHE") or Path.home() / ".cache" / "tierenv" / "numa-vm"
    ).absolute()


def _log(message: str) -> None:
    print(f"[tierenv-vm {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a tool; a failure raises VmError with its stderr."""
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise VmError(
            f"{' '.join(args[:4])}... exited {result.returncode}: {result.stderr.strip()[-1500:]}"
        )
    return result


# --- prepare ----------------------------------------------------------------------------------


def _mirror() -> str:
    if mirror := os.environ.get("TIERENV_VM_MIRROR"):
        return mirror
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists() and (m := re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.M)):
        return m.group(1)
    legacy = Path("/etc/apt/sources.list")
    deb_line = r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)"
    if legacy.exists() and (m := re.search(deb_line, legacy.read_text(), re.M)):
        return m.group(1)
    return "http://deb.debian.org/debian"


def _private_apt(cache: Path, suite: str) -> dict[str, str]:
    """An apt configuration that reads and writes only under ``cache/apt``."""
    apt = cache / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "etc/sources.list.d",
                "etc/preferences.d", "etc/apt.conf.d", "state"):  # fmt: skip
        (apt / sub).mkdir(parents=True, exist_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    mirror = _mirror()
    (apt / "etc/sources.list").write_text(
        f"deb [signed-by={keyring}] {mirror} bookworm main\n"
        f"deb [signed-by={keyring}] {mirror} {suite} main\n"
    )
    # The dpkg status is the system's, read only (apt needs one to resolve qemu's closure).
    (apt / "apt.conf").write_text(
        f'Dir::State "{apt}/state"; Dir::State::Lists "{apt}/lists";\n'
        'Dir::State::status "/var/lib/dpkg/status";\n'
        f'Dir::Cache "{apt}/cache"; Dir::Etc::SourceList "{apt}/etc/sources.list";\n'
        f'Dir::Etc::SourceParts "{apt}/etc/sources.list.d";\n'
        f'Dir::Etc::Preferences "{apt}/etc/preferences";\n'
        f'Dir::Etc::PreferencesParts "{apt}/etc/preferences.d";\n'
        f'Dir::Etc::Parts "{apt}/etc/apt.conf.d";\n'
        'APT::Default-Release "bookworm"; Acquire::Languages "none";\n'
        'Acquire::Check-Valid-Until "false"; APT::Sandbox::User "root";\n'
        'Acquire::Retries "2"; Acquire::http::Timeout "30";\n'
    )
    return dict(os.environ, APT_CONFIG=str(apt / "apt.conf"), LC_ALL="C")


def _kernel_version(env: dict[str, str], suite: str) -> str:
    if pinned := os.environ.get("TIERENV_VM_KERNEL"):
        return pinned
    show = _run(["apt-cache", "show", f"linux-image-amd64/{suite}"], env=env).stdout
    depends = next((line for line in show.splitlines() if line.startswith("Depends:")), "")
    m = re.search(r"linux-image-([0-9][^ ,]*-amd64)", depends)
    if not m:
        raise VmError(f"no linux-image-amd64 in {suite}: {depends!r}")
    return m.group(1)


def _unpack(debs: Path, into: Path, pattern: str = "*.deb") -> None:
    for deb in sorted(debs.glob(pattern)):
        _run(["dpkg-deb", "-x", str(deb), str(into)])
        deb.unlink()


INIT_SCRIPT = Path(__file__).with_name("init.sh")


def _build_initrd(cache: Path, unpacked: Path, version: str) -> None:
    initrd = cache / "initrd"
    shutil.rmtree(initrd, ignore_errors=True)
    for sub in ("bin", "proc", "sys", "dev", "newroot", "hostroot", "rw", "lib/modules"):
        (initrd / sub).mkdir(parents=True)
    for module in MODULES:
        found = sorted(unpacked.glob(f"**/lib/modules/{version}/kernel/{module}.ko*"))
        if not found:
            raise VmError(f"kernel {version} ships no module {module}.ko (needed for the 9p root)")
        name = initrd / "lib/modules" / (Path(module).name + ".ko")
        source = found[0]
        # busybox insmod wants plain .ko files
        if source.suffix == ".xz":
            name.write_bytes(_run_bytes(["xz", "-dc", str(source)]))
        elif source.suffix == ".zst":
            name.write_bytes(_run_bytes(["zstd", "-dcq", str(source)]))
        else:
            shutil.copy(source, name)
    shutil.copy(cache / "root/bin/busybox", initrd / "bin/busybox")
    for applet in ("sh", "mount", "mkdir", "insmod", "chroot", "cat", "cut", "echo", "poweroff",
                   "sync"):  # fmt: skip
        (initrd / "bin" / applet).symlink_to("busybox")
    _pack_initrd(cache)


def _pack_initrd(cache: Path) -> None:
    """Put the current init.sh into the initramfs tree and pack it (cpio newc, gzip)."""
    initrd = cache / "initrd"
    (initrd / "init").write_text(INIT_SCRIPT.read_text().replace("@OUT@", GUEST_OUT))
    (initrd / "init").chmod(0o755)
    # cpio wants the list of paths on stdin, "." first; owner root for every file.
    files = sorted(str(p.relative_to(initrd)) for p in initrd.rglob("*"))
    listing = ("\n".join([".", *files]) + "\n").encode()
    packed = subprocess.run(
        [str(cache / "root/bin/busybox"), "cpio", "-o", "-H", "newc", "-R", "0:0"],
        cwd=initrd, input=listing, capture_output=True,
    )  # fmt: skip
    if packed.returncode != 0:
        raise VmError(f"cpio failed: {packed.stderr.decode()[-500:]}")
    (cache / "initrd.cpio.gz").write_bytes(gzip.compress(packed.stdout, compresslevel=1))
    (cache / "initrd.sha").write_text(_digest(INIT_SCRIPT))


def ensure_initrd(cache: Path) -> None:
    """Repack the initramfs when init.sh changed since (no download needed)."""
    stamp = cache / "initrd.sha"
    if not stamp.exists() or stamp.read_text() != _digest(INIT_SCRIPT):
        _pack_initrd(cache)


def _run_bytes(args: list[str]) -> bytes:
    result = subprocess.run(args, capture_output=True)
    if result.returncode != 0:
        raise VmError(f"{' '.join(args)} failed: {result.stderr.decode()[-500:]}")
    return result.stdout


MEMTOOL_SOURCE = Path(__file__).with_name("memtool.c")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def memtool_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "bin" / "memtool"


def ensure_memtool(cache: Path | None = None) -> Path:
    """Compile the guest workload (memtool.c) into the cache when it is missing or stale; the
    guest runs the host's binaries, so a normal dynamic build is enough."""
    cache = cache or cache_dir()
    binary = memtool_path(cache)
    stamp = binary.with_suffix(".sha")
    digest = _digest(MEMTOOL_SOURCE)
    if binary.exists() and stamp.exists() and stamp.read_text() == digest:
        return binary
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise VmError("no C compiler (gcc or cc) to build the guest workload memtool.c")
    binary.parent.mkdir(parents=True, exist_ok=True)
    _run([compiler, "-O2", "-Wall", "-Werror", "-o", str(binary), str(MEMTOOL_SOURCE)])
    stamp.write_text(digest)
    return binary


NETWORK_ERRORS = ("Could not resolve", "Failed to fetch", "Temporary failure", "Connection",
                  "Unable to connect", "No route", "timed out")  # fmt: skip


def prepare(cache: Path | None = None) -> Path:
    """Download and unpack QEMU (unless on PATH), busybox and the kernel, build the initramfs
    and the workload. Idempotent: a prepared cache only gets its workload rebuilt if stale."""
    cache = cache or cache_dir()
    if (cache / "READY").exists():
        ensure_memtool(cache)
        ensure_initrd(cache)
        _log(f"already prepared in {cache}")
        return cache
    started = time.monotonic()
    suite = os.environ.get("TIERENV_VM_KERNEL_SUITE", "trixie-backports")
    env = _private_apt(cache, suite)
    _log(f"apt-get update (private lists in {cache / 'apt'}, mirror {_mirror()})")
    update = subprocess.run(["apt-get", "-q", "update"], env=env, capture_output=True, text=True)
    lists = list((cache / "apt/lists").glob("*_Packages*"))
    if update.returncode != 0 or len(lists) < 2:
        text = update.stdout + update.stderr
        kind = VmNetworkError if any(e in text for e in NETWORK_ERRORS) else VmError
        raise kind(f"apt-get update failed (exit {update.returncode}): {text.strip()[-1500:]}")
    debs, root, work = cache / "debs", cache / "root", cache / "unpack"
    for d in (debs, root, work, cache / "kernel"):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    packages = ["busybox-static"]
    if shutil.which("qemu-system-x86_64") is None:
        sim = _run(["apt-get", "install", "-s", "--no-install-recommends", "qemu-system-x86"],
                   env=env).stdout  # fmt: skip
        packages += [line.split()[1] for line in sim.splitlines() if line.startswith("Inst ")]
    _log(f"downloading {len(packages)} packages (QEMU and busybox)")
    _run(["apt-get", "-q", "download", *packages], cwd=debs, env=env)
    _unpack(debs, root)
    version = _kernel_version(env, suite)
    split = subprocess.run(["apt-cache", "show", f"linux-binary-{version}"], env=env,
                           capture_output=True).returncode == 0  # fmt: skip
    kernel_debs = (
        [f"linux-binary-{version}", f"linux-base-{version}", f"linux-modules-{version}"]
        if split  # 7.x packaging; up to 6.x one linux-image package
        else [f"linux-image-{version}"]
    )
    _log(f"downloading kernel {version} from {suite}")
    _run(["apt-get", "-q", "download", *kernel_debs], cwd=debs, env=env)
    _unpack(debs, work)
    vmlinuz = sorted(work.glob("boot/vmlinuz*")) or sorted(work.glob("**/vmlinuz*"))
    configs = sorted(work.glob(f"boot/config-{version}")) + sorted(
        work.glob(f"**/modules/{version}/config")
    )
    if not vmlinuz or not configs:
        raise VmError(f"kernel {version}: no vmlinuz or config in {kernel_debs}")
    shutil.copy(vmlinuz[0], cache / "kernel/vmlinuz")
    config = configs[0].read_text()
    lacking = [o for o in KERNEL_OPTIONS if f"\nCONFIG_{o}=y\n" not in config]
    if lacking:
        raise VmError(f"kernel {version} lacks {', '.join('CONFIG_' + o for o in lacking)}")
    (cache / "kernel/config").write_text(config)
    _build_initrd(cache, work, version)
    ensure_memtool(cache)
    # The apt lists and the unpacked modules are only needed to prepare (~120 MB).
    for d in (work, debs, cache / "apt"):
        shutil.rmtree(d, ignore_errors=True)
    manifest = {"kernel": version, "suite": suite, "mirror": _mirror(), "qemu": _qemu(cache)[0]}
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (cache / "READY").write_text(f"{version}\n")
    size = (
        sum(p.stat().st_size for p in cache.rglob("*") if p.is_file() and not p.is_symlink()) >> 20
    )
    _log(f"prepared kernel {version} in {cache} ({size} MiB, {time.monotonic() - started:.1f} s)")
    return cache


# --- check and run ----------------------------------------------------------------------------


def _qemu(cache: Path) -> tuple[str, list[str], dict[str, str]]:
    """QEMU's binary, its data-dir arguments and environment (system or private prefix)."""
    system = shutil.which("qemu-system-x86_64")
    if system:
        return system, [], dict(os.environ)
    root = cache / "root"
    libs = [str(root / "usr/lib/x86_64-linux-gnu"), str(root / "lib/x86_64-linux-gnu")]
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(libs))
    data = ["-L", str(root / "usr/share/qemu"), "-L", str(root / "usr/share/seabios"),
            "-L", str(root / "usr/lib/ipxe/qemu")]  # fmt: skip
    return str(root / "usr/bin/qemu-system-x86_64"), data, env


def check(cache: Path | None = None) -> str | None:
    """None if the VM can be booted, else why not (for a pytest skip reason)."""
    cache = cache or cache_dir()
    if not (cache / "READY").exists():
        return f"the NUMA VM is not prepared in {cache} (run: {PREPARE_COMMAND})"
    binary, _, env = _qemu(cache)
    try:
        version = subprocess.run([binary, "--version"], env=env, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"QEMU {binary} cannot run: {error} (re-run: {PREPARE_COMMAND})"
    if version.returncode != 0:
        return f"QEMU {binary} cannot run: {version.stderr.decode().strip()[-300:]}"
    return None


@dataclass
class VmResult:
    returncode: int  # the guest command's exit code; 125 if it never reported one
    console: str  # the serial console (kernel messages and the command's output)
    seconds: float


def guest_path() -> str:
    """PATH for the guest: this interpreter's directory first, so ``python`` is this one."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def run(
    command: str,
    out_dir: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    cache: Path | None = None,
) -> VmResult:
    """Boot the VM, run ``command`` (sh syntax) as root in ``cwd`` (default: the current
    directory, the same path in the guest) and power off. ``out_dir`` (a host directory) is
    the guest's writable ``$TIERENV_VM_OUT``; ``env`` is exported in the guest."""
    cache = cache or cache_dir()
    if reason := check(cache):
        raise VmError(reason)
    ensure_initrd(cache)
    timeout = timeout or float(os.environ.get("TIERENV_VM_TIMEOUT", "1200"))
    own_dir = out_dir is None
    out = Path(out_dir or tempfile.mkdtemp(prefix="tierenv-vm-out."))
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("rc", "cmd", "env"):
        (out / stale).unlink(missing_ok=True)
    token = secrets.token_hex(8)  # a nonce per boot: only this guest can present it
    exports = {
        "HOME": "/root",
        "PATH": guest_path(),
        "TIERENV_VM_CWD": str((cwd or Path.cwd()).absolute()),
        "TIERENV_VM_OUT": GUEST_OUT,
        "TIERENV_VM_TOKEN": token,
        "PYTHONDONTWRITEBYTECODE": "1",
        "TIERENV_VM_MEMTOOL": str(ensure_memtool(cache)),  # the guest tests' workload
        **(env or {}),
    }
    (out / "env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items()))
    (out / "cmd").write_text(command + "\n")
    binary, data, qemu_env = _qemu(cache)
    accel = os.environ.get("TIERENV_VM_ACCEL", "tcg,thread=multi")
    numa = [
        "-object", "memory-backend-ram,id=m0,size=1G",
        "-object", "memory-backend-ram,id=m1,size=1G",
        "-numa", "node,nodeid=0,cpus=0-1,memdev=m0,initiator=0",
        "-numa", "node,nodeid=1,memdev=m1,initiator=0",
    ]  # fmt: skip
    for target, latency, bandwidth in ((0, 100, "200G"), (1, 300, "100G")):
        hmat = f"hmat-lb,initiator=0,target={target},hierarchy=memory"
        numa += ["-numa", f"{hmat},data-type=access-latency,latency={latency}"]
        numa += ["-numa", f"{hmat},data-type=access-bandwidth,bandwidth={bandwidth}"]
    if any(c.isspace() for c in str(REPO)):
        raise VmError(f"the checkout path {REPO} has whitespace; the guest cannot be told it")
    cmdline = (
        "console=ttyS0 panic=-1 quiet numa_balancing=disable damon_stat.enabled=N "
        f"transparent_hugepage=never {TOKEN_PARAM}={token} tierenv_repo={REPO}"
    )
    args = [
        binary, *data, "-machine", "pc,hmat=on", "-accel", accel, "-cpu", "max", "-smp", "2",
        "-m", "2G", *numa,
        # Read-only is enforced by QEMU, whatever the guest mounts it as.
        "-virtfs",
        "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        "-virtfs", f"local,path={out},mount_tag=out,security_model=none",
        "-virtfs", f"local,path={REPO},mount_tag=repo,security_model=none,readonly=on",
        "-nographic", "-no-reboot", "-kernel", str(cache / "kernel/vmlinuz"),
        "-initrd", str(cache / "initrd.cpio.gz"), "-append", cmdline,
    ]  # fmt: skip
    started = time.monotonic()
    try:
        proc = subprocess.run(args, env=qemu_env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout)  # fmt: skip
        raw = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as expired:  # subprocess.run killed QEMU
        raw = (expired.stdout or b"") + (expired.stderr or b"")
        console = _clean(raw)
        raise VmError(f"the VM did not finish within {timeout:.0f} s; console tail:\n"
                      f"{console[-4000:]}") from None  # fmt: skip
    console = _clean(raw)
    root_ready = b"TIERENV-VM-ROOT-READY" in raw
    (out / "console.log").write_text(console)
    rc_file = out / "rc"
    returncode = int(rc_file.read_text().strip() or 125) if rc_file.exists() else 125
    seconds = time.monotonic() - started
    if own_dir:
        shutil.rmtree(out, ignore_errors=True)
    if not root_ready:
        raise VmError(f"the guest root never came up (QEMU exit {proc.returncode}); console "
                      f"tail:\n{console[-4000:]}")  # fmt: skip
    return VmResult(returncode, console, seconds)


_ANSI = re.compile(rb"\x1b\[[0-9;?]*[a-zA-Z]|\x1bc|\r")
_NOISE = re.compile(r"SeaBIOS|iPXE|Press Ctrl|Booting from")


def _clean(raw: bytes) -> str:
    text = _ANSI.sub(b"", raw).decode("utf-8", "replace")
    # SeaBIOS ends its lines without a newline: keep any line that also carries ours.
    return "\n".join(
        line
        for line in text.splitlines()
        if line.strip() and (not _NOISE.search(line) or "TIERENV" in line)
    )


# --- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.realkernel.vm", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("prepare", help="download and build everything into the cache (once)")
    sub.add_parser("check", help="exit 0 if the VM is usable, 77 if not")
    run_parser = sub.add_parser("run", help="boot, run a command in the guest, power off")
    run_parser.add_argument("command", nargs="+", help="the command (sh syntax; in the guest, "
                            "$TIERENV_VM_MEMTOOL is the workload, $TIERENV_VM_OUT the results "
                            "share)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.step == "prepare":
            prepare()
            return 0
        if args.step == "check":
            reason = check()
            print(reason or f"usable: {cache_dir()}")
            return CHECK_UNUSABLE if reason else 0
        result = run(" ".join(args.command))
        print(result.console)
        _log(f"guest exit code {result.returncode} after {result.seconds:.1f} s")
        return result.returncode
    except VmNetworkError as error:
        _log(f"no network to the package mirror: {error}")
        return 3
    except VmError as error:
        _log(f"error: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
