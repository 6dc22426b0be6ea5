//! A small synchronous rtnetlink client: one NETLINK_ROUTE socket, bound to the
//! namespace it was opened in, that sends one request and collects its answer.
//!
//! Messages are built and parsed with netlink-packet-route; this file only frames,
//! sends, receives and maps kernel NACKs to errno.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// An open rtnetlink socket.
pub struct Handle {
    fd: OwnedFd,
    seq: u32,
    /// Where the socket lives, for messages.
    pub(crate) what: String,
}

/// Serialises one request with the given flags (REQUEST is always added).
pub(crate) fn encode(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    nl.finalize();
    let mut buf = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut buf);
    buf
}

impl Handle {
    /// Opens a socket in the calling thread's namespace (the host, for the router).
    pub fn current() -> Result<Handle> {
        Self::open("current netns".into())
    }

    /// Opens a socket inside `ns`; requests on it act on that namespace.
    pub fn in_netns(ns: &Netns) -> Result<Handle> {
        if ns.is_current() {
            return Self::open(ns.describe().to_string());
        }
        let what = ns.describe().to_string();
        ns.run(move || Self::open(what))?
    }

    fn open(what: String) -> Result<Handle> {
        let io_err = |op: &str, source| Error::Io {
            op: format!("{op} in {what}"),
            source,
        };
        // SAFETY: plain socket(2); checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io_err("open netlink socket", io::Error::last_os_error()));
        }
        // SAFETY: raw is a fresh fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_nl is a valid "let the kernel pick the port" address.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: sa is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io_err("bind netlink socket", io::Error::last_os_error()));
        }
        // Acks then carry only the header of the failed request, not the whole request.
        let one: libc::c_int = 1;
        // SAFETY: valid option pointer and length; failure is harmless (older kernels).
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                libc::NETLINK_CAP_ACK,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        Ok(Handle { fd, seq: 1, what })
    }

    /// Sends a request that changes something and waits for the kernel's ack.
    pub(crate) fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(msg, flags | NLM_F_ACK, false).map(|_| ())
    }

    /// Creates or replaces what `msg` describes; a refusal is [`Error::Kernel`] doing `op`
    /// in this handle's namespace.
    pub(crate) fn replace(&mut self, msg: RouteNetlinkMessage, op: String) -> Result<()> {
        let flags = NLM_F_CREATE | NLM_F_REPLACE;
        self.change(msg, flags, &[], op).map(|_| ())
    }

    /// Sends a change and waits for the ack: true when done, false when the kernel answers
    /// one of the errnos `unchanged` (it is there already, or was not there), else
    /// [`Error::Kernel`] doing `op` in this handle's namespace.
    pub(crate) fn change(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        unchanged: &[i32],
        op: String,
    ) -> Result<bool> {
        match self.ack(msg, flags) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error().is_some_and(|n| unchanged.contains(&n)) => Ok(false),
            Err(e) => Err(self.refused(op)(e)),
        }
    }

    /// [`Handle::dump`]; a refusal is [`Error::Kernel`] listing `what` in this handle's
    /// namespace.
    pub(crate) fn list(
        &mut self,
        msg: RouteNetlinkMessage,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let answers = self.dump(msg);
        answers.map_err(self.refused(format!("list {what}")))
    }

    /// [`Error::Kernel`] doing `op` in this handle's namespace.
    fn refused(&self, op: String) -> impl FnOnce(io::Error) -> Error {
        crate::error::kernel(format!("{op} in {}", self.what))
    }

    /// Sends a GET that answers with one message (e.g. a route lookup).
    pub(crate) fn get(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_ACK, false)
    }

    /// Sends a dump request and returns all answers.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_DUMP, true)
    }

    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        dump: bool,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let buf = encode(msg, flags, seq);
        // SAFETY: buf is valid for its length; the kernel address is implied (bound socket).
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                buf.as_ptr() as *const libc::c_void,
                buf.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut rbuf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: rbuf is valid writable memory of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    rbuf.as_mut_ptr() as *mut libc::c_void,
                    rbuf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let data = rbuf.get(..n as usize).unwrap_or(&[]);
            if decode_batch(data, seq, !dump && flags & NLM_F_ACK == 0, &mut out)? {
                return Ok(out);
            }
        }
    }
}

/// Decodes one datagram of replies to request `seq` into `out`. Returns true when the
/// answer is complete (ack, NACK as error, end of dump, or the first message if `first_only`).
/// Never panics on malformed input: a bad length or body is an `InvalidData` error.
pub(crate) fn decode_batch(
    data: &[u8],
    seq: u32,
    first_only: bool,
    out: &mut Vec<RouteNetlinkMessage>,
) -> io::Result<bool> {
    let bad = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let mut off = 0usize;
    while off < data.len() {
        let chunk = data.get(off..).unwrap_or(&[]);
        let len = NetlinkBuffer::new_checked(chunk)
            .map_err(|e| bad(e.to_string()))?
            .length() as usize;
        if len < 16 || len > chunk.len() {
            return Err(bad(format!("netlink message length {len} out of bounds")));
        }
        let msg_bytes = &chunk[..len];
        off = off.saturating_add((len + 3) & !3);
        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg_bytes)
            .map_err(|e| bad(e.to_string()))?;
        if parsed.header.sequence_number != seq {
            continue; // a late answer to an earlier request
        }
        match parsed.payload {
            NetlinkPayload::Error(e) => {
                return match e.code {
                    Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                    None => Ok(true),
                }
            }
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::InnerMessage(m) => {
                out.push(m);
                if first_only {
                    return Ok(true);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ack_and_nack_are_recognised() {
        // nlmsghdr (len 36, NLMSG_ERROR, seq 7) + error code + the failed request's header.
        let mut ack = vec![36, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0];
        ack.extend_from_slice(&0i32.to_le_bytes());
        ack.extend_from_slice(&[16, 0, 0, 0, 16, 0, 5, 0, 7, 0, 0, 0, 0, 0, 0, 0]);
        let mut out = Vec::new();
        assert!(decode_batch(&ack, 7, false, &mut out).unwrap());
        let mut nack = ack.clone();
        nack[16..20].copy_from_slice(&(-libc::EEXIST).to_le_bytes());
        let e = decode_batch(&nack, 7, false, &mut out).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        // An answer to another request is skipped.
        assert!(!decode_batch(&nack, 8, false, &mut out).unwrap());
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), seq in 0u32..4) {
            let mut out = Vec::new();
            let _ = decode_batch(&data, seq, false, &mut out);
        }

        #[test]
        fn decoding_corrupted_replies_never_panics(pos in 0usize..48, byte in any::<u8>()) {
            let mut m = crate::link::bridge_message("weft", 1500, Some([2, 0, 0, 0, 0, 1]));
            m.header.index = 3;
            let mut data = encode(RouteNetlinkMessage::NewLink(m), 0, 1);
            if let Some(b) = data.get_mut(pos) {
                *b = byte;
            }
            let mut out = Vec::new();
            let _ = decode_batch(&data, 1, false, &mut out);
        }
    }
}
