#!/usr/bin/env python3
"""Build AUREN's images without a Docker engine or a registry, from the project's Dockerfile.

    images.py build OUT_DIR      build runtime, operator and pause images as OCI archives
    images.py check OUT_DIR      check built images against the Dockerfile (e2e tier)
    images.py loader-guard       self-test of the Dockerfile's library guard (package tier)
    images.py cc-base ROOTFS     a distroless/cc-style base with no binary (dockerfile-build.sh)

How the Dockerfile is followed:
- the `builder` stage is the host's own `cargo build --release --locked` with the same
  packages and LIBZ_SYS_STATIC=1 (scripts/images.sh runs it); its `/out/<bin>` are the
  release binaries in $CARGO_TARGET_DIR/release;
- the external base (`gcr.io/distroless/cc-debian12:nonroot`) cannot be pulled here: it is
  replaced by a distroless-style base assembled from this machine's Debian files: the dynamic
  loader and exactly the shared libraries the image's binaries load (ldd), CA certificates,
  /etc/passwd and /etc/group with root, nobody and nonroot (65532), /tmp (1777). No shell, no
  package manager;
- every instruction of the final stage and its local parents (COPY --from=builder, USER,
  EXPOSE, ENV, ENTRYPOINT, CMD, WORKDIR) is applied as written, with buildah (vfs storage).
Any other instruction in those stages is refused, so the two builds cannot drift silently.
The pause image (the pod sandbox of containerd's CRI) is a 20-line static C program.
"""

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
TAG = "0.1.0"
IMAGES = {"runtime": f"docker.io/auren/runtime:{TAG}", "operator": f"docker.io/auren/operator:{TAG}"}
PAUSE = "docker.io/auren/pause:3.2"
NONROOT = 65532
PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, stop); signal(SIGTERM, stop); signal(SIGCHLD, reap);
  for (;;) pause();
}
"""


def die(msg):
    print(f"[images] error: {msg}", file=sys.stderr)
    sys.exit(1)


def say(msg):
    print(f"[images] {msg}", file=sys.stderr)


# ------------------------------------------------------------------ Dockerfile

def stages(path=DOCKERFILE):
    """name -> {"from": str, "steps": [(instruction, args)]}, continuation lines joined."""
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"\\\n", " ", text)
    out, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            current = m.group(2) or f"stage{len(out)}"
            out[current] = {"from": m.group(1), "steps": []}
        elif current is not None:
            out[current]["steps"].append((instr, args.strip()))
    return out


def chain(all_stages, target):
    """The target's steps, its local parents' first; and the external base it starts from."""
    steps, name = [], target
    while name in all_stages:
        steps = all_stages[name]["steps"] + steps
        name = all_stages[name]["from"]
    return name, steps


def plan(target):
    """What the Dockerfile says the `target` image is: base, copies, config."""
    base, steps = chain(stages(), target)
    image = {"base": base, "copies": [], "user": None, "expose": [], "env": {},
             "entrypoint": None, "cmd": None, "workdir": None}
    for instr, args in steps:
        if instr == "COPY":
            words = shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            if flags != ["--from=builder"]:
                die(f"stage {target}: only COPY --from=builder is supported, got: COPY {args}")
            *srcs, dest = paths
            for src in srcs:
                if not src.startswith("/out/"):
                    die(f"stage {target}: COPY source {src} is not a builder output (/out/...)")
                image["copies"].append((os.path.basename(src), dest))
        elif instr == "USER":
            image["user"] = args
        elif instr == "EXPOSE":
            image["expose"] += args.split()
        elif instr == "ENV":
            for pair in shlex.split(args):
                k, _, v = pair.partition("=")
                image["env"][k] = v
        elif instr in ("ENTRYPOINT", "CMD"):
            image[instr.lower()] = json.loads(args)
        elif instr == "WORKDIR":
            image["workdir"] = args
        else:
            die(f"stage {target}: {instr} is not supported by the local image build")
    return image


# ------------------------------------------------------------------ the base

def shared_libs(binary):
    """Absolute paths of the loader and the libraries `binary` loads."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"\S+ => (/\S+)", line) or re.match(r"(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
        elif "=> not found" in line:
            die(f"{binary}: {line}")
    return libs


def copy_preserving(path, rootfs):
    """Copy `path` into rootfs at the same place, following its symlinks (kept as links)."""
    dest = os.path.join(rootfs, path.lstrip("/"))
    if os.path.lexists(dest):
        return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.islink(path):
        target = os.readlink(path)
        os.symlink(target, dest)
        copy_preserving(os.path.normpath(os.path.join(os.path.dirname(path), target)), rootfs)
    else:
        shutil.copy2(path, dest)


def base_files(rootfs):
    """What every distroless-style base holds besides libraries: passwd/group with nonroot
    (65532), CA certificates, /tmp (1777), /home/nonroot, /usr/local/bin."""
    for d in ("etc/ssl/certs", "tmp", "usr/local/bin", "home/nonroot"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    os.chown(os.path.join(rootfs, "home/nonroot"), NONROOT, NONROOT)
    with open(os.path.join(rootfs, "etc/passwd"), "w", encoding="utf-8") as f:
        f.write("root:x:0:0:root:/root:/sbin/nologin\n"
                "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
                f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n")
    with open(os.path.join(rootfs, "etc/group"), "w", encoding="utf-8") as f:
        f.write(f"root:x:0:\nnogroup:x:65534:\nnonroot:x:{NONROOT}:\n")
    certs = "/etc/ssl/certs/ca-certificates.crt"
    if not os.path.exists(certs):
        die(f"{certs} missing: apt-get install ca-certificates")
    shutil.copy2(certs, os.path.join(rootfs, certs.lstrip("/")))


def copy_libs(rootfs, libs):
    for lib in libs:
        copy_preserving(lib, rootfs)
        # the loader is also reached through /lib64 -> usr/lib64 style links on merged-/usr
        real = os.path.realpath(lib)
        if real != lib:
            copy_preserving(real, rootfs)


def assemble_base(rootfs, binaries):
    """The base of `make images`: the loader and exactly the libraries `binaries` load."""
    base_files(rootfs)
    for b in binaries:
        copy_libs(rootfs, shared_libs(b))


# What gcr.io/distroless/cc-debian12 carries besides the static base: these Debian packages'
# shared libraries (glibc with the loader, libgcc_s, libstdc++, libgomp).
CC_PACKAGES = ["libc6", "libgcc-s1", "libstdc++6", "libgomp1"]


def cc_libs():
    libs = []
    for pkg in CC_PACKAGES:
        out = subprocess.run(["dpkg-query", "-L", pkg], check=True, capture_output=True,
                             text=True).stdout
        for path in out.splitlines():
            if (re.match(r"/(usr/)?lib(32|64|x32)?/", path) and re.search(r"\.so(\.|$)", path)
                    and "/gconv/" not in path and os.path.isfile(path)):
                # one place per file: /lib/x86_64-linux-gnu/x -> /usr/lib/x86_64-linux-gnu/x
                libs.append(os.path.join(os.path.realpath(os.path.dirname(path)),
                                         os.path.basename(path)))
    return sorted(set(libs))


def assemble_cc_base(rootfs):
    """A stand-in for gcr.io/distroless/cc-debian12:nonroot before any binary exists (the
    Dockerfile build, scripts/dockerfile-build.sh): base_files plus the CC_PACKAGES libraries."""
    base_files(rootfs)
    for top in ("lib", "lib32", "lib64", "libx32"):  # merged-/usr links, as on the host
        if os.path.islink("/" + top):
            os.symlink(os.readlink("/" + top), os.path.join(rootfs, top))
    copy_libs(rootfs, cc_libs())


# ------------------------------------------------------------------ buildah

class Buildah:
    def __init__(self, store):
        self.cmd = ["buildah", "--storage-driver", "vfs", "--root", os.path.join(store, "root"),
                    "--runroot", os.path.join(store, "run")]

    def __call__(self, *args):
        r = subprocess.run(self.cmd + list(args), check=False, capture_output=True, text=True)
        if r.returncode != 0:
            die(f"buildah {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout.strip()


def build_image(buildah, name, rootfs, config, out_tar):
    c = buildah("from", "scratch")
    try:
        # one layer: the whole rootfs (base + binaries), owned by root as in distroless
        buildah("copy", c, rootfs + "/.", "/")
        args = []
        if config.get("user"):
            args += ["--user", config["user"]]
        for port in config.get("expose", []):
            args += ["--port", port]
        for k, v in config.get("env", {}).items():
            args += ["--env", f"{k}={v}"]
        if config.get("workdir"):
            args += ["--workingdir", config["workdir"]]
        args += ["--entrypoint", json.dumps(config["entrypoint"])]
        args += ["--cmd", " ".join(config["cmd"]) if config.get("cmd") else ""]
        args += ["--label", "org.opencontainers.image.source=auren",
                 "--label", "io.auren.built-from=Dockerfile (scripts/images.py)"]
        buildah("config", *args, c)
        image_id = buildah("commit", "--rm", "--format", "oci", c, name)
    except SystemExit:
        buildah("rm", c)
        raise
    if os.path.exists(out_tar):
        os.remove(out_tar)
    buildah("push", name, f"oci-archive:{out_tar}:{name}")
    buildah("rmi", image_id)


def build(out_dir, release_dir):
    os.makedirs(out_dir, exist_ok=True)
    buildah = Buildah(os.path.join(out_dir, "buildah"))
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="auren-images.") as tmp:
        for target, name in IMAGES.items():
            p = plan(target)
            if not p["base"].startswith("gcr.io/distroless/cc"):
                die(f"stage {target} starts from {p['base']}; only distroless/cc is assembled here")
            rootfs = os.path.join(tmp, target)
            bins = [os.path.join(release_dir, src) for src, _ in p["copies"]]
            for b in bins:
                if not os.access(b, os.X_OK):
                    die(f"{b} missing: build it with cargo build --release first")
            assemble_base(rootfs, bins)
            for (src, dest), b in zip(p["copies"], bins):
                d = os.path.join(rootfs, dest.lstrip("/"))
                if dest.endswith("/"):
                    d = os.path.join(d, src)
                os.makedirs(os.path.dirname(d), exist_ok=True)
                shutil.copy2(b, d)
            say(f"building {name} ({', '.join(src for src, _ in p['copies'])})")
            build_image(buildah, name, rootfs, p, os.path.join(out_dir, f"{target}.tar"))
        pause_dir = os.path.join(tmp, "pause")
        os.makedirs(pause_dir)
        with open(os.path.join(tmp, "pause.c"), "w", encoding="utf-8") as f:
            f.write(PAUSE_C)
        subprocess.run(["gcc", "-Os", "-static", "-s", "-o", os.path.join(pause_dir, "pause"),
                        os.path.join(tmp, "pause.c")], check=True)
        say(f"building {PAUSE}")
        build_image(buildah, PAUSE, pause_dir,
                    {"user": "65535:65535", "entrypoint": ["/pause"]},
                    os.path.join(out_dir, "pause.tar"))
    for target in list(IMAGES) + ["pause"]:
        sizes[target] = archive_sizes(os.path.join(out_dir, f"{target}.tar"))
    with open(os.path.join(out_dir, "sizes.json"), "w", encoding="utf-8") as f:
        json.dump(sizes, f, indent=1)
    for target, s in sizes.items():
        say(f"{target}: {s['unpacked'] / 2**20:.1f} MiB unpacked, {s['archive'] / 2**20:.1f} MiB compressed")


# ------------------------------------------------------------------ reading an archive

def read_archive(path):
    """(config, [(member path, size, mode, uid)]) of the single image in an OCI archive."""
    with tarfile.open(path) as t:
        def blob(digest):
            return t.extractfile("blobs/sha256/" + digest.split(":", 1)[1]).read()
        index = json.loads(t.extractfile("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        files = []
        for layer in manifest["layers"]:
            raw = blob(layer["digest"])
            with tempfile.NamedTemporaryFile() as f:
                f.write(raw)
                f.flush()
                with tarfile.open(f.name) as lt:
                    files += [(m.name.lstrip("./"), m.size, m.mode, m.uid, m.issym())
                              for m in lt.getmembers()]
        return config, files


def elf_sections(data):
    """Section names of a 64-bit little-endian ELF file."""
    import struct
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def header(i):
        return struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
    strtab_off, strtab_size = header(shstrndx)[4], header(shstrndx)[5]
    strtab = data[strtab_off:strtab_off + strtab_size]
    return {strtab[header(i)[0]:strtab.index(b"\0", header(i)[0])].decode() for i in range(shnum)}


def archive_binaries(path):
    """{path: bytes} of the files under usr/local/bin in the image."""
    out = {}
    with tarfile.open(path) as t:
        index = json.loads(t.extractfile("index.json").read())
        blob = lambda d: t.extractfile("blobs/sha256/" + d.split(":", 1)[1]).read()
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        for layer in manifest["layers"]:
            with tempfile.NamedTemporaryFile() as f:
                f.write(blob(layer["digest"]))
                f.flush()
                with tarfile.open(f.name) as lt:
                    for m in lt.getmembers():
                        name = m.name.lstrip("./")
                        if name.startswith("usr/local/bin/") and m.isfile():
                            out[name] = lt.extractfile(m).read()
    return out


# Goals (issue 13): unpacked size of each image.
SIZE_GOALS = {"operator": 40 * 2**20, "runtime": 80 * 2**20}


def archive_sizes(path):
    _, files = read_archive(path)
    return {"unpacked": sum(size for _, size, *_ in files), "archive": os.path.getsize(path)}


def check(out_dir):
    """The built images are what the Dockerfile's final stages say, and nothing more."""
    problems = []
    for target in IMAGES:
        p = plan(target)
        config, files = read_archive(os.path.join(out_dir, f"{target}.tar"))
        cfg = config.get("config", {})
        names = {f[0]: f for f in files}
        want_bins = {os.path.join(d.lstrip("/"), s) if d.endswith("/") else d.lstrip("/")
                     for s, d in p["copies"]}
        have_bins = {n for n in names if n.startswith("usr/local/bin/") and not names[n][4]}
        if have_bins != want_bins:
            problems.append(f"{target}: binaries {sorted(have_bins)}, Dockerfile says {sorted(want_bins)}")
        if cfg.get("User") != p["user"]:
            problems.append(f"{target}: user {cfg.get('User')!r}, Dockerfile says {p['user']!r}")
        uid = (p["user"] or "").split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            problems.append(f"{target}: USER {p['user']!r} is not a numeric non-root uid")
        if cfg.get("Entrypoint") != p["entrypoint"]:
            problems.append(f"{target}: entrypoint {cfg.get('Entrypoint')}, Dockerfile says {p['entrypoint']}")
        env = set(cfg.get("Env") or [])
        missing = sorted(f"{k}={v}" for k, v in p["env"].items() if f"{k}={v}" not in env)
        if missing:
            problems.append(f"{target}: environment lacks {missing}, Dockerfile sets them")
        ports = sorted(k.split("/")[0] for k in cfg.get("ExposedPorts", {}))
        if ports != sorted(p["expose"]):
            problems.append(f"{target}: ports {ports}, Dockerfile says {sorted(p['expose'])}")
        shells = [n for n in names if os.path.basename(n) in ("sh", "bash", "dash", "apt", "dpkg")]
        if shells:
            problems.append(f"{target}: distroless image carries {shells}")
        if not any(n.endswith("ca-certificates.crt") for n in names):
            problems.append(f"{target}: no CA certificates")
        for name, data in archive_binaries(os.path.join(out_dir, f"{target}.tar")).items():
            sections = elf_sections(data)
            if sections is None or ".symtab" in sections:
                problems.append(f"{target}: {name} is not a stripped ELF binary")
        size = archive_sizes(os.path.join(out_dir, f"{target}.tar"))["unpacked"]
        if size >= SIZE_GOALS[target]:
            problems.append(f"{target}: {size / 2**20:.1f} MiB, goal < {SIZE_GOALS[target] / 2**20:.0f} MiB")
    for p in problems:
        print(f"[images] FAIL {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    sizes = json.load(open(os.path.join(out_dir, "sizes.json"), encoding="utf-8"))
    print(json.dumps(sizes))


# ldd output of a binary that needs only what distroless/cc ships, on both architectures, and
# of one that needs more: the Dockerfile's guard must pass the first two and stop the third.
LDD_FIXTURES = {
    "amd64": ("""\tlinux-vdso.so.1 (0x00007ffc8a1f2000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f0f7d000000)
\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f0f7cf21000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0f7cd40000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0f7f4a1000)
""", True),
    "arm64": ("""\tlinux-vdso.so.1 (0x0000ffff9c5f1000)
\tlibgcc_s.so.1 => /lib/aarch64-linux-gnu/libgcc_s.so.1 (0x0000ffff9a0a0000)
\tlibm.so.6 => /lib/aarch64-linux-gnu/libm.so.6 (0x0000ffff99ff0000)
\tlibc.so.6 => /lib/aarch64-linux-gnu/libc.so.6 (0x0000ffff99e40000)
\t/lib/ld-linux-aarch64.so.1 (0x0000ffff9c5b4000)
""", True),
    "amd64 with libssl and libz": ("""\tlinux-vdso.so.1 (0x00007ffc8a1f2000)
\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f0f7d100000)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f0f7d0e0000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0f7cd40000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f0f7f4a1000)
""", False),
}


def loader_guard_selftest():
    """Runs the Dockerfile's own library guard (its awk | grep -Ev, extracted from the builder
    stage) on the fixtures: amd64 and arm64 binaries pass, one needing libssl/libz fails."""
    run = " ".join(args for instr, args in stages()["builder"]["steps"] if instr == "RUN")
    m = re.search(r"extra=\$\((ldd \"\$bin\" \| .*? \|\| true)\)", run)
    if not m:
        die("the builder stage's library guard (extra=$(ldd ... || true)) was not found")
    pipeline = m.group(1).replace('ldd "$bin"', "cat")
    for arch, (ldd, allowed) in LDD_FIXTURES.items():
        extra = subprocess.run(["bash", "-c", pipeline], input=ldd, capture_output=True,
                               text=True, check=True).stdout.strip()
        if allowed and extra:
            die(f"the Dockerfile's guard refuses a valid {arch} binary: it flags {extra!r}")
        if not allowed and not extra:
            die(f"the Dockerfile's guard lets through a binary needing more ({arch})")
        say(f"loader guard: {arch}: {'passes' if allowed else 'refused: ' + extra.replace(chr(10), ' ')}")


def cache_key(release_dir):
    """Changes whenever a binary, the Dockerfile or this script changes."""
    h = hashlib.sha256()
    for path in [DOCKERFILE, os.path.abspath(__file__)]:
        h.update(open(path, "rb").read())
    for target in IMAGES:
        for src, _ in plan(target)["copies"]:
            h.update(src.encode())
            h.update(open(os.path.join(release_dir, src), "rb").read())
    return h.hexdigest()[:16]


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    cmd = sys.argv[1]
    if cmd == "build":
        build(sys.argv[2], sys.argv[3])
    elif cmd == "check":
        check(sys.argv[2])
    elif cmd == "loader-guard":
        loader_guard_selftest()
    elif cmd == "cc-base":
        assemble_cc_base(sys.argv[2])
    elif cmd == "cc-base-key":
        versions = subprocess.run(["dpkg-query", "-W", *CC_PACKAGES, "ca-certificates"],
                                  check=True, capture_output=True, text=True).stdout
        h = hashlib.sha256(versions.encode() + open(os.path.abspath(__file__), "rb").read())
        print(h.hexdigest()[:16])
    elif cmd == "key":
        print(cache_key(sys.argv[2]))
    elif cmd == "plan":
        print(json.dumps(plan(sys.argv[2]), indent=1))
    else:
        die(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
