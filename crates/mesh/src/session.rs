//! One control connection's byte stream, sans-IO: a cleartext prologue that negotiates
//! the protocol version and says whether a password is set, a Noise handshake (XX, or
//! XXpsk3 keyed with the password), then length-framed encrypted messages.
//!
//! Feed received bytes to [`Session::receive`], write out what [`Session::take_output`]
//! returns. On an error, still write the pending output (it may tell the remote why) and
//! close.

use blake2::{Blake2s256, Digest};

use crate::wire::{DecodeError, Hello, Message, PROTOCOL_MAX, PROTOCOL_MIN};

/// Magic bytes that open every connection.
pub const MAGIC: &[u8; 4] = b"weft";
/// Size of the cleartext prologue: magic, min version, max version, flags, reserved.
pub const PROLOGUE_LEN: usize = 8;
/// Largest frame body (a Noise message is at most 65535 bytes).
pub const MAX_FRAME: usize = 65_535;
const FLAG_PASSWORD: u8 = 1;
const KIND_HANDSHAKE: u8 = 1;
const KIND_TRANSPORT: u8 = 2;
const KIND_ERROR: u8 = 3;
const NOISE_PSK: &str = "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2s";
const NOISE_PLAIN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
const TAG_LEN: usize = 16;

/// Which side of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We dialled.
    Initiator,
    /// We accepted.
    Responder,
}

/// Why a session failed; the text is what the user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The remote does not speak weft.
    #[error("the remote is not a weft peer (bad magic bytes)")]
    NotWeft,
    /// No protocol version in common.
    #[error("protocol version mismatch: we speak {ours_min}..{ours_max}, the remote {theirs_min}..{theirs_max}")]
    Version {
        /// Our lowest.
        ours_min: u8,
        /// Our highest.
        ours_max: u8,
        /// Theirs lowest.
        theirs_min: u8,
        /// Theirs highest.
        theirs_max: u8,
    },
    /// The remote has a password and we do not.
    #[error("the remote peer has a password set, we have none (launch with --password or WEFT_PASSWORD)")]
    RemoteHasPassword,
    /// We have a password and the remote does not.
    #[error("the remote peer has no password set, we have one: it is refused")]
    RemoteHasNoPassword,
    /// Both have passwords, but they differ.
    #[error("handshake failed: wrong password (the peers' passwords differ)")]
    WrongPassword,
    /// The remote sent a cleartext error before the session was up.
    #[error("refused by the remote: {0}")]
    RemoteRefused(String),
    /// A Noise failure other than a wrong password.
    #[error("handshake failed: {0}")]
    Noise(String),
    /// A frame too large or of an unknown kind.
    #[error("malformed frame: {0}")]
    Frame(String),
    /// A message that does not decode.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// Sending before the session is up, or a message too large.
    #[error("cannot send: {0}")]
    Send(String),
}

/// What a session produced from received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The handshake is done and the remote introduced itself.
    Established(Hello),
    /// A message on the established session.
    Message(Message),
}

enum State {
    AwaitPrologue,
    Handshake(Box<snow::HandshakeState>),
    AwaitHello(Box<snow::TransportState>),
    Established(Box<snow::TransportState>),
    Failed,
}

/// A control connection's protocol state.
pub struct Session {
    role: Role,
    state: State,
    password: Option<[u8; 32]>,
    local_prologue: [u8; PROLOGUE_LEN],
    hello: Hello,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    version: u8,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("established", &self.is_established())
            .finish()
    }
}

/// The Noise pre-shared key for a password.
pub fn psk_for(password: &str) -> [u8; 32] {
    let mut h = Blake2s256::new();
    h.update(b"weft mesh psk v1\0");
    h.update(password.as_bytes());
    h.finalize().into()
}

impl Session {
    /// A new session that introduces itself with `hello` once the handshake is done.
    pub fn new(role: Role, password: Option<&str>, hello: Hello) -> Session {
        let flags = if password.is_some() { FLAG_PASSWORD } else { 0 };
        let local_prologue = [
            MAGIC[0],
            MAGIC[1],
            MAGIC[2],
            MAGIC[3],
            PROTOCOL_MIN,
            PROTOCOL_MAX,
            flags,
            0,
        ];
        Session {
            role,
            state: State::AwaitPrologue,
            password: password.map(psk_for),
            local_prologue,
            hello,
            inbuf: Vec::new(),
            out: local_prologue.to_vec(),
            version: 0,
        }
    }

    /// Whether the remote's Hello arrived.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established(_))
    }

    /// The negotiated protocol version (0 before the prologue).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Bytes to write to the socket.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Queues a cleartext refusal (before the session is up) for the remote to log.
    pub fn refuse(&mut self, reason: &str) {
        let body = reason.as_bytes();
        let body = &body[..body.len().min(1024)];
        self.push_frame(KIND_ERROR, body);
    }

    /// Encrypts a message for the remote.
    pub fn send(&mut self, msg: &Message) -> Result<(), SessionError> {
        let State::Established(t) = &mut self.state else {
            return Err(SessionError::Send("the session is not established".into()));
        };
        let plain = msg.encode();
        Self::encrypt_into(t, &plain, &mut self.out)
    }

    fn encrypt_into(
        t: &mut snow::TransportState,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        if plain.len() + TAG_LEN > MAX_FRAME {
            return Err(SessionError::Send(format!(
                "message of {} bytes is larger than a frame",
                plain.len()
            )));
        }
        let mut buf = vec![0u8; plain.len() + TAG_LEN];
        let n = t
            .write_message(plain, &mut buf)
            .map_err(|e| SessionError::Send(e.to_string()))?;
        out.extend_from_slice(&((n + 1) as u32).to_be_bytes());
        out.push(KIND_TRANSPORT);
        out.extend_from_slice(&buf[..n]);
        Ok(())
    }

    fn push_frame(&mut self, kind: u8, body: &[u8]) {
        self.out
            .extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
        self.out.push(kind);
        self.out.extend_from_slice(body);
    }

    /// Feeds received bytes; returns what they completed. After an error the session is
    /// dead: write [`Session::take_output`] and close.
    pub fn receive(&mut self, data: &[u8]) -> Result<Vec<SessionEvent>, SessionError> {
        if matches!(self.state, State::Failed) {
            return Err(SessionError::Frame("the session already failed".into()));
        }
        self.inbuf.extend_from_slice(data);
        let mut events = Vec::new();
        let r = self.process(&mut events);
        if r.is_err() {
            self.state = State::Failed;
            self.inbuf.clear();
        }
        r.map(|()| events)
    }

    fn process(&mut self, events: &mut Vec<SessionEvent>) -> Result<(), SessionError> {
        loop {
            if matches!(self.state, State::AwaitPrologue) {
                if self.inbuf.len() < PROLOGUE_LEN {
                    return Ok(());
                }
                let p: Vec<u8> = self.inbuf.drain(..PROLOGUE_LEN).collect();
                self.on_prologue(&p)?;
                continue;
            }
            if self.inbuf.len() < 4 {
                return Ok(());
            }
            let len =
                u32::from_be_bytes([self.inbuf[0], self.inbuf[1], self.inbuf[2], self.inbuf[3]])
                    as usize;
            if len == 0 || len > MAX_FRAME + 1 {
                return Err(SessionError::Frame(format!("frame length {len}")));
            }
            if self.inbuf.len() < 4 + len {
                return Ok(());
            }
            let frame: Vec<u8> = self.inbuf.drain(..4 + len).skip(4).collect();
            let (kind, body) = (frame[0], &frame[1..]);
            self.on_frame(kind, body, events)?;
        }
    }

    fn on_prologue(&mut self, p: &[u8]) -> Result<(), SessionError> {
        if &p[..4] != MAGIC {
            return Err(SessionError::NotWeft);
        }
        let (tmin, tmax, flags) = (p[4], p[5], p[6]);
        let lo = PROTOCOL_MIN.max(tmin);
        let hi = PROTOCOL_MAX.min(tmax);
        if lo > hi {
            return Err(SessionError::Version {
                ours_min: PROTOCOL_MIN,
                ours_max: PROTOCOL_MAX,
                theirs_min: tmin,
                theirs_max: tmax,
            });
        }
        self.version = hi;
        let theirs = flags & FLAG_PASSWORD != 0;
        match (self.password.is_some(), theirs) {
            (false, true) => return Err(SessionError::RemoteHasPassword),
            (true, false) => return Err(SessionError::RemoteHasNoPassword),
            _ => {}
        }
        // Both prologues, initiator's first, are bound into the handshake, so a
        // downgrade of the version or the password flag breaks it.
        let mut bound = Vec::with_capacity(2 * PROLOGUE_LEN);
        match self.role {
            Role::Initiator => {
                bound.extend_from_slice(&self.local_prologue);
                bound.extend_from_slice(p);
            }
            Role::Responder => {
                bound.extend_from_slice(p);
                bound.extend_from_slice(&self.local_prologue);
            }
        }
        let noise_err = |e: snow::Error| SessionError::Noise(e.to_string());
        let pattern = if self.password.is_some() {
            NOISE_PSK
        } else {
            NOISE_PLAIN
        };
        let params: snow::params::NoiseParams = pattern.parse().map_err(noise_err)?;
        let builder = snow::Builder::new(params);
        let keys = builder.generate_keypair().map_err(noise_err)?;
        let mut builder = snow::Builder::new(pattern.parse().map_err(noise_err)?)
            .local_private_key(&keys.private)
            .map_err(noise_err)?
            .prologue(&bound)
            .map_err(noise_err)?;
        if let Some(psk) = &self.password {
            builder = builder.psk(3, psk).map_err(noise_err)?;
        }
        let mut hs = match self.role {
            Role::Initiator => builder.build_initiator(),
            Role::Responder => builder.build_responder(),
        }
        .map_err(noise_err)?;
        if self.role == Role::Initiator {
            let mut buf = vec![0u8; MAX_FRAME];
            let n = hs.write_message(&[], &mut buf).map_err(noise_err)?;
            self.push_frame(KIND_HANDSHAKE, &buf[..n]);
        }
        self.state = State::Handshake(Box::new(hs));
        Ok(())
    }

    fn on_frame(
        &mut self,
        kind: u8,
        body: &[u8],
        events: &mut Vec<SessionEvent>,
    ) -> Result<(), SessionError> {
        if kind == KIND_ERROR {
            let reason = String::from_utf8_lossy(body).into_owned();
            return Err(SessionError::RemoteRefused(reason));
        }
        let state = std::mem::replace(&mut self.state, State::Failed);
        match (state, kind) {
            (State::Handshake(mut hs), KIND_HANDSHAKE) => {
                let mut payload = vec![0u8; MAX_FRAME];
                if let Err(e) = hs.read_message(body, &mut payload) {
                    let err = match e {
                        // With the psk mixed into the last message, a wrong password shows
                        // up as a failed decryption there; tell the remote too.
                        snow::Error::Decrypt if self.password.is_some() => {
                            SessionError::WrongPassword
                        }
                        e => SessionError::Noise(e.to_string()),
                    };
                    self.refuse(&err.to_string());
                    return Err(err);
                }
                if !hs.is_handshake_finished() {
                    let mut buf = vec![0u8; MAX_FRAME];
                    let n = hs
                        .write_message(&[], &mut buf)
                        .map_err(|e| SessionError::Noise(e.to_string()))?;
                    self.push_frame(KIND_HANDSHAKE, &buf[..n]);
                }
                if hs.is_handshake_finished() {
                    let mut t = hs
                        .into_transport_mode()
                        .map_err(|e| SessionError::Noise(e.to_string()))?;
                    let hello = Message::Hello(self.hello.clone()).encode();
                    Self::encrypt_into(&mut t, &hello, &mut self.out)?;
                    self.state = State::AwaitHello(Box::new(t));
                } else {
                    self.state = State::Handshake(hs);
                }
                Ok(())
            }
            (State::AwaitHello(mut t), KIND_TRANSPORT) => match Self::decrypt(&mut t, body)? {
                Message::Hello(h) => {
                    self.state = State::Established(t);
                    events.push(SessionEvent::Established(h));
                    Ok(())
                }
                _ => Err(SessionError::Frame(
                    "the first message was not a Hello".into(),
                )),
            },
            (State::Established(mut t), KIND_TRANSPORT) => {
                let m = Self::decrypt(&mut t, body)?;
                self.state = State::Established(t);
                events.push(SessionEvent::Message(m));
                Ok(())
            }
            (_, kind) => Err(SessionError::Frame(format!(
                "unexpected frame kind {kind} at this stage"
            ))),
        }
    }

    fn decrypt(t: &mut snow::TransportState, body: &[u8]) -> Result<Message, SessionError> {
        let mut plain = vec![0u8; body.len()];
        let n = t
            .read_message(body, &mut plain)
            .map_err(|e| SessionError::Frame(format!("cannot decrypt: {e}")))?;
        Ok(Message::decode(&plain[..n])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn hello(name: &str) -> Hello {
        Hello {
            name: name.into(),
            nickname: format!("nick-{name}"),
            uid: 1,
            listen_port: 6783,
        }
    }

    /// Runs both sides to completion; returns each side's events or error.
    fn pump(
        a: &mut Session,
        b: &mut Session,
    ) -> (
        Result<Vec<SessionEvent>, SessionError>,
        Result<Vec<SessionEvent>, SessionError>,
    ) {
        let (mut ea, mut eb) = (Ok(Vec::new()), Ok(Vec::new()));
        for _ in 0..10 {
            let to_b = a.take_output();
            let to_a = b.take_output();
            if to_a.is_empty() && to_b.is_empty() {
                break;
            }
            if !to_b.is_empty() {
                if let Ok(v) = &mut eb {
                    match b.receive(&to_b) {
                        Ok(mut e) => v.append(&mut e),
                        Err(e) => eb = Err(e),
                    }
                }
            }
            if !to_a.is_empty() {
                if let Ok(v) = &mut ea {
                    match a.receive(&to_a) {
                        Ok(mut e) => v.append(&mut e),
                        Err(e) => ea = Err(e),
                    }
                }
            }
        }
        (ea, eb)
    }

    #[test]
    fn handshake_then_messages_with_and_without_password() {
        for pw in [None, Some("secret")] {
            let mut a = Session::new(Role::Initiator, pw, hello("a"));
            let mut b = Session::new(Role::Responder, pw, hello("b"));
            let (ea, eb) = pump(&mut a, &mut b);
            assert_eq!(ea.unwrap(), vec![SessionEvent::Established(hello("b"))]);
            assert_eq!(eb.unwrap(), vec![SessionEvent::Established(hello("a"))]);
            a.send(&Message::Heartbeat).unwrap();
            let got = b.receive(&a.take_output()).unwrap();
            assert_eq!(got, vec![SessionEvent::Message(Message::Heartbeat)]);
        }
    }

    #[test]
    fn wrong_password_fails_on_both_sides_with_a_clear_reason() {
        let mut a = Session::new(Role::Initiator, Some("one"), hello("a"));
        let mut b = Session::new(Role::Responder, Some("two"), hello("b"));
        let (ea, eb) = pump(&mut a, &mut b);
        assert_eq!(eb.unwrap_err(), SessionError::WrongPassword);
        let ea = ea.unwrap_err().to_string();
        assert!(ea.contains("wrong password"), "{ea}");
    }

    #[test]
    fn missing_password_is_named_on_both_sides() {
        let mut a = Session::new(Role::Initiator, None, hello("a"));
        let mut b = Session::new(Role::Responder, Some("pw"), hello("b"));
        let (ea, eb) = pump(&mut a, &mut b);
        assert_eq!(ea.unwrap_err(), SessionError::RemoteHasPassword);
        assert_eq!(eb.unwrap_err(), SessionError::RemoteHasNoPassword);
    }

    #[test]
    fn version_mismatch_is_an_error() {
        let mut b = Session::new(Role::Responder, None, hello("b"));
        let e = b.receive(b"weft\x09\x0a\x00\x00").unwrap_err();
        assert!(matches!(e, SessionError::Version { .. }), "{e}");
        let mut b = Session::new(Role::Responder, None, hello("b"));
        assert_eq!(b.receive(b"GET / HT").unwrap_err(), SessionError::NotWeft);
    }

    #[test]
    fn bytes_split_anywhere_still_work() {
        let mut a = Session::new(Role::Initiator, Some("pw"), hello("a"));
        let mut b = Session::new(Role::Responder, Some("pw"), hello("b"));
        let mut established = 0;
        for _ in 0..10 {
            let to_b = a.take_output();
            let to_a = b.take_output();
            for byte in to_b {
                established += b.receive(&[byte]).unwrap().len();
            }
            for byte in to_a {
                established += a.receive(&[byte]).unwrap().len();
            }
        }
        assert_eq!(established, 2);
    }

    /// Fuzz: random and mutated streams never panic a session on either side.
    #[test]
    fn fuzz_session_decoder() {
        let cases: usize = weft_types::knob("WEFT_FUZZ_CASES", 200);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // A real opening from an initiator, to mutate.
        let mut a = Session::new(Role::Initiator, None, hello("a"));
        let mut b = Session::new(Role::Responder, None, hello("b"));
        let first = a.take_output();
        b.receive(&first).unwrap();
        let mut opening = first.clone();
        opening.extend(
            a.receive(&b.take_output())
                .map(|_| a.take_output())
                .unwrap(),
        );
        for i in 0..cases {
            let mut bytes = if i % 2 == 0 {
                let mut v = b"weft\x01\x01\x00\x00".to_vec();
                let n = rng.random_range(0..80);
                v.extend((0..n).map(|_| rng.random::<u8>()));
                v
            } else {
                opening.clone()
            };
            for _ in 0..rng.random_range(0..4) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            let role = if i % 3 == 0 {
                Role::Initiator
            } else {
                Role::Responder
            };
            let mut s = Session::new(role, None, hello("x"));
            let mut at = 0;
            while at < bytes.len() {
                let n = rng.random_range(1..=bytes.len() - at);
                if s.receive(&bytes[at..at + n]).is_err() {
                    break;
                }
                at += n;
            }
        }
    }
}
