//! The sleeve's UDP socket: GSO on send (one sendmmsg carries trains of equal-size
//! datagrams), GRO and recvmmsg on receive, all into buffers allocated once.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::SleeveError;

const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// Most segments the kernel takes in one GSO send.
const MAX_GSO_SEGS: usize = 64;
/// Most payload bytes in one GSO send (IP total length is 16 bits).
const MAX_GSO_BYTES: usize = 65_000;
/// Datagrams per recvmmsg.
const RX_MSGS: usize = 16;
/// Bytes per receive buffer: a whole GRO train.
pub const RX_BUF: usize = 65_536;
/// Send batch capacity in bytes.
const TX_BUF: usize = 1 << 20;
/// Messages (GSO trains) per sendmmsg.
const TX_MSGS: usize = 64;
const CMSG_SPACE: usize = 64;

/// A socket address in the kernel's form, cheap to compare and copy.
#[derive(Clone, Copy)]
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl std::fmt::Debug for RawAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawAddr({} bytes)", self.len)
    }
}

impl RawAddr {
    /// Converts a std address.
    pub fn new(addr: SocketAddr) -> RawAddr {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        RawAddr {
            storage,
            len: len as libc::socklen_t,
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: viewing the initialised storage as bytes, bounded by its size.
        let all = unsafe {
            std::slice::from_raw_parts(
                (&self.storage as *const libc::sockaddr_storage).cast::<u8>(),
                size_of::<libc::sockaddr_storage>(),
            )
        };
        &all[..(self.len as usize).min(all.len())]
    }
}

impl PartialEq for RawAddr {
    fn eq(&self, other: &RawAddr) -> bool {
        self.bytes() == other.bytes()
    }
}

/// The sleeve's UDP socket.
#[derive(Debug)]
pub struct UdpSock {
    fd: OwnedFd,
    local: SocketAddr,
    v6: bool,
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passing a pointer to a live c_int with its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl UdpSock {
    /// Binds the socket (in the caller's network namespace) with GRO and big buffers.
    pub fn bind(addr: SocketAddr) -> Result<UdpSock, SleeveError> {
        let err = |op: &'static str| move |source: io::Error| SleeveError::Udp { addr, op, source };
        let family = if addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket(2); checked below.
        let raw = unsafe {
            libc::socket(
                family,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(err("socket")(io::Error::last_os_error()));
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let f = fd.as_raw_fd();
        // Big buffers absorb bursts of 64 KiB trains; FORCE needs CAP_NET_ADMIN, so fall back.
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if setsockopt_int(f, libc::SOL_SOCKET, force, 8 << 20).is_err() {
                let _ = setsockopt_int(f, libc::SOL_SOCKET, plain, 8 << 20);
            }
        }
        setsockopt_int(f, SOL_UDP, UDP_GRO, 1).map_err(err("enable UDP_GRO"))?;
        // A sleeve started again in this process must get its port back even while a child
        // forked by another thread still holds a copy of the old socket (until it execs).
        // Another program on the port still makes bind fail (it would need this too).
        setsockopt_int(f, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
            .map_err(err("set SO_REUSEADDR"))?;
        // DF on every datagram, and no kernel path-MTU cache refusing sends: the sleeve
        // finds each peer's path MTU itself (probes) and sizes its datagrams to it.
        let (level, opt, probe) = if addr.is_ipv4() {
            (
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_PROBE,
            )
        } else {
            (
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_PROBE,
            )
        };
        setsockopt_int(f, level, opt, probe).map_err(err("set path-MTU discovery to probe"))?;
        let ra = RawAddr::new(addr);
        // SAFETY: bind with a valid sockaddr and its length.
        let r = unsafe {
            libc::bind(
                f,
                (&ra.storage as *const libc::sockaddr_storage).cast(),
                ra.len,
            )
        };
        if r < 0 {
            return Err(err("bind")(io::Error::last_os_error()));
        }
        // SAFETY: getsockname into a storage of the given size.
        let mut st: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let r = unsafe {
            libc::getsockname(f, (&mut st as *mut libc::sockaddr_storage).cast(), &mut len)
        };
        if r < 0 {
            return Err(err("getsockname")(io::Error::last_os_error()));
        }
        let local = match addr {
            SocketAddr::V4(_) => {
                // SAFETY: the kernel filled a sockaddr_in for an AF_INET socket.
                let sin =
                    unsafe { *(&st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                SocketAddr::new(
                    std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()).into(),
                    u16::from_be(sin.sin_port),
                )
            }
            SocketAddr::V6(_) => {
                // SAFETY: the kernel filled a sockaddr_in6 for an AF_INET6 socket.
                let sin6 =
                    unsafe { *(&st as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                SocketAddr::new(
                    std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr).into(),
                    u16::from_be(sin6.sin6_port),
                )
            }
        };
        Ok(UdpSock {
            fd,
            local,
            v6: addr.is_ipv6(),
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether this is an IPv6 socket (40-byte IP headers on the underlay).
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// The descriptor, for poll.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn send_one(&self, to: &RawAddr, data: &[u8]) -> io::Result<()> {
        // SAFETY: sendto with a valid buffer and address.
        let r = unsafe {
            libc::sendto(
                self.raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                0,
                (&to.storage as *const libc::sockaddr_storage).cast(),
                to.len,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Waits until `fd` is ready for `events` or `timeout_ms` passes.
pub fn poll_one(fd: RawFd, events: libc::c_short, timeout_ms: libc::c_int) {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, timeout_ms) };
}

#[derive(Clone, Copy)]
struct TxMsg {
    to: RawAddr,
    start: usize,
    len: usize,
    seg: usize,
    nsegs: usize,
    open: bool,
}

/// Counters of a send batch.
#[derive(Debug, Default, Clone, Copy)]
pub struct TxCounters {
    /// Datagrams handed to the kernel.
    pub datagrams: u64,
    /// sendmmsg calls.
    pub syscalls: u64,
    /// Datagrams the kernel refused (counted, dropped).
    pub errors: u64,
}

/// Datagrams queued for sending; consecutive equal-size datagrams to one address
/// become one GSO train.
pub struct TxBatch {
    buf: Vec<u8>,
    used: usize,
    msgs: Vec<TxMsg>,
    /// What was sent so far.
    pub counters: TxCounters,
    gso: bool,
}

impl Default for TxBatch {
    fn default() -> Self {
        TxBatch {
            buf: vec![0; TX_BUF],
            used: 0,
            msgs: Vec::with_capacity(TX_MSGS),
            counters: TxCounters::default(),
            gso: true,
        }
    }
}

impl TxBatch {
    /// Appends one datagram of at most `max_len` bytes written by `write` (which returns
    /// the real length, 0 to skip). Flushes first when the batch is full. With `gso`
    /// false the datagram is sent on its own, never as part of a GSO train.
    pub fn push(
        &mut self,
        sock: &UdpSock,
        to: &RawAddr,
        max_len: usize,
        gso: bool,
        write: impl FnOnce(&mut [u8]) -> usize,
    ) {
        let max_len = max_len.min(RX_BUF);
        if self.used + max_len > self.buf.len() || self.msgs.len() >= TX_MSGS {
            self.flush(sock);
        }
        let start = self.used;
        let n = write(&mut self.buf[start..start + max_len]).min(max_len);
        if n == 0 {
            return;
        }
        self.used += n;
        if let Some(m) = self.msgs.last_mut() {
            if self.gso
                && gso
                && m.open
                && m.to == *to
                && n <= m.seg
                && m.nsegs < MAX_GSO_SEGS
                && m.len + n <= MAX_GSO_BYTES
                && m.start + m.len == start
            {
                m.len += n;
                m.nsegs += 1;
                m.open = n == m.seg;
                return;
            }
        }
        self.msgs.push(TxMsg {
            to: *to,
            start,
            len: n,
            seg: n,
            nsegs: 1,
            open: gso,
        });
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Sends everything queued (blocking while the socket buffer is full).
    pub fn flush(&mut self, sock: &UdpSock) {
        let count = self.msgs.len();
        if count == 0 {
            return;
        }
        let mut iovs: [libc::iovec; TX_MSGS] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; TX_MSGS];
        let mut cmsgs = [[0u64; CMSG_SPACE / 8]; TX_MSGS];
        // SAFETY: all-zero mmsghdr is valid (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; TX_MSGS] = unsafe { zeroed() };
        for i in 0..count {
            let m = &self.msgs[i];
            iovs[i].iov_base = self.buf[m.start..].as_mut_ptr().cast();
            iovs[i].iov_len = m.len;
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&self.msgs[i].to.storage as *const libc::sockaddr_storage
                as *mut libc::sockaddr_storage)
                .cast();
            h.msg_namelen = self.msgs[i].to.len;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            if m.nsegs > 1 {
                h.msg_control = cmsgs[i].as_mut_ptr().cast();
                // SAFETY: computing the control length for a u16 payload.
                h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
                // SAFETY: the control buffer is CMSG_SPACE bytes, aligned to u64.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = SOL_UDP;
                    (*c).cmsg_type = UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), m.seg as u16);
                }
            }
        }
        let mut done = 0;
        while done < count {
            // SAFETY: hdrs[done..count] are filled with pointers into live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    sock.raw_fd(),
                    hdrs[done..].as_mut_ptr(),
                    (count - done) as libc::c_uint,
                    0,
                )
            };
            self.counters.syscalls += 1;
            if r > 0 {
                for m in &self.msgs[done..done + r as usize] {
                    self.counters.datagrams += m.nsegs as u64;
                }
                done += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) => {
                    poll_one(sock.raw_fd(), libc::POLLOUT, 100);
                }
                Some(libc::EINTR) => {}
                _ => {
                    // This train failed: if GSO is the reason (an underlay MTU smaller than
                    // we were told), send its datagrams one by one and stop using GSO.
                    let m = self.msgs[done];
                    if m.nsegs > 1 {
                        self.gso = false;
                        let mut off = m.start;
                        let end = m.start + m.len;
                        while off < end {
                            let l = m.seg.min(end - off);
                            match sock.send_one(&m.to, &self.buf[off..off + l]) {
                                Ok(()) => self.counters.datagrams += 1,
                                Err(_) => self.counters.errors += 1,
                            }
                            off += l;
                        }
                    } else {
                        self.counters.errors += 1;
                    }
                    done += 1;
                }
            }
        }
        self.msgs.clear();
        self.used = 0;
    }
}

/// Receive buffers for recvmmsg with GRO.
pub struct RxBatch {
    bufs: Vec<Vec<u8>>,
    lens: [usize; RX_MSGS],
    segs: [usize; RX_MSGS],
    count: usize,
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch {
            bufs: (0..RX_MSGS).map(|_| vec![0u8; RX_BUF]).collect(),
            lens: [0; RX_MSGS],
            segs: [0; RX_MSGS],
            count: 0,
        }
    }
}

impl RxBatch {
    /// Receives what is queued (non-blocking). Returns the number of buffers filled;
    /// 0 when nothing is waiting.
    pub fn recv(&mut self, sock: &UdpSock) -> io::Result<usize> {
        let mut iovs: [libc::iovec; RX_MSGS] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; RX_MSGS];
        let mut cmsgs = [[0u64; CMSG_SPACE / 8]; RX_MSGS];
        // SAFETY: all-zero mmsghdr is valid.
        let mut hdrs: [libc::mmsghdr; RX_MSGS] = unsafe { zeroed() };
        for i in 0..RX_MSGS {
            iovs[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            iovs[i].iov_len = self.bufs[i].len();
            let h = &mut hdrs[i].msg_hdr;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = CMSG_SPACE as _;
        }
        // SAFETY: headers point into live buffers of the stated sizes.
        let r = unsafe {
            libc::recvmmsg(
                sock.raw_fd(),
                hdrs.as_mut_ptr(),
                RX_MSGS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            self.count = 0;
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        let n = r as usize;
        for (i, mh) in hdrs.iter().enumerate().take(n) {
            let h = &mh.msg_hdr;
            let len = (mh.msg_len as usize).min(RX_BUF);
            self.lens[i] = if h.msg_flags & libc::MSG_TRUNC != 0 {
                0
            } else {
                len
            };
            let mut seg = len;
            // SAFETY: walking the control messages the kernel wrote into our buffer.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                        if v > 0 {
                            seg = v as usize;
                        }
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
            self.segs[i] = seg.max(1);
        }
        self.count = n;
        Ok(n)
    }

    /// Buffer `i` of the last receive, with its datagram size (each GRO segment but the
    /// last is exactly that long).
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], usize) {
        let len = self.lens[i];
        (&mut self.bufs[i][..len], self.segs[i])
    }
}
