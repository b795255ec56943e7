#!/usr/bin/env python3
"""Boots vt-init in a real qemu microVM and drives it over the channel.

A manual check for vt-init changes (the host agent's tests are the real ones):
builds a throwaway initramfs (vt-init + virtio modules) and busybox root and
volume images in a temp dir, then: Hello, Setup (env, workdir, uid 1000,
secret, volume, IPv6), logs, exec on pipes and on a terminal, exec errors,
signals, a host reconnect, Stop with grace, power-off.

    scripts/build-init.sh && guest/smoke/boot.py [KERNEL_DIR]

KERNEL_DIR holds `vmlinux` and `modules/kernel/` (default: the newest under
~/.cache/vt/guest, as scripts/guest.sh makes it). Needs qemu-system-x86,
busybox-static, e2fsprogs, cpio.
"""
import base64, glob, json, os, re, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INIT = os.path.join(ROOT, "target/guest/vt-init")
MODULES = ["virtio_mmio", "virtio_blk", "virtio_net", "virtio_console"]
# On this kind of machine the guest kernel cannot calibrate its TSC against
# the microvm PIT under TCG and hangs early; giving it the rate avoids that.
APPEND = "console=ttyS0 reboot=t panic=-1 tsc_early_khz=2000000 tsc=reliable"


def kernel_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    dirs = sorted(glob.glob(os.path.expanduser("~/.cache/vt/guest/*/vmlinux")))
    if not dirs:
        sys.exit("no kernel: run scripts/guest.sh or pass KERNEL_DIR")
    return os.path.dirname(dirs[-1])


def run(*cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


def build(work, kdir):
    initrd = os.path.join(work, "initrd")
    for d in ["dev", "proc", "sys", "run", "rootfs", "lib/modules"]:
        os.makedirs(os.path.join(initrd, d))
    shutil.copy(INIT, os.path.join(initrd, "init"))
    seen, order = set(), []

    def add(name):
        if name in seen:
            return
        seen.add(name)
        found = [p for n in {name, name.replace("_", "-")}
                 for p in glob.glob(f"{kdir}/modules/kernel/**/{n}.ko", recursive=True)]
        if not found:
            sys.exit(f"module {name} not found under {kdir}/modules")
        data = open(found[0], "rb").read()
        deps = re.search(rb"depends=([a-z0-9_,-]*)", data)
        for dep in filter(None, (deps.group(1).decode().split(",") if deps else [])):
            add(dep)
        shutil.copy(found[0], f"{initrd}/lib/modules/{name}.ko")
        order.append(f"/lib/modules/{name}.ko")

    for m in MODULES:
        add(m)
    with open(f"{initrd}/lib/modules/load-order", "w") as f:
        f.write("# dependencies first\n" + "\n".join(order) + "\n")
    files = subprocess.run(["find", "."], cwd=initrd, capture_output=True, check=True).stdout
    cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=initrd, input=files,
                          capture_output=True, check=True).stdout
    open(f"{work}/initrd.cpio", "wb").write(cpio)

    rootdir = os.path.join(work, "root")
    for d in ["bin", "etc", "tmp", "srv", "opt", "usr/local/bin"]:
        os.makedirs(os.path.join(rootdir, d))
    shutil.copy("/bin/busybox", f"{rootdir}/bin/busybox")
    for a in "sh echo cat ls id hostname ip sleep pwd stty tty printf wc touch mount".split():
        os.symlink("/bin/busybox", f"{rootdir}/bin/{a}")
    open(f"{rootdir}/opt/hello.sh", "w").write("#!/bin/sh\necho via-abs-symlink\n")
    os.chmod(f"{rootdir}/opt/hello.sh", 0o755)
    os.symlink("/opt/hello.sh", f"{rootdir}/usr/local/bin/hello")  # absolute link
    os.chmod(f"{rootdir}/tmp", 0o1777)
    for img, size, src in [("root.img", "64M", rootdir), ("vol.img", "16M", None)]:
        path = os.path.join(work, img)
        run("truncate", "-s", size, path)
        run("mkfs.ext4", "-q", *(["-d", src] if src else []), path)


class Guest:
    def __init__(self, work, kdir):
        self.sock_path = os.path.join(work, "ch.sock")
        self.console = os.path.join(work, "console.log")
        self.t0 = time.time()
        self.qemu = subprocess.Popen([
            "qemu-system-x86_64", "-M", "microvm,accel=tcg", "-m", "256", "-nodefaults",
            "-no-user-config", "-nographic", "-no-reboot", "-kernel", f"{kdir}/vmlinux",
            "-initrd", f"{work}/initrd.cpio", "-append", APPEND, "-serial", f"file:{self.console}",
            "-drive", f"id=d0,file={work}/root.img,format=raw,if=none", "-device", "virtio-blk-device,drive=d0",
            "-drive", f"id=d1,file={work}/vol.img,format=raw,if=none", "-device", "virtio-blk-device,drive=d1",
            "-netdev", "user,id=n0", "-device", "virtio-net-device,netdev=n0",
            "-chardev", f"socket,id=ch0,path={self.sock_path},server=on,wait=off",
            "-device", "virtio-serial-device", "-device", "virtserialport,chardev=ch0,name=vt"])
        self.connect()

    def connect(self):
        for _ in range(400):
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(self.sock_path)
                self.buf = b""
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("the channel socket never appeared")

    def send(self, frame):
        self.sock.sendall((json.dumps(frame) + "\n").encode())

    def frames(self, timeout):
        self.sock.settimeout(timeout)
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                frame = json.loads(line)
                shown = f"[{frame['stream']}] {frame['line'][:100]}" if frame["type"] == "log" else frame
                print(f"{time.time() - self.t0:6.2f}s <- {shown}")
                yield frame
            data = self.sock.recv(65536)
            if not data:
                return
            self.buf += data

    def until(self, pred, timeout=60):
        got = []
        for frame in self.frames(timeout):
            got.append(frame)
            if pred(frame):
                return got
        raise AssertionError(f"channel closed while waiting; got {got}")

    def exec(self, id, argv, stdin=None, tty=False, signal=None):
        self.send({"type": "exec", "id": id, "argv": argv, "tty": tty, "cols": 100, "rows": 30})
        if stdin is not None:
            self.send({"type": "exec_input", "id": id, "data_b64": base64.b64encode(stdin).decode()})
            if not tty:
                self.send({"type": "exec_eof", "id": id})
        if signal:
            time.sleep(0.5)
            self.send({"type": "exec_signal", "id": id, "signal": signal})
        out = b""
        frames = self.until(lambda f: f["type"] == "exec_exited" and f["id"] == id, 30)
        for f in frames:
            if f["type"] == "exec_output" and f["id"] == id:
                out += base64.b64decode(f["data_b64"])
        return out, frames[-1]


def main():
    kdir = kernel_dir()
    if not os.access(INIT, os.X_OK):
        sys.exit(f"{INIT} is missing: run scripts/build-init.sh")
    work = tempfile.mkdtemp(prefix="vt-init-smoke-")
    try:
        build(work, kdir)
        g = Guest(work, kdir)
        g.until(lambda f: f["type"] == "hello")
        script = ('echo "$GREETING from $(hostname) uid=$(id -u) pwd=$(pwd)"; cat /run/secrets/token; echo; '
                  'touch /data/ok && echo data-writable; ip -6 route | grep -q "default via fd00:1::1" && echo route-ok; '
                  'printf "%020000d\\n" 0; trap "echo got-term; exit 3" TERM; echo ready; while true; do sleep 0.2; done')
        g.send({"type": "setup", "hostname": "smoke",
                "ipv6": {"address": "fd00:1::2", "prefix_len": 64, "gateway": "fd00:1::1"},
                "env": [["GREETING", "hi"]], "argv": ["sh", "-c", script], "workdir": "/srv/work",
                "uid": 1000, "gid": 1000,
                "secrets": [{"path": "/run/secrets/token", "content_b64": base64.b64encode(b"t0ken").decode(),
                             "mode": 0o400, "uid": 1000, "gid": 1000}],
                "volumes": [{"device": "/dev/vdb", "mount": "/data"}], "grace_ms": 3000})
        got = g.until(lambda f: f["type"] in ("error", "exited") or f.get("line") == "ready")
        lines = [f["line"] for f in got if f["type"] == "log"]
        assert got[-1].get("line") == "ready", got[-1]
        assert "hi from smoke uid=1000 pwd=/srv/work" in lines and "t0ken" in lines, lines
        assert "data-writable" in lines and "route-ok" in lines, lines
        assert [len(l) for l in lines if l.startswith("000")] == [16384, 3616], "long line split"

        out, end = g.exec(1, ["cat"], b"abc\n")
        assert out == b"abc\n" and end["code"] == 0, (out, end)
        out, end = g.exec(2, ["sh", "-c", "echo out; echo err >&2; exit 7"])
        assert out == b"out\nerr\n" and end["code"] == 7, (out, end)
        out, end = g.exec(3, ["sh"], b"stty size; tty; exit 5\n", tty=True)
        assert end["code"] == 5 and b"30 100" in out and b"/dev/pts/" in out, (out, end)
        out, end = g.exec(4, ["nonexistent"])
        assert end["code"] == 127, end
        out, end = g.exec(5, ["sleep", "100"], signal=9)
        assert end["signal"] == 9, end
        out, end = g.exec(6, ["hello"])
        assert out == b"via-abs-symlink\n", out

        g.sock.close()
        time.sleep(0.5)
        g.connect()
        g.until(lambda f: f["type"] == "started", 10)  # Hello, then the state again

        g.send({"type": "stop", "grace_ms": 3000})
        got = g.until(lambda f: f["type"] == "exited", 30)
        assert got[-1]["code"] == 3 and got[-2].get("line") == "got-term", got
        list(g.frames(20))
        rc = g.qemu.wait(20)
        console = open(g.console, errors="replace").read()
        assert "EXT4-fs (vda): unmounting filesystem" in console, "clean unmount"
        print(f"ok: qemu exited {rc}, {time.time() - g.t0:.1f}s in all")
    except BaseException:
        print(f"failed; console and images kept in {work}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
