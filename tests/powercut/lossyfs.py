#!/usr/bin/python3
"""lossyfs: a FUSE file system that forgets everything not fsync'd, for power-cut tests.

    lossyfs.py BACKING MOUNTPOINT [--fsync-delay-ms N]

Serves the tree under BACKING at MOUNTPOINT (runs in the foreground, single-threaded, until
unmounted). Everything lives in memory while mounted; BACKING is only read at start and written
when the mount ends, so it always holds the state a power cut would leave.

What survives a power cut (the model, stricter than ext4 or f2fs, as POSIX allows):
- A file's contents and size as of its last fsync/fdatasync (both are treated alike: what
  fdatasync must persist to make the data readable includes the size). Unsynced writes and
  truncates are lost whole; no torn pages are modelled (SQLite's WAL checksums would catch
  them anyway).
- A directory's entries (creates, unlinks, renames, mkdirs) as of its last fsync (fsyncdir).
  A file created and fsync'd but whose directory was never fsync'd is gone; an unlinked file
  whose directory was not fsync'd since comes back with its last synced contents.
- Metadata other than names and sizes (modes, times) is not modelled: it is kept as is.

Directory entries are modelled strictly, without simplification, and SQLite in WAL mode still
works on it, as it must on a real disk: SQLite's unix VFS (3.46, as bundled by rusqlite; it is
only off when built with SQLITE_DISABLE_DIRSYNC, which rusqlite does not set) fsyncs the
directory on the first sync of a WAL or rollback journal it opened with create, and edgemq's own
WAL fsync helper (src/store/mod.rs, WalSync) fsyncs the directory too when it first opens the
log. One directory fsync makes every entry durable, the database file's included. What a cut
can then lose is a database created since the last directory fsync (no acknowledgement depended
on it yet) or an unlink nobody synced (SQLite deletes the WAL at a clean close without a
directory fsync; a WAL that comes back holds only checkpointed frames).

Control file MOUNTPOINT/.lossyfs (not listed, never persisted); write one command per write():
- `cut`: power cut. From then on every operation fails with EIO and changes nothing; BACKING is
  replaced by the durable state before the write() returns. The caller then kills whoever
  used the mount and unmounts it (fusermount -u); this process exits when unmounted.
- `delay MS`: sleep MS milliseconds (may be fractional) in every fsync and fsyncdir, like a
  slow SD card. The whole file system waits meanwhile, as on a card that serializes I/O.
Reading it returns counters: `fsyncs=N fsyncdirs=N writes=N written_bytes=N cut=0|1`.

Unmounting without a cut is a clean shutdown: the current state (synced or not) is written to
BACKING, as a real file system flushes everything on umount.
"""

import errno
import os
import shutil
import stat
import sys
import time

import fusepy

PAGE = 4096
CONTROL = "/.lossyfs"


class Node:
    """An inode: a regular file or a directory, with its current and its durable state."""

    def __init__(self, is_dir, mode, content=b"", entries=None):
        self.is_dir = is_dir
        self.mode = mode
        now = time.time()
        self.mtime = now
        self.ctime = now
        if is_dir:
            self.cur = dict(entries or {})
            self.dur = dict(self.cur)
        else:
            self.cur = bytearray(content)
            self.dur = bytearray(content)
            # Pages whose current bytes may differ from the durable ones (sizes aside).
            self.dirty = set()

    # ----- files -----
    def _mark(self, start, end):
        if end > start:
            self.dirty.update(range(start // PAGE, (end - 1) // PAGE + 1))

    def write(self, offset, data):
        old = len(self.cur)
        end = offset + len(data)
        if end > old:
            self.cur.extend(bytes(end - old))
            self._mark(old, end)
        self.cur[offset:end] = data
        self._mark(offset, end)
        self.mtime = time.time()

    def truncate(self, length):
        old = len(self.cur)
        if length < old:
            del self.cur[length:]
            self._mark(length, length + 1)
        elif length > old:
            self.cur.extend(bytes(length - old))
            self._mark(old, length)
        self.mtime = time.time()

    def sync(self):
        if self.is_dir:
            self.dur = dict(self.cur)
            return
        size = len(self.cur)
        if len(self.dur) > size:
            del self.dur[size:]
        elif len(self.dur) < size:
            self.dur.extend(bytes(size - len(self.dur)))
        for page in self.dirty:
            start = page * PAGE
            end = min(start + PAGE, size)
            if start < end:
                self.dur[start:end] = self.cur[start:end]
        self.dirty.clear()


def load(path):
    """The tree under `path` as nodes, all of it durable."""
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        entries = {name: load(os.path.join(path, name)) for name in os.listdir(path)}
        return Node(True, stat.S_IMODE(st.st_mode), entries=entries)
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            return Node(False, stat.S_IMODE(st.st_mode), content=f.read())
    raise SystemExit(f"lossyfs: {path}: only regular files and directories are supported")


def store(node, path, durable):
    """Writes `node` (its durable or its current state) as `path`."""
    if node.is_dir:
        os.makedirs(path, exist_ok=True)
        os.chmod(path, node.mode)
        for name, child in (node.dur if durable else node.cur).items():
            store(child, os.path.join(path, name), durable)
    else:
        with open(path, "wb") as f:
            f.write(node.dur if durable else node.cur)
        os.chmod(path, node.mode)


class LossyFs(fusepy.Operations):
    use_ns = True
    # No `lock` operation: the kernel keeps POSIX locks (SQLite's) locally for the mount.

    def __init__(self, backing, fsync_delay_ms):
        self.backing = os.path.abspath(backing)
        self.root = load(self.backing)
        self.fsync_delay = fsync_delay_ms / 1000.0
        self.handles = {}
        self.next_handle = 1
        self.cut = False
        self.finished = False
        self.counters = {"fsyncs": 0, "fsyncdirs": 0, "writes": 0, "written_bytes": 0}

    # ----- helpers -----
    def _check(self):
        if self.cut:
            raise fusepy.FuseOSError(errno.EIO)

    def _lookup(self, path):
        node = self.root
        for part in path.strip("/").split("/"):
            if not part:
                continue
            if not node.is_dir or part not in node.cur:
                raise fusepy.FuseOSError(errno.ENOENT)
            node = node.cur[part]
        return node

    def _parent(self, path):
        head, name = os.path.split(path.rstrip("/"))
        parent = self._lookup(head or "/")
        if not parent.is_dir:
            raise fusepy.FuseOSError(errno.ENOTDIR)
        return parent, name

    def _node(self, path, fh):
        node = self.handles.get(fh) if fh else None
        return node if node is not None else self._lookup(path)

    def _handle(self, node):
        fh = self.next_handle
        self.next_handle += 1
        self.handles[fh] = node
        return fh

    def _replace_backing(self, durable):
        for name in os.listdir(self.backing):
            p = os.path.join(self.backing, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
        for name, child in (self.root.dur if durable else self.root.cur).items():
            store(child, os.path.join(self.backing, name), durable)
        self.finished = True

    def _control(self, data):
        words = data.decode("utf-8", "replace").split()
        if words == ["cut"]:
            if not self.cut:
                self.cut = True
                self._replace_backing(durable=True)
                print(f"lossyfs: power cut; {self._status()}", file=sys.stderr, flush=True)
        elif len(words) == 2 and words[0] == "delay":
            try:
                self.fsync_delay = max(0.0, float(words[1])) / 1000.0
            except ValueError:
                raise fusepy.FuseOSError(errno.EINVAL)
        else:
            raise fusepy.FuseOSError(errno.EINVAL)

    def _status(self):
        fields = [f"{k}={v}" for k, v in self.counters.items()]
        return " ".join(fields + [f"cut={int(self.cut)}"])

    # ----- operations -----
    def destroy(self, path):
        if not self.finished:
            self._replace_backing(durable=False)

    def getattr(self, path, fh=None):
        if path == CONTROL:
            return dict(st_mode=stat.S_IFREG | 0o666, st_nlink=1, st_size=4096)
        if self.cut and path != "/":
            raise fusepy.FuseOSError(errno.EIO)
        node = self._node(path, fh)
        ns_m = int(node.mtime * 1e9)
        ns_c = int(node.ctime * 1e9)
        common = dict(st_uid=os.getuid(), st_gid=os.getgid(), st_mtime=ns_m, st_atime=ns_m,
                      st_ctime=ns_c)
        if node.is_dir:
            return dict(common, st_mode=stat.S_IFDIR | node.mode, st_nlink=2,
                        st_size=4096)
        size = len(node.cur)
        return dict(common, st_mode=stat.S_IFREG | node.mode, st_nlink=1, st_size=size,
                    st_blocks=(size + 511) // 512, st_blksize=PAGE)

    def access(self, path, amode):
        if path != CONTROL:
            self._check()
            self._lookup(path)
        return 0

    def readdir(self, path, fh):
        self._check()
        node = self._lookup(path)
        return [".", ".."] + list(node.cur)

    def opendir(self, path):
        self._check()
        if not self._lookup(path).is_dir:
            raise fusepy.FuseOSError(errno.ENOTDIR)
        return 0

    def fsyncdir(self, path, datasync, fh):
        self._check()
        node = self._lookup(path)
        self.counters["fsyncdirs"] += 1
        if self.fsync_delay:
            time.sleep(self.fsync_delay)
        node.sync()
        return 0

    def mkdir(self, path, mode):
        self._check()
        parent, name = self._parent(path)
        if name in parent.cur:
            raise fusepy.FuseOSError(errno.EEXIST)
        parent.cur[name] = Node(True, stat.S_IMODE(mode))
        return 0

    def rmdir(self, path):
        self._check()
        parent, name = self._parent(path)
        node = self._lookup(path)
        if not node.is_dir:
            raise fusepy.FuseOSError(errno.ENOTDIR)
        if node.cur:
            raise fusepy.FuseOSError(errno.ENOTEMPTY)
        del parent.cur[name]
        return 0

    def create(self, path, mode, fi=None):
        if path == CONTROL:
            return 0
        self._check()
        parent, name = self._parent(path)
        node = parent.cur.get(name)
        if node is None:
            node = Node(False, stat.S_IMODE(mode))
            parent.cur[name] = node
        return self._handle(node)

    def open(self, path, flags):
        if path == CONTROL:
            return 0
        self._check()
        node = self._lookup(path)
        if node.is_dir:
            raise fusepy.FuseOSError(errno.EISDIR)
        if flags & os.O_TRUNC:
            node.truncate(0)
        return self._handle(node)

    def release(self, path, fh):
        self.handles.pop(fh, None)
        return 0

    def flush(self, path, fh):
        return 0

    def read(self, path, size, offset, fh):
        if path == CONTROL:
            return (self._status() + "\n").encode()[offset:offset + size]
        self._check()
        node = self._node(path, fh)
        return bytes(node.cur[offset:offset + size])

    def write(self, path, data, offset, fh):
        if path == CONTROL:
            self._control(data)
            return len(data)
        self._check()
        self._node(path, fh).write(offset, data)
        self.counters["writes"] += 1
        self.counters["written_bytes"] += len(data)
        return len(data)

    def truncate(self, path, length, fh=None):
        if path == CONTROL:
            return 0
        self._check()
        node = self._node(path, fh)
        if node.is_dir:
            raise fusepy.FuseOSError(errno.EISDIR)
        node.truncate(length)
        return 0

    def fsync(self, path, datasync, fh):
        if path == CONTROL:
            return 0
        self._check()
        node = self._node(path, fh)
        self.counters["fsyncs"] += 1
        if self.fsync_delay:
            time.sleep(self.fsync_delay)
        node.sync()
        return 0

    def unlink(self, path):
        if path == CONTROL:
            raise fusepy.FuseOSError(errno.EPERM)
        self._check()
        parent, name = self._parent(path)
        node = self._lookup(path)
        if node.is_dir:
            raise fusepy.FuseOSError(errno.EISDIR)
        del parent.cur[name]
        return 0

    def rename(self, old, new):
        self._check()
        old_parent, old_name = self._parent(old)
        new_parent, new_name = self._parent(new)
        node = self._lookup(old)
        target = new_parent.cur.get(new_name)
        if target is not None and target.is_dir and target.cur:
            raise fusepy.FuseOSError(errno.ENOTEMPTY)
        del old_parent.cur[old_name]
        new_parent.cur[new_name] = node
        return 0

    def chmod(self, path, mode):
        self._check()
        self._lookup(path).mode = stat.S_IMODE(mode)
        return 0

    def chown(self, path, uid, gid):
        self._check()
        return 0

    def utimens(self, path, times=None):
        if path == CONTROL:
            return 0
        self._check()
        node = self._lookup(path)
        node.mtime = times[1] / 1e9 if times else time.time()
        return 0

    def statfs(self, path):
        return dict(f_bsize=PAGE, f_frsize=PAGE, f_blocks=1 << 20, f_bfree=1 << 19,
                    f_bavail=1 << 19, f_files=1 << 16, f_ffree=1 << 15, f_namemax=255)

    def link(self, target, source):
        raise fusepy.FuseOSError(errno.EPERM)

    def symlink(self, target, source):
        raise fusepy.FuseOSError(errno.EPERM)


def main(argv):
    args = list(argv[1:])
    delay = 0.0
    if "--fsync-delay-ms" in args:
        i = args.index("--fsync-delay-ms")
        delay = float(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    backing, mountpoint = args
    if not os.path.isdir(backing):
        print(f"lossyfs: {backing} is not a directory", file=sys.stderr)
        return 2
    fs = LossyFs(backing, delay)
    # Single-threaded (nothreads): operations run one at a time, in arrival order. big_writes:
    # writes up to 128KB in one request (libfuse 2 splits at 4KB otherwise).
    fusepy.FUSE(fs, mountpoint, foreground=True, nothreads=True, big_writes=True,
                fsname="lossyfs", subtype="lossyfs")
    print(f"lossyfs: unmounted; {fs._status()}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
