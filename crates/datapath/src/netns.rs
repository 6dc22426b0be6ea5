//! Network namespaces: open one by path or pid, run work inside it on a dedicated
//! thread, and open sockets that live in it.
//!
//! The router is a multithreaded tokio process, so the calling thread never changes
//! namespace: `Netns::run` spawns a scoped thread, `setns(CLONE_NEWNET)` there, runs
//! the closure and lets the thread end. Sockets keep the namespace they were created in.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where a network namespace is: a file (`/run/netns/NAME`, a bind mount) or a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetnsTarget {
    /// A namespace file, e.g. `/run/netns/foo` or `/proc/123/ns/net`.
    Path(PathBuf),
    /// The namespace of a process, `/proc/PID/ns/net`.
    Pid(u32),
}

impl NetnsTarget {
    /// The file that holds the namespace.
    pub fn path(&self) -> PathBuf {
        match self {
            NetnsTarget::Path(p) => p.clone(),
            NetnsTarget::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }
}

/// ioctl on a namespace fd that returns its CLONE_NEW* type (linux/nsfs.h).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// An open network namespace (holding its fd keeps it alive).
#[derive(Debug)]
pub struct Netns {
    file: File,
    what: String,
    inode: u64,
    dev: u64,
}

impl Netns {
    /// Opens the namespace a target names; fails clearly if it is not a network namespace.
    pub fn open(target: &NetnsTarget) -> Result<Netns> {
        Self::open_path(&target.path())
    }

    /// Opens a namespace file.
    pub fn open_path(path: &Path) -> Result<Netns> {
        let file = File::options()
            .read(true)
            .open(path)
            .map_err(|source| Error::NetnsOpen {
                path: path.to_path_buf(),
                source,
            })?;
        // SAFETY: the fd is valid for the lifetime of `file`; the ioctl takes no argument.
        let ty = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if ty != libc::CLONE_NEWNET {
            return Err(Error::NotNetns {
                path: path.to_path_buf(),
            });
        }
        let meta = file.metadata().map_err(|source| Error::NetnsOpen {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Netns {
            file,
            what: path.display().to_string(),
            inode: meta.ino(),
            dev: meta.dev(),
        })
    }

    /// The namespace of the calling thread (for the router: the host).
    pub fn current() -> Result<Netns> {
        let mut ns = Self::open_path(Path::new("/proc/thread-self/ns/net"))?;
        ns.what = format!("current netns (inode {})", ns.inode);
        Ok(ns)
    }

    /// A human-readable name for messages.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// The namespace's inode number (unique per live namespace, with `dev`).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// True if both handles name the same namespace.
    pub fn same_as(&self, other: &Netns) -> bool {
        self.inode == other.inode && self.dev == other.dev
    }

    /// True if this is the calling thread's namespace.
    pub fn is_current(&self) -> bool {
        Netns::current().map(|c| self.same_as(&c)).unwrap_or(false)
    }

    /// Runs `f` on a fresh thread that has entered this namespace; the caller's thread
    /// is untouched. Blocking: from async code call it inside `spawn_blocking`.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let fd = self.file.as_fd();
        std::thread::scope(|s| {
            let handle = std::thread::Builder::new()
                .name("weft-netns".into())
                .spawn_scoped(s, move || -> Result<T> {
                    // SAFETY: fd is a valid namespace fd borrowed for the scope.
                    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        return Err(Error::Setns {
                            what: self.what.clone(),
                            source: std::io::Error::last_os_error(),
                        });
                    }
                    Ok(f())
                })
                .map_err(|e| Error::NetnsThread {
                    what: self.what.clone(),
                    reason: e.to_string(),
                })?;
            handle.join().map_err(|_| Error::NetnsThread {
                what: self.what.clone(),
                reason: "the closure panicked".into(),
            })?
        })
    }

    /// Opens a raw socket(2) inside this namespace; it stays bound to it.
    pub fn socket(&self, domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd> {
        let what = self.what.clone();
        self.run(move || {
            // SAFETY: plain socket(2) call; the result is checked before wrapping.
            let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
            if fd < 0 {
                return Err(Error::Io {
                    op: format!("open socket({domain},{ty},{protocol}) in {what}"),
                    source: std::io::Error::last_os_error(),
                });
            }
            // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        })?
    }

    /// Binds a UDP socket inside this namespace (e.g. a DNS listener of a container).
    pub fn udp_bind(&self, addr: SocketAddr) -> Result<UdpSocket> {
        self.bind(format!("bind UDP {addr}"), move || UdpSocket::bind(addr))
    }

    /// Opens a TCP listener inside this namespace.
    pub fn tcp_listen(&self, addr: SocketAddr) -> Result<TcpListener> {
        self.bind(format!("listen TCP {addr}"), move || {
            TcpListener::bind(addr)
        })
    }

    /// Makes a socket with `bind` inside this namespace; a failure is `op` in it.
    fn bind<S: Send>(
        &self,
        op: String,
        bind: impl FnOnce() -> std::io::Result<S> + Send,
    ) -> Result<S> {
        let what = self.what.clone();
        self.run(move || {
            bind().map_err(|source| Error::Io {
                op: format!("{op} in {what}"),
                source,
            })
        })?
    }

    /// The fd of the namespace (to move a link into it with IFLA_NET_NS_FD).
    pub(crate) fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}
