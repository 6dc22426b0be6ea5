//! The sleeve's ciphers as a value: the kernel crate seals with them, the path core
//! negotiates them per pair from what each router announces.

/// An AEAD the sleeve can seal with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CipherKind {
    /// ChaCha20-Poly1305: fast in software, every peer supports it.
    ChaCha20Poly1305,
    /// AES-256-GCM: offered only by hosts whose CPU has AES and carry-less multiply.
    Aes256Gcm,
}

impl CipherKind {
    /// The name used in announcements and status (`aes-256-gcm`, `chacha20-poly1305`).
    pub fn name(self) -> &'static str {
        match self {
            CipherKind::ChaCha20Poly1305 => "chacha20-poly1305",
            CipherKind::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// Parses [`CipherKind::name`]; None for names this code does not know.
    pub fn parse(s: &str) -> Option<CipherKind> {
        match s {
            "chacha20-poly1305" => Some(CipherKind::ChaCha20Poly1305),
            "aes-256-gcm" => Some(CipherKind::Aes256Gcm),
            _ => None,
        }
    }

    /// What this host offers, best first: AES-256-GCM only with hardware AES.
    pub fn supported() -> Vec<CipherKind> {
        if hardware_aes() {
            vec![CipherKind::Aes256Gcm, CipherKind::ChaCha20Poly1305]
        } else {
            vec![CipherKind::ChaCha20Poly1305]
        }
    }

    /// The cipher for a pair: AES-256-GCM if both offer it, else ChaCha20-Poly1305 (which
    /// every peer supports). Symmetric, so both sides pick the same without a round trip.
    pub fn negotiate(ours: &[CipherKind], theirs: &[CipherKind]) -> CipherKind {
        if ours.contains(&CipherKind::Aes256Gcm) && theirs.contains(&CipherKind::Aes256Gcm) {
            CipherKind::Aes256Gcm
        } else {
            CipherKind::ChaCha20Poly1305
        }
    }
}

impl std::fmt::Display for CipherKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether the CPU has AES and carry-less multiplication (what makes GCM fast).
fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_is_symmetric_and_falls_back_to_chacha() {
        use CipherKind::*;
        let both = [Aes256Gcm, ChaCha20Poly1305];
        assert_eq!(CipherKind::negotiate(&both, &both), Aes256Gcm);
        assert_eq!(
            CipherKind::negotiate(&both, &[ChaCha20Poly1305]),
            ChaCha20Poly1305
        );
        assert_eq!(
            CipherKind::negotiate(&[ChaCha20Poly1305], &both),
            ChaCha20Poly1305
        );
        assert_eq!(CipherKind::negotiate(&both, &[]), ChaCha20Poly1305);
        for k in both {
            assert_eq!(CipherKind::parse(k.name()), Some(k));
        }
        assert_eq!(CipherKind::parse("rot13"), None);
        assert!(CipherKind::supported().contains(&ChaCha20Poly1305));
    }
}
