//! The Docker API proxy: passes everything through, attaching containers per WEFT_CIDR.
