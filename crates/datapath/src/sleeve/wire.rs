//! Sleeve wire format: the datagram headers, their encoding and a decoder that never panics.
//!
//! Every UDP datagram starts with a 16-byte common header:
//!
//! ```text
//! 0  magic   u8  = 0x57 ('W')
//! 1  version u8  = 1
//! 2  kind    u8  (1 = data chunk, 2 = ping, 3 = pong, 4 = MTU probe, 5 = probe answer)
//! 3  flags   u8  (bit 0: payload sealed, 16-byte tag at the end; bit 1: the AEAD is
//!                 AES-256-GCM, else ChaCha20-Poly1305)
//! 4  sender  u32 short id of the peer that sent this datagram (one hop)
//! 8  counter u64 per (sender, receiver) sequence; the AEAD nonce when sealed
//! ```
//!
//! A data chunk adds a 24-byte header; its payload is a slice of one "message": the
//! virtio_net_hdr the TAP gave us followed by the Ethernet frame (up to a 64 KiB TSO
//! super-frame). Large messages cross as several chunks that travel in one UDP GSO send.
//!
//! ```text
//! 16 origin    u32 peer whose TAP the frame came from
//! 20 dst       u32 final destination peer, or BROADCAST
//! 24 frame_id  u32 per-origin message number
//! 28 total_len u32 length of the whole message
//! 32 offset    u32 where this chunk's payload sits in the message
//! 36 ttl       u8  hops left (relays decrement)
//! 37 reserved  [u8; 3]
//! ```
//!
//! Ping and pong carry an 8-byte token (the sender's clock reading, echoed by pong). An
//! MTU probe carries the token and padding up to the datagram size under test (sent with
//! DF); its answer carries the token and the probe's datagram size (u32), and is small,
//! so it tests one direction only: the one the prober sends on.
//! All integers are big-endian. The whole header is the AEAD's associated data.

use super::PeerId;

/// First byte of every sleeve datagram.
pub const MAGIC: u8 = 0x57;
/// Wire format version this code speaks.
pub const VERSION: u8 = 1;
/// Length of the common header.
pub const COMMON_LEN: usize = 16;
/// Length of the data chunk header that follows the common header.
pub const DATA_LEN: usize = 24;
/// Common + data header length: the per-chunk overhead before the payload.
pub const DATA_HEADER_LEN: usize = COMMON_LEN + DATA_LEN;
/// Length of the ping/pong payload (a token).
pub const TOKEN_LEN: usize = 8;
/// Length of the Poly1305 tag appended to sealed datagrams.
pub const TAG_LEN: usize = 16;
/// Flag: the payload is sealed (encrypted and authenticated).
pub const FLAG_SEALED: u8 = 1;
/// Flag: sealed with AES-256-GCM (without it: ChaCha20-Poly1305).
pub const FLAG_AES: u8 = 2;
/// Length of an MTU probe answer's payload (token + probed size).
pub const PROBE_ACK_LEN: usize = TOKEN_LEN + 4;
/// Largest message (virtio header + frame) accepted: 64 KiB super-frame plus headers.
pub const MAX_MESSAGE: usize = 65536 + 1024;
/// Hop limit a fresh data chunk starts with.
pub const INITIAL_TTL: u8 = 8;
/// Destination id meaning "every peer" (flooded frames).
pub const BROADCAST: PeerId = PeerId(u32::MAX);

/// Datagram kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A chunk of a message (frame).
    Data,
    /// Heartbeat request.
    Ping,
    /// Heartbeat answer echoing the ping's token.
    Pong,
    /// Path-MTU probe: token and padding up to the size under test.
    Probe,
    /// Answer to a probe: its token and size.
    ProbeAck,
}

impl Kind {
    fn to_u8(self) -> u8 {
        match self {
            Kind::Data => 1,
            Kind::Ping => 2,
            Kind::Pong => 3,
            Kind::Probe => 4,
            Kind::ProbeAck => 5,
        }
    }
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Data),
            2 => Some(Kind::Ping),
            3 => Some(Kind::Pong),
            4 => Some(Kind::Probe),
            5 => Some(Kind::ProbeAck),
            _ => None,
        }
    }
}

/// The 16-byte header every datagram starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Common {
    /// What follows.
    pub kind: Kind,
    /// Flag bits (FLAG_SEALED).
    pub flags: u8,
    /// The hop that sent this datagram.
    pub sender: PeerId,
    /// Sequence number / nonce.
    pub counter: u64,
}

/// The header of a data chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data {
    /// Peer whose TAP produced the frame.
    pub origin: PeerId,
    /// Final destination, or BROADCAST.
    pub dst: PeerId,
    /// Per-origin message number.
    pub frame_id: u32,
    /// Length of the whole message.
    pub total_len: u32,
    /// Offset of this chunk in the message.
    pub offset: u32,
    /// Hops left.
    pub ttl: u8,
}

/// Why a datagram was rejected by the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its header says.
    #[error("datagram too short ({0} bytes)")]
    TooShort(usize),
    /// Not a sleeve datagram.
    #[error("bad magic byte {0:#04x}")]
    BadMagic(u8),
    /// A version this code does not speak.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// Unknown kind byte.
    #[error("unknown datagram kind {0}")]
    BadKind(u8),
    /// Chunk offsets/lengths that cannot belong to a valid message.
    #[error("chunk out of bounds (offset {offset}, len {len}, total {total})")]
    BadChunk {
        /// Claimed offset.
        offset: u32,
        /// Payload length.
        len: usize,
        /// Claimed message length.
        total: u32,
    },
    /// Ping/pong payload of the wrong size.
    #[error("bad heartbeat payload length {0}")]
    BadToken(usize),
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

impl Common {
    /// Writes the header into `out[..COMMON_LEN]`; `out` must be at least that long.
    pub fn write(&self, out: &mut [u8]) {
        out[0] = MAGIC;
        out[1] = VERSION;
        out[2] = self.kind.to_u8();
        out[3] = self.flags;
        out[4..8].copy_from_slice(&self.sender.0.to_be_bytes());
        out[8..16].copy_from_slice(&self.counter.to_be_bytes());
    }

    /// Reads the common header of a datagram.
    pub fn read(b: &[u8]) -> Result<Common, DecodeError> {
        if b.len() < COMMON_LEN {
            return Err(DecodeError::TooShort(b.len()));
        }
        if b[0] != MAGIC {
            return Err(DecodeError::BadMagic(b[0]));
        }
        if b[1] != VERSION {
            return Err(DecodeError::BadVersion(b[1]));
        }
        let kind = Kind::from_u8(b[2]).ok_or(DecodeError::BadKind(b[2]))?;
        Ok(Common {
            kind,
            flags: b[3],
            sender: PeerId(be32(b, 4)),
            counter: be64(b, 8),
        })
    }

    /// Length of this datagram's header (common + kind-specific).
    pub fn header_len(&self) -> usize {
        match self.kind {
            Kind::Data => DATA_HEADER_LEN,
            Kind::Ping | Kind::Pong | Kind::Probe | Kind::ProbeAck => COMMON_LEN,
        }
    }

    /// Whether the payload is sealed.
    pub fn sealed(&self) -> bool {
        self.flags & FLAG_SEALED != 0
    }
}

impl Data {
    /// Writes the data header into `out[COMMON_LEN..DATA_HEADER_LEN]`.
    pub fn write(&self, out: &mut [u8]) {
        let o = &mut out[COMMON_LEN..DATA_HEADER_LEN];
        o[0..4].copy_from_slice(&self.origin.0.to_be_bytes());
        o[4..8].copy_from_slice(&self.dst.0.to_be_bytes());
        o[8..12].copy_from_slice(&self.frame_id.to_be_bytes());
        o[12..16].copy_from_slice(&self.total_len.to_be_bytes());
        o[16..20].copy_from_slice(&self.offset.to_be_bytes());
        o[20] = self.ttl;
        o[21..24].fill(0);
    }

    /// Reads the data header of a datagram whose common header said `Kind::Data`.
    pub fn read(b: &[u8]) -> Result<Data, DecodeError> {
        if b.len() < DATA_HEADER_LEN {
            return Err(DecodeError::TooShort(b.len()));
        }
        let o = COMMON_LEN;
        Ok(Data {
            origin: PeerId(be32(b, o)),
            dst: PeerId(be32(b, o + 4)),
            frame_id: be32(b, o + 8),
            total_len: be32(b, o + 12),
            offset: be32(b, o + 16),
            ttl: b[o + 20],
        })
    }

    /// Checks that a chunk of `len` payload bytes fits the message it claims to be part of.
    pub fn check_chunk(&self, len: usize) -> Result<(), DecodeError> {
        let bad = DecodeError::BadChunk {
            offset: self.offset,
            len,
            total: self.total_len,
        };
        let total = self.total_len as usize;
        let end = (self.offset as usize).checked_add(len).ok_or(bad)?;
        if total == 0 || total > MAX_MESSAGE || len == 0 || end > total {
            return Err(bad);
        }
        Ok(())
    }
}

/// A fully decoded datagram whose payload is still as received (maybe sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// Common header.
    pub common: Common,
    /// Data header for `Kind::Data`.
    pub data: Option<Data>,
    /// Header length (start of the payload).
    pub header_len: usize,
}

/// Decodes the headers of a datagram. Never panics, whatever the bytes.
pub fn parse(b: &[u8]) -> Result<Parsed, DecodeError> {
    let common = Common::read(b)?;
    let header_len = common.header_len();
    if b.len() < header_len {
        return Err(DecodeError::TooShort(b.len()));
    }
    let data = match common.kind {
        Kind::Data => Some(Data::read(b)?),
        _ => None,
    };
    Ok(Parsed {
        common,
        data,
        header_len,
    })
}

/// Checks the payload length of an opened (plaintext) datagram against its header.
pub fn check_payload(p: &Parsed, payload_len: usize) -> Result<(), DecodeError> {
    match (p.common.kind, &p.data) {
        (Kind::Data, Some(d)) => d.check_chunk(payload_len),
        (Kind::Ping | Kind::Pong, _) if payload_len == TOKEN_LEN => Ok(()),
        (Kind::Ping | Kind::Pong, _) => Err(DecodeError::BadToken(payload_len)),
        (Kind::Probe, _) if (TOKEN_LEN..=u16::MAX as usize).contains(&payload_len) => Ok(()),
        (Kind::ProbeAck, _) if payload_len == PROBE_ACK_LEN => Ok(()),
        (Kind::Probe | Kind::ProbeAck, _) => Err(DecodeError::BadToken(payload_len)),
        (Kind::Data, None) => Err(DecodeError::TooShort(payload_len)),
    }
}

/// Reads the token of an opened ping/pong payload.
pub fn token(payload: &[u8]) -> Result<u64, DecodeError> {
    if payload.len() != TOKEN_LEN {
        return Err(DecodeError::BadToken(payload.len()));
    }
    Ok(be64(payload, 0))
}

/// Reads the token and the probed datagram size of an opened probe answer.
pub fn probe_ack(payload: &[u8]) -> Result<(u64, u32), DecodeError> {
    if payload.len() != PROBE_ACK_LEN {
        return Err(DecodeError::BadToken(payload.len()));
    }
    Ok((be64(payload, 0), be32(payload, TOKEN_LEN)))
}

/// Payload bytes per chunk so that a datagram fits `underlay_mtu` (IP header of
/// `ip_header_len` bytes, UDP header, sleeve header, and the tag when sealed).
pub fn chunk_payload(underlay_mtu: usize, ip_header_len: usize, sealed: bool) -> usize {
    let tag = if sealed { TAG_LEN } else { 0 };
    underlay_mtu
        .saturating_sub(ip_header_len + 8 + DATA_HEADER_LEN + tag)
        .max(64)
}

/// Ethernet destination and source MAC of a message (virtio header + frame), if long enough.
pub fn frame_macs(message: &[u8], vnet_len: usize) -> Option<([u8; 6], [u8; 6])> {
    let f = message.get(vnet_len..vnet_len + 12)?;
    let mut d = [0u8; 6];
    let mut s = [0u8; 6];
    d.copy_from_slice(&f[0..6]);
    s.copy_from_slice(&f[6..12]);
    Some((d, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_header_round_trips() {
        let c = Common {
            kind: Kind::Data,
            flags: FLAG_SEALED,
            sender: PeerId(7),
            counter: 0x0102_0304_0506_0708,
        };
        let d = Data {
            origin: PeerId(9),
            dst: BROADCAST,
            frame_id: 42,
            total_len: 3000,
            offset: 1400,
            ttl: 3,
        };
        let mut b = [0u8; DATA_HEADER_LEN];
        c.write(&mut b);
        d.write(&mut b);
        let p = parse(&b).unwrap();
        assert_eq!(p.common, c);
        assert_eq!(p.data, Some(d));
        assert_eq!(p.header_len, DATA_HEADER_LEN);
        assert!(d.check_chunk(1600).is_ok());
        assert!(d.check_chunk(1601).is_err());
    }

    #[test]
    fn rejects_foreign_datagrams() {
        assert_eq!(parse(&[]), Err(DecodeError::TooShort(0)));
        let mut b = [0u8; 16];
        assert_eq!(parse(&b), Err(DecodeError::BadMagic(0)));
        b[0] = MAGIC;
        b[1] = 2;
        assert_eq!(parse(&b), Err(DecodeError::BadVersion(2)));
        b[1] = VERSION;
        b[2] = 9;
        assert_eq!(parse(&b), Err(DecodeError::BadKind(9)));
        b[2] = 4;
        let p = parse(&b).unwrap();
        assert_eq!(p.common.kind, Kind::Probe);
        assert!(check_payload(&p, TOKEN_LEN + 1000).is_ok());
        assert!(check_payload(&p, 4).is_err());
        b[2] = 5;
        let p = parse(&b).unwrap();
        assert!(check_payload(&p, PROBE_ACK_LEN).is_ok());
        assert!(check_payload(&p, TOKEN_LEN).is_err());
        assert_eq!(
            probe_ack(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 5, 220]),
            Ok((9, 1500))
        );
        b[2] = 1;
        assert_eq!(parse(&b), Err(DecodeError::TooShort(16)));
    }

    #[test]
    fn chunk_size_fits_mtu() {
        assert_eq!(chunk_payload(1500, 20, false), 1500 - 20 - 8 - 40);
        assert_eq!(chunk_payload(1500, 40, true), 1500 - 40 - 8 - 40 - 16);
    }
}
